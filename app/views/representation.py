"""Representation view: every cell as a pie glyph at its 2-D position; a click opens the cell.

The full figure is sent once per run; choosing a cell only moves the highlight ring, sent as a
``dash.Patch`` of that one trace. Past :data:`app.figures.glyph_map.GLYPH_CELLS` cells, the overview shows
coloured markers, and each zoom or pan patches in the pies of the cells in view once they are
few enough (level of detail), so the browser never holds more than that many pies.

Under the analyst's image filter (``ids.STORE_FILTER``, :mod:`app.state.filters`) every glyph is
recounted from its matching images (area ~ matching images), and a cell with no matching image is
drawn as a pale grey disc; its tooltip says so. Cells that carry notes get a purple diamond, moved
with a patch whenever the notes change (``ids.NOTES_VERSION``).

An applied set (pseudo-run ``RUN@SET``) is drawn by :mod:`app.views.applied_map`: its own glyphs,
or the run's glyphs with its images over them (``ids.REPR_LAYERS``); the switch between the
training data and the run's applied sets is :mod:`app.views.applied`'s.
"""
from __future__ import annotations

from dash import Input, Output, Patch, State, ctx as dash_ctx, dcc, html, no_update

from pipeline.report.notes import NotesStore
from pipeline.store.run_store import ArtifactError

from app.state import filters, ids
from app.state.context import AppContext
from app.figures import glyph_map as figures
from app.state import imagesets
from app.views import applied_map
from app.figures.common import empty_figure, trace_index
from app.figures.glyph_map import (EMPTY_TRACE_NAME, HIGHLIGHT_TRACE_NAME, HOVER_TRACE_NAME, NOTES_TRACE_NAME,
                                   REPRESENTATION_TRACES, CellArrays, cell_hover_texts, glyph_patch,
                                   highlight_ring, notes_marks, representation_figure)


def _trace(name: str) -> int:
    """Index of the representation figure's trace ``name``, for a patch of the figure on screen."""
    return trace_index(REPRESENTATION_TRACES, name)

GRAPH_CONFIG = {"scrollZoom": True, "displaylogo": False, "showSendToCloud": False,  # no upload from a forensic tool
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
        item("empty", "no image matches the filter"),
        html.Span([html.Span("◆", className="fx-notes-mark"), "cell with notes"],
                  className="fx-legend-item"),
        html.Span("glyph area = number of (matching) images · dashed line = decision boundary",
                  className="fx-legend-item fx-muted"),
    ])


def layout() -> html.Div:
    from app.views import applied

    return html.Div(className="fx-panel", children=[
        html.Div(className="fx-panel-head", children=[
            html.Span("Representation", id=ids.REPR_TITLE, className="fx-panel-title"),
            html.Span(id=ids.REPR_INFO, className="fx-muted"),
        ]),
        applied.data_switch(),
        dcc.Graph(id=ids.REPR_GRAPH, figure=empty_figure(), config=GRAPH_CONFIG,
                  style={"height": "560px"}, clear_on_unhover=True),
        legend(),
        html.Div(id=ids.REPR_APPLIED_NOTE, className="fx-legend fx-applied-note"),
        dcc.Store(id=ids.REPR_SHOWN),
        dcc.Store(id=ids.REPR_VIEW),
    ])


def drawn_cells(view, flt) -> tuple[CellArrays, filters.CellCounts | None]:
    """The cells as drawn under the filter ``flt`` (JSON or None): arrays, and the recounts
    (None when the filter keeps every image: the run's own cells are drawn)."""
    flt = filters.ImageFilter.from_json(flt)
    if flt.keeps_all:
        return view.cell_arrays, None
    counts = filters.cell_counts(view, filters.mask(view, flt))
    return view.cell_arrays.recounted(counts.drawn_counts, counts.confidence, counts.accuracy), counts


