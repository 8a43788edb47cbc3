"""Cell finder: the image filter bar, the file-name search and the sortable table of cells.

The filter bar (generator, category, label, right/wrong, split, p(fake) range, file name) is the
one writer of ``ids.STORE_FILTER`` (:class:`app.state.filters.ImageFilter` as JSON); the
representation view, the image grid and the table below read it. The file-name search lists the
first matching files; a click opens the file's cell (through the shell's router) and the image
in the viewer (``ids.STORE_VIEWER``).

The cell table (dash-ag-grid; its styles ship inside the package's JavaScript, so nothing is
fetched from a CDN) lists the cells that hold matching images, recounted from those images, and
starts sorted by accuracy, lowest first: the cells the classifier gets wrong most often, near the
boundary, come first. A row click opens the cell (router); a cell opened elsewhere is selected
and scrolled to in the table.
"""
from __future__ import annotations

import dash_ag_grid as dag
import numpy as np
from dash import ALL, Input, Output, State, ctx as dash_ctx, dcc, html, no_update

from app.state import filters, ids, imagesets
from app.state.context import AppContext
from app.state.filters import LABELS, OUTCOMES, ImageFilter

MAX_HITS = 8  # files listed by the name search

# The table's columns. "boundary" is the cell's |x| on the map: |asinh(mean logit)| of its
# (matching) images, 0 on the decision boundary, before glyphs are pushed apart.
PERCENT = {"function": "d3.format('.0%')(params.value)"}
TWO_DECIMALS = {"function": "d3.format('.2f')(params.value)"}
WITH_SIDE = {"function": "d3.format('.2f')(params.value) + ' ' + params.data.side"}
# The most used columns first: in a narrow window the table scrolls sideways, "cell" stays pinned.
COLUMNS = [
    {"field": "cell", "headerName": "cell", "width": 64, "pinned": "left",
     "headerTooltip": "cell id (as on the map)"},
    {"field": "accuracy", "headerName": "accuracy", "width": 104, "sort": "asc",
     "valueFormatter": PERCENT, "headerTooltip": "share of the cell's images predicted right"},
    {"field": "n", "headerName": "images", "width": 78,
     "headerTooltip": "images of the cell (that pass the filter)"},
    {"field": "boundary", "headerName": "to boundary", "width": 110, "valueFormatter": WITH_SIDE,
     "headerTooltip": "distance to the decision boundary: |x| of the cell on the map, "
                      "|asinh(mean logit)|, and the side it is on; 0 = on the boundary"},
    {"field": "real_wrong", "headerName": "real → fake", "width": 96,
     "headerTooltip": "real images predicted fake (false positives)"},
    {"field": "fake_wrong", "headerName": "fake → real", "width": 96,
     "headerTooltip": "fake images predicted real (missed fakes)"},
    {"field": "confidence", "headerName": "confidence", "width": 100, "valueFormatter": TWO_DECIMALS,
     "headerTooltip": "mean confidence max(p, 1 - p) of the classifier"},
    {"field": "mix", "headerName": "generators", "flex": 1, "minWidth": 180, "sortable": False,
     "tooltipField": "mix", "headerTooltip": "generator mix of the cell's images (that pass the filter)"},
]


# -- layout ---------------------------------------------------------------------------------------
def _multi(id_, placeholder, options=()):
    return dcc.Dropdown(id=id_, options=list(options), value=[], multi=True, placeholder=placeholder,
                        className="fx-filter-dropdown", clearable=True, searchable=True)


def filter_bar() -> html.Div:
    """The compact filter bar, with the file-name search and its hits below it."""
    words = {"right": "✔ right", "wrong": "✘ wrong"}  # as the viewer's badges; short enough for the chip
    return html.Div(className="fx-filterbar", children=[
        html.Div(className="fx-filter-row", children=[
            html.Span("Filter images", className="fx-panel-title"),
            _multi(ids.FILTER_GENERATOR, "generator"),
            _multi(ids.FILTER_CATEGORY, "category"),
            _multi(ids.FILTER_LABEL, "label", [{"label": v, "value": v} for v in LABELS]),
            html.Div(_multi(ids.FILTER_OUTCOME, "right / wrong",
                            [{"label": words[v], "value": v} for v in OUTCOMES]), className="fx-filter-outcome",
                     title="keep the images the detector got right, or wrong"),
            _multi(ids.FILTER_SPLIT, "split"),
            html.Div(className="fx-filter-p", title="keep the images whose p(fake) lies in this "
                                                    "range (both ends included)", children=[
                html.Span("p(fake)", className="fx-muted"),
                dcc.RangeSlider(id=ids.FILTER_P, min=0, max=1, step=0.01, value=[0, 1],
                                marks={0: "0", 0.5: "0.5", 1: "1"}, allowCross=False,
                                className="fx-filter-slider"),
            ]),
            dcc.Input(id=ids.FILTER_NAME, type="text", value="", debounce=0.4,
                      placeholder="file name contains…", className="fx-filter-name"),
            html.Button("Clear", id=ids.FILTER_CLEAR, n_clicks=0, title="show all images again"),
            html.Span(id=ids.FILTER_INFO, className="fx-muted fx-filter-info"),
        ]),
        html.Div(id=ids.FINDER_HITS, className="fx-hits"),
    ])


