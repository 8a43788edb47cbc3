"""Representation view: every cell as a pie glyph at its 2-D position; a click opens the cell.

The full figure is sent once per run; choosing a cell only moves the highlight ring, sent as a
``dash.Patch`` of that one trace.
"""
from __future__ import annotations

from dash import Input, Output, Patch, State, dcc, html, no_update

from .. import ids
from ..context import AppContext
from ..figures import HIGHLIGHT_INDEX, empty_figure, highlight_ring, representation_figure

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
    ])


def render(ctx: AppContext, run_id: str | None, cell: int | None):
    """Full figure, info line and shown-run marker for ``run_id`` (callback body)."""
    view = ctx.run(run_id)
    if view is None:
        return empty_figure("No run open: pick one above or start a new run."), "", None
    fig = representation_figure(view.cells, selected_cell=cell, uirevision=view.run_id)
    n_cells = len(view.cells.get("cells", []))
    return fig, f"{n_cells} cells · {view.n_images} images · click a cell to open it", view.run_id


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