def on_screen(ctx: AppContext, view, flt, layers=None) -> tuple[CellArrays, filters.CellCounts | None]:
    """The glyphs on screen (:func:`drawn_cells`; an applied set's: ``applied_map.drawn_arrays``)."""
    return applied_map.drawn_arrays(ctx, view, flt, layers) if view.is_applied else drawn_cells(view, flt)


def noted_cells(view) -> set[int]:
    """Ids of the cells that carry a note: its cell, or the cells of its images."""
    try:
        notes = NotesStore(view.path).list()
    except (ArtifactError, OSError):  # a damaged notes file is reported by the notes panel
        return set()
    out = set()
    for note in notes:
        if note.get("cell") is not None:
            out.add(int(note["cell"]))
        out.update(int(view.cell[i]) for i in note.get("images") or () if 0 <= int(i) < view.n_images)
    return out


def render(ctx: AppContext, run_id: str | None, cell: int | None, flt=None, lod_view: dict | None = None,
           layers=None):
    """Full figure, info line and shown-run marker for ``run_id`` under the filter ``flt``
    (callback body); ``lod_view``: the axis ranges on screen, kept when only the filter changed;
    ``layers``: how an applied set is drawn (:mod:`app.views.applied_map`)."""
    view = ctx.run(run_id)
    if view is None:
        return empty_figure("No run open: pick one above or start a new run."), "", None
    cell = None if imagesets.is_set(cell) else cell  # an image set has no ring on the map
    if view.is_applied:
        fig, info = applied_map.render(ctx, view, cell, flt, layers, lod_view, noted_cells(view))
        return fig, info, view.run_id
    arrays, counts = drawn_cells(view, flt)
    mixes = (counts or filters.cell_counts(view)).mixes()
    facts = view.cell_facts
    text = cell_hover_texts(arrays, mixes, totals=counts.total if counts is not None else None,
                            files=[facts.get(int(c), "") for c in arrays.ids] if facts else None)
    fig = representation_figure(view.cells, selected_cell=cell, uirevision=view.run_id,
                                arrays=arrays, hover_text=text, noted=noted_cells(view), view=lod_view)
    drawn = int(figures.glyph_mask(arrays, lod_view).sum()) if lod_view else None
    return fig, info_line(view, drawn, counts), view.run_id


def info_line(view, drawn: int | None, counts: filters.CellCounts | None = None) -> str:
    n_cells = len(view.cells.get("cells", []))
    if counts is None:
        text = f"{n_cells:,} cells · {view.n_images:,} images · click a cell to open it"
    else:
        text = (f"filter: {int(counts.n.sum()):,} of {view.n_images:,} images, in "
                f"{int((counts.n > 0).sum()):,} of {n_cells:,} cells · click a cell to open it")
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
                    relayout: dict | None, previous: dict | None, flt=None, layers=None):
    """Patch of the pies in view, the info line and the new view after a zoom or pan."""
    view = ctx.run(run_id)
    if view is None or shown != run_id or len(view.cells.get("cells", [])) <= figures.GLYPH_CELLS:
        return no_update, no_update, no_update
    new_view = view_from_relayout(relayout, previous)
    if new_view == previous and relayout and "xaxis.autorange" not in relayout:
        return no_update, no_update, no_update
    arrays, counts = on_screen(ctx, view, flt, layers)
    lod = glyph_patch(arrays, new_view)
    patch = Patch()
    for name, (x, y) in lod["wedges"].items():
        patch["data"][_trace(name)]["x"] = x
        patch["data"][_trace(name)]["y"] = y
    patch["data"][_trace(HOVER_TRACE_NAME)]["marker"]["color"] = lod["colours"]
    empty = _trace(EMPTY_TRACE_NAME)
    patch["data"][empty]["x"], patch["data"][empty]["y"] = lod["empty"]
    info = applied_map.info_line(view, applied_map.layers_of(layers), counts) if view.is_applied else \
        info_line(view, lod["drawn"], counts)
    return patch, info, new_view