def table_panel() -> html.Div:
    """The cell table, in its own panel."""
    return html.Div(className="fx-panel fx-cells-panel", children=[
        html.Div(className="fx-panel-head", children=[
            html.Span("Cells", className="fx-panel-title"),
            html.Span(id=ids.FINDER_TABLE_INFO, className="fx-muted"),
        ]),
        dag.AgGrid(id=ids.FINDER_TABLE, rowData=[], columnDefs=COLUMNS, getRowId="params.data.key",
                   defaultColDef={"sortable": True, "resizable": True, "suppressMovable": True,
                                  "wrapHeaderText": True, "autoHeaderHeight": True},
                   dashGridOptions={"rowSelection": {"mode": "singleRow", "checkboxes": False,
                                                     "enableClickSelection": True},
                                    "rowHeight": 26, "tooltipShowDelay": 400, "animateRows": False,
                                    "localeText": {"noRowsToShow": "No cell holds an image that "
                                                                   "passes the filter."}},
                   style={"height": "300px", "width": "100%"}, className="fx-cells-grid"),
    ])


# -- callback bodies ------------------------------------------------------------------------------
def _options(column: filters.Categorical) -> list[dict]:
    counts = np.bincount(column.codes, minlength=len(column.values))
    return [{"label": f"{v} ({int(c):,})", "value": v} for v, c in zip(column.values, counts)]


def controls_for_run(ctx: AppContext, run_id, current: tuple):
    """Options of the run's generators, categories and splits (with image counts), and the control
    values: choices the run lacks are dropped. ``current`` = (generators, categories, splits)."""
    view = ctx.run(run_id)
    if view is None:
        return [], [], [], [], [], []
    cols = view.columns
    values = []
    for column, chosen in zip((cols.generator, cols.category, cols.split), current):
        values.append([v for v in (chosen or []) if v in column.values])
    return (_options(cols.generator), _options(cols.category), _options(cols.split), *values)


def controls(ctx: AppContext, cleared: bool, run_id, current: tuple) -> tuple:
    """The controls' callback body: options of generator, category, split; values of generator,
    category, split, label, right/wrong, p range, name. "Clear" resets every value; a new run
    keeps the choices it has (label, right/wrong, p range and name apply to any run)."""
    if cleared:
        return (no_update,) * 3 + ([], [], [], [], [], [0, 1], "")
    *options, g, c, s = controls_for_run(ctx, run_id, current)
    return (*options, g, c, s, no_update, no_update, no_update, no_update)


def filter_from_controls(generators, categories, labels, outcomes, splits, p_range, name) -> dict | None:
    """The controls' values -> ``STORE_FILTER`` (None when they keep every image)."""
    p = p_range if isinstance(p_range, (list, tuple)) and len(p_range) == 2 else (0.0, 1.0)
    return ImageFilter(generators=tuple(generators or ()), categories=tuple(categories or ()),
                       labels=tuple(labels or ()), outcomes=tuple(outcomes or ()),
                       splits=tuple(splits or ()), p_range=(p[0] if p[0] is not None else 0.0,
                                                            p[1] if p[1] is not None else 1.0),
                       name=name or "").to_json()


def table_rows(ctx: AppContext, run_id, flt) -> tuple[list[dict], str]:
    """(rowData, info line): the cells holding matching images, recounted from those images,
    in order of accuracy (lowest first), then id."""
    view = ctx.run(run_id)
    if view is None:
        return [], ""
    flt = ImageFilter.from_json(flt)
    counts = filters.cell_counts(view, None if flt.keeps_all else filters.mask(view, flt))
    shown = np.flatnonzero(counts.n > 0)
    order = shown[np.lexsort((counts.ids[shown], counts.accuracy[shown]))]
    distance, mixes = counts.boundary_distance, counts.mixes()
    rows = [{"key": str(int(counts.ids[k])), "cell": int(counts.ids[k]), "n": int(counts.n[k]),
             "accuracy": round(float(counts.accuracy[k]), 4),
             "confidence": round(float(counts.confidence[k]), 4),
             "boundary": round(float(distance[k]), 4),
             "side": "fake" if counts.mean_logit[k] > 0 else "real",
             "real_wrong": int(counts.counts[k, 1]), "fake_wrong": int(counts.counts[k, 3]),
             "mix": mixes[k]} for k in order]
    n_cells = len(counts.ids)
    info = (f"{n_cells:,} cells · click a row to open it" if flt.keeps_all else
            f"{len(rows):,} of {n_cells:,} cells hold images that pass the filter · counts are of "
            f"those images")
    return rows, info


def table_selection(cell) -> tuple:
    """(selectedRows, scrollTo) that show the open cell's row (none when no cell is open)."""
    if cell is None or imagesets.is_set(cell):  # an image set is not a row of the table
        return [], no_update
    key = str(int(cell))
    return {"ids": [key]}, {"rowId": key, "rowPosition": "middle"}


