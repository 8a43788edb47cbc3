"""Representation view: every cell as a pie glyph at its 2-D position; a click opens the cell.

The full figure is sent once per run; choosing a cell only moves the highlight ring, sent as a
``dash.Patch`` of that one trace. Past :data:`app.figures.GLYPH_CELLS` cells, the overview shows
coloured markers, and each zoom or pan patches in the pies of the cells in view once they are
few enough (level of detail), so the browser never holds more than that many pies.
"""
from __future__ import annotations

from dash import Input, Output, Patch, State, dcc, html, no_update

from .. import ids
from ..context import AppContext
from .. import figures
from ..figures import (HIGHLIGHT_INDEX, empty_figure, glyph_patch, highlight_ring,
                       representation_figure)

HOVER_INDEX = HIGHLIGHT_INDEX - 1

GRAPH_CONFIG = {"scrollZoom": True, "displaylogo": False,
                "modeBarButtonsToRemove": ["select2d", "lasso2d", "autoScale2d"]}


def legend() -> html.Div:
    """What the glyphs encode (HTML, so it costs the figure nothing)."""

    def item(cls, text):
        return html.Span([html.Span(className=f"fx-swatch {cls}"), text], className="fx-legend-item")

    return html.Div(id=ids.REPR_LEGEND, className="fx-legend", children=[
        item("real solid", "real, predicted real"),
        item("real hatched", "real, predicted fake"),
        item("fake solid", "fake, predicted fake"),
        item("fake hatched", "fake, predicted real"),
        item("saturation", "pale = unsure, vivid = confident (mean confidence)"),
        html.Span("glyph area = number of images · dashed line = decision boundary",
                  className="fx-legend-item fx-muted"),
    ])


def layout() -> html.Div:
    return html.Div(className="fx-panel", children=[
        html.Div(className="fx-panel-head", children=[
            html.Span("Representation", className="fx-panel-title"),
            html.Span(id=ids.REPR_INFO, className="fx-muted"),
        ]),
        dcc.Graph(id=ids.REPR_GRAPH, figure=empty_figure(), config=GRAPH_CONFIG,
                  style={"height": "560px"}, clear_on_unhover=True),
        legend(),
        dcc.Store(id=ids.REPR_SHOWN),
        dcc.Store(id=ids.REPR_VIEW),
    ])


def render(ctx: AppContext, run_id: str | None, cell: int | None):
    """Full figure, info line and shown-run marker for ``run_id`` (callback body)."""
    view = ctx.run(run_id)
    if view is None:
        return empty_figure("No run open: pick one above or start a new run."), "", None
    fig = representation_figure(view.cells, selected_cell=cell, uirevision=view.run_id,
                                arrays=view.cell_arrays)
    return fig, info_line(view, None), view.run_id


def info_line(view, drawn: int | None) -> str:
    n_cells = len(view.cells.get("cells", []))
    text = f"{n_cells:,} cells · {view.n_images:,} images · click a cell to open it"
    if n_cells > figures.GLYPH_CELLS:
        text += (f" · pies for the {drawn:,} cells in view" if drawn else
                 f" · zoom in to see pies (drawn when at most {figures.GLYPH_CELLS:,} cells are in view)")
    return text


def view_from_relayout(relayout: dict | None, previous: dict | None) -> dict | None:
    """Axis ranges on screen after a ``relayoutData`` event (None = the whole map).

    Plotly sends ``xaxis.range[0]``/``[1]`` (or ``xaxis.range``) for the axes that changed and
    ``xaxis.autorange`` on a reset; an axis not mentioned keeps its previous range (None:
    unbounded, as a view is stored as JSON).
    """
    if not relayout:
        return previous
    if relayout.get("xaxis.autorange"):  # double click / reset: the whole map again
        return None
    out = dict(previous or dict.fromkeys(("x0", "x1", "y0", "y1")))
    found = False
    for axis in ("x", "y"):
        pair = relayout.get(f"{axis}axis.range")
        lo, hi = (pair if isinstance(pair, list) and len(pair) == 2 else
                  (relayout.get(f"{axis}axis.range[0]"), relayout.get(f"{axis}axis.range[1]")))
        if isinstance(lo, (int, float)) and isinstance(hi, (int, float)):
            out[f"{axis}0"], out[f"{axis}1"] = float(lo), float(hi)
            found = True
    return out if found else previous


def level_of_detail(ctx: AppContext, run_id: str | None, shown: str | None,
                    relayout: dict | None, previous: dict | None):
    """Patch of the pies in view, the info line and the new view after a zoom or pan."""
    view = ctx.run(run_id)
    if view is None or shown != run_id or len(view.cells.get("cells", [])) <= figures.GLYPH_CELLS:
        return no_update, no_update, no_update
    new_view = view_from_relayout(relayout, previous)
    if new_view == previous and relayout and "xaxis.autorange" not in relayout:
        return no_update, no_update, no_update
    lod = glyph_patch(view.cell_arrays, new_view)
    patch = Patch()
    for i, (x, y) in enumerate(lod["wedges"]):
        patch["data"][i]["x"] = x
        patch["data"][i]["y"] = y
    patch["data"][HOVER_INDEX]["marker"]["color"] = lod["colours"]
    return patch, info_line(view, lod["drawn"]), new_view


def highlight(ctx: AppContext, run_id: str | None, cell: int | None, shown: str | None):
    """Patch that moves the highlight ring to ``cell`` (or hides it).

    Only when the figure on screen is this run's (``shown``); otherwise the full render, which
    draws the ring itself, is still on its way.
    """
    view = ctx.run(run_id)
    if view is None or shown != run_id:
        return no_update
    hx, hy = highlight_ring(view.cells, cell)
    patch = Patch()
    patch["data"][HIGHLIGHT_INDEX]["x"] = hx
    patch["data"][HIGHLIGHT_INDEX]["y"] = hy
    return patch


def register(app, ctx: AppContext) -> None:
    @app.callback(Output(ids.REPR_GRAPH, "figure"), Output(ids.REPR_INFO, "children"),
                  Output(ids.REPR_SHOWN, "data"),
                  Input(ids.STORE_RUN, "data"), State(ids.STORE_CELL, "data"))
    def _render(run_id, cell):
        return render(ctx, run_id, cell)

    @app.callback(Output(ids.REPR_GRAPH, "figure", allow_duplicate=True),
                  Input(ids.STORE_CELL, "data"), State(ids.STORE_RUN, "data"),
                  State(ids.REPR_SHOWN, "data"), prevent_initial_call=True)
    def _highlight(cell, run_id, shown):
        return highlight(ctx, run_id, cell, shown)

    @app.callback(Output(ids.REPR_GRAPH, "figure", allow_duplicate=True),
                  Output(ids.REPR_INFO, "children", allow_duplicate=True),
                  Output(ids.REPR_VIEW, "data"),
                  Input(ids.REPR_GRAPH, "relayoutData"), State(ids.STORE_RUN, "data"),
                  State(ids.REPR_SHOWN, "data"), State(ids.REPR_VIEW, "data"),
                  prevent_initial_call=True)
    def _level_of_detail(relayout, run_id, shown, stored):
        return level_of_detail(ctx, run_id, shown, relayout, stored)