def highlight(ctx: AppContext, run_id: str | None, cell: int | None, shown: str | None, flt=None,
              layers=None):
    """Patch that moves the highlight ring to ``cell`` (or hides it), around the glyph as drawn
    under the filter ``flt``.

    Only when the figure on screen is this run's (``shown``); otherwise the full render, which
    draws the ring itself, is still on its way.
    """
    view = ctx.run(run_id)
    if view is None or shown != run_id:
        return no_update
    arrays = on_screen(ctx, view, flt, layers)[0]
    cell = None if imagesets.is_set(cell) else cell  # an image set has no ring on the map
    hx, hy = highlight_ring(view.cells, cell, r_by_id=dict(zip(arrays.ids.tolist(), arrays.r.tolist())))
    patch = Patch()
    ring = _trace(HIGHLIGHT_TRACE_NAME)
    patch["data"][ring]["x"] = hx
    patch["data"][ring]["y"] = hy
    return patch


def notes_patch(ctx: AppContext, run_id: str | None, shown: str | None, flt=None, layers=None):
    """Patch that moves the "has notes" diamonds after a note was added or deleted."""
    view = ctx.run(run_id)
    if view is None or shown != run_id:
        return no_update
    x, y = notes_marks(on_screen(ctx, view, flt, layers)[0], noted_cells(view))
    patch = Patch()
    notes = _trace(NOTES_TRACE_NAME)
    patch["data"][notes]["x"] = x
    patch["data"][notes]["y"] = y
    return patch


def register(app, ctx: AppContext) -> None:
    @app.callback(Output(ids.REPR_GRAPH, "figure"), Output(ids.REPR_INFO, "children"),
                  Output(ids.REPR_SHOWN, "data"),
                  Input(ids.STORE_RUN, "data"), Input(ids.STORE_FILTER, "data"),
                  Input(ids.REPR_LAYERS, "value"),
                  State(ids.STORE_CELL, "data"), State(ids.REPR_SHOWN, "data"),
                  State(ids.REPR_VIEW, "data"))
    def _render(run_id, flt, layers, cell, shown, lod_view):
        # a new filter (or drawing) on the same run keeps the zoom (uirevision) and so the pies in view
        same_run = dash_ctx.triggered_id in (ids.STORE_FILTER, ids.REPR_LAYERS) and shown == run_id
        return render(ctx, run_id, cell, flt, lod_view if same_run else None, layers)

    @app.callback(Output(ids.REPR_GRAPH, "figure", allow_duplicate=True),
                  Input(ids.STORE_CELL, "data"), State(ids.STORE_RUN, "data"),
                  State(ids.REPR_SHOWN, "data"), State(ids.STORE_FILTER, "data"),
                  State(ids.REPR_LAYERS, "value"), prevent_initial_call=True)
    def _highlight(cell, run_id, shown, flt, layers):
        return highlight(ctx, run_id, cell, shown, flt, layers)

    @app.callback(Output(ids.REPR_GRAPH, "figure", allow_duplicate=True),
                  Input(ids.NOTES_VERSION, "data"), State(ids.STORE_RUN, "data"),
                  State(ids.REPR_SHOWN, "data"), State(ids.STORE_FILTER, "data"),
                  State(ids.REPR_LAYERS, "value"), prevent_initial_call=True)
    def _notes(_version, run_id, shown, flt, layers):
        return notes_patch(ctx, run_id, shown, flt, layers)

    @app.callback(Output(ids.REPR_GRAPH, "figure", allow_duplicate=True),
                  Output(ids.REPR_INFO, "children", allow_duplicate=True),
                  Output(ids.REPR_VIEW, "data"),
                  Input(ids.REPR_GRAPH, "relayoutData"), State(ids.STORE_RUN, "data"),
                  State(ids.REPR_SHOWN, "data"), State(ids.REPR_VIEW, "data"),
                  State(ids.STORE_FILTER, "data"), State(ids.REPR_LAYERS, "value"),
                  prevent_initial_call=True)
    def _level_of_detail(relayout, run_id, shown, stored, flt, layers):
        return level_of_detail(ctx, run_id, shown, relayout, stored, flt, layers)