def hits(ctx: AppContext, run_id, flt):
    """(hit list children, info line): the files that pass the filter, when it searches a name,
    and how many images pass the filter."""
    view = ctx.run(run_id)
    if view is None:
        return [], ""
    flt = ImageFilter.from_json(flt)
    if flt.keeps_all:
        return [], f"all {view.n_images:,} images"
    keep = filters.mask(view, flt)
    n = int(keep.sum())
    info = f"{n:,} of {view.n_images:,} images pass"
    if not flt.name:
        return [], info
    first, total = filters.matching_images(keep, MAX_HITS)
    if total == 0:
        return [html.Span(f'No file name contains "{flt.name}" among the images that pass the '
                          "filter.", className="fx-muted")], info
    items = [html.Span(f"{total:,} file(s) · click one to open its cell and the image:",
                       className="fx-muted")]
    for i in first.tolist():
        items.append(html.Button(
            [html.B(view.file_name(i)),
             f" · cell {int(view.cell[i])} · {view.label_word(i)}, predicted "
             f"{view.pred_word(i)} {view.outcome_mark(i)} · p(fake) {view.prob[i]:.2f}"],
            id=ids.finder_hit(int(i)), n_clicks=0, className="fx-hit",
            title=str(view.records[i].get("path", ""))))
    if total > len(first):
        items.append(html.Span(f"and {total - len(first):,} more: type more of the name",
                               className="fx-muted"))
    return items, info


def viewer_for_hit(trigger, clicks) -> dict | object:
    """``STORE_VIEWER`` after hit ``trigger`` (its id) was clicked ``clicks`` times; a hit button
    created anew (no clicks) opens nothing."""
    if not isinstance(trigger, dict) or not clicks:
        return no_update
    return {"index": int(trigger["index"])}


def register(app, ctx: AppContext) -> None:
    @app.callback(Output(ids.FILTER_GENERATOR, "options"), Output(ids.FILTER_CATEGORY, "options"),
                  Output(ids.FILTER_SPLIT, "options"),
                  Output(ids.FILTER_GENERATOR, "value"), Output(ids.FILTER_CATEGORY, "value"),
                  Output(ids.FILTER_SPLIT, "value"), Output(ids.FILTER_LABEL, "value"),
                  Output(ids.FILTER_OUTCOME, "value"), Output(ids.FILTER_P, "value"),
                  Output(ids.FILTER_NAME, "value"),
                  Input(ids.STORE_RUN, "data"), Input(ids.FILTER_CLEAR, "n_clicks"),
                  State(ids.FILTER_GENERATOR, "value"), State(ids.FILTER_CATEGORY, "value"),
                  State(ids.FILTER_SPLIT, "value"))
    def _controls(run_id, _clear, generators, categories, splits):
        return controls(ctx, dash_ctx.triggered_id == ids.FILTER_CLEAR, run_id,
                        (generators, categories, splits))

    @app.callback(Output(ids.STORE_FILTER, "data"),
                  Input(ids.FILTER_GENERATOR, "value"), Input(ids.FILTER_CATEGORY, "value"),
                  Input(ids.FILTER_LABEL, "value"), Input(ids.FILTER_OUTCOME, "value"),
                  Input(ids.FILTER_SPLIT, "value"), Input(ids.FILTER_P, "value"),
                  Input(ids.FILTER_NAME, "value"), State(ids.STORE_FILTER, "data"))
    def _filter(generators, categories, labels, outcomes, splits, p_range, name, current):
        new = filter_from_controls(generators, categories, labels, outcomes, splits, p_range, name)
        return new if new != current else no_update  # an unchanged filter redraws nothing

    @app.callback(Output(ids.FINDER_TABLE, "rowData"), Output(ids.FINDER_TABLE_INFO, "children"),
                  Input(ids.STORE_RUN, "data"), Input(ids.STORE_FILTER, "data"))
    def _rows(run_id, flt):
        return table_rows(ctx, run_id, flt)

    @app.callback(Output(ids.FINDER_TABLE, "selectedRows"), Output(ids.FINDER_TABLE, "scrollTo"),
                  Input(ids.STORE_CELL, "data"), Input(ids.FINDER_TABLE, "rowData"))
    def _select_row(cell, _rows):
        return table_selection(cell)

    @app.callback(Output(ids.FINDER_HITS, "children"), Output(ids.FILTER_INFO, "children"),
                  Input(ids.STORE_RUN, "data"), Input(ids.STORE_FILTER, "data"))
    def _hits(run_id, flt):
        return hits(ctx, run_id, flt)

    # The image viewer owns STORE_VIEWER; a search hit opens it too (hence allow_duplicate).
    @app.callback(Output(ids.STORE_VIEWER, "data", allow_duplicate=True),
                  Input(ids.finder_hit(ALL), "n_clicks"), prevent_initial_call=True)
    def _open_hit(_clicks):
        clicks = dash_ctx.triggered[0].get("value") if dash_ctx.triggered else None
        return viewer_for_hit(dash_ctx.triggered_id, clicks)
