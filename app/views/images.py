"""Image view: a cell's images as framed thumbnails on a grid arranged by similarity.

A cell is drawn from its prepared grid (:func:`app.artifacts.read_grid`): one sprite picture plus
an invisible selectable marker per thumbnail. A cell not prepared yet is prepared by a background
job (thumbnails, arrangement, sprite) with a progress bar, which then draws the grid itself.
Box or lasso selection feeds the attention view; selection restored from the URL is applied with a
``dash.Patch`` of the marker trace only.
"""
from __future__ import annotations

import uuid

from dash import ClientsideFunction, Input, Output, Patch, State, dcc, html, no_update

from .. import artifacts, ids
from ..context import AppContext
from ..jobs import run_unavailable, view_progress, view_job
from ..figures import empty_figure, image_grid_figure, selected_positions

GRAPH_CONFIG = {"scrollZoom": True, "displaylogo": False,
                "modeBarButtonsToRemove": ["autoScale2d", "toImage"]}


def layout() -> html.Div:
    from . import concepts

    return html.Div(className="fx-panel", children=[
        html.Div(className="fx-panel-head", children=[
            html.Span(id=ids.IMAGES_TITLE, className="fx-panel-title", children="Images"),
            dcc.RadioItems(id=ids.VIEW_TOGGLE, className="fx-toggle", value="images", inline=True,
                           options=[{"label": "Images", "value": "images"},
                                    {"label": "Concepts", "value": "concepts"}]),
        ]),
        html.Div(id=ids.IMAGES_PANEL, children=[
            html.Div(id=ids.IMAGES_PROGRESS_WRAP, style={"display": "none"}, children=[
                html.Progress(id=ids.IMAGES_PROGRESS, max="100", value="0"),
                html.Div(id=ids.IMAGES_PROGRESS_LABEL, className="fx-progress-label"),
            ]),
            html.Div(id=ids.IMAGES_MESSAGE, className="fx-message"),
            dcc.Graph(id=ids.IMAGES_GRAPH, figure=empty_figure("Click a cell to see its images."),
                      config=GRAPH_CONFIG, style={"height": "520px"}, clear_on_unhover=True),
            # Hovering a thumbnail shows it larger (served by the thumbnail route) with its facts.
            dcc.Tooltip(id=ids.IMAGES_TOOLTIP, direction="right", className="fx-tooltip", children=[
                html.Img(id=ids.IMAGES_TOOLTIP_IMG, className="fx-tooltip-img"),
                html.Div(id=ids.IMAGES_TOOLTIP_TEXT, className="fx-tooltip-text"),
            ]),
            html.Div(className="fx-legend", children=[
                html.Span([html.Span(className="fx-frame right"), "prediction right"],
                          className="fx-legend-item"),
                html.Span([html.Span(className="fx-frame wrong"), "prediction wrong"],
                          className="fx-legend-item"),
                html.Span("box/lasso-select images to see their attention maps",
                          className="fx-legend-item fx-muted"),
            ]),
        ]),
        concepts.layout(),
        dcc.Store(id=ids.IMAGES_SHOWN), dcc.Store(id=ids.GRID_REQUEST),
    ])


def sprite_url(run_id: str, key: str) -> str:
    return f"/files/sprite/{run_id}/{key}.jpg"


def hover_texts(view, order: list[int]) -> list[str]:
    """Hover text per filled slot (lines): file, label, prediction, probability, generator, split."""
    words = ("real", "fake")
    out = []
    for i in order:
        if i < 0:
            continue
        r = view.records[i]
        mark = "✔" if view.correct[i] else "✘"
        out.append(f"{r.get('path') or view.file_name(i)}\nlabel {words[int(view.label[i])]} · predicted "
                   f"{words[int(view.pred[i])]} {mark}\np(fake) = {view.prob[i]:.3f}\n"
                   f"generator: {r.get('generator') or '–'} · {r.get('split') or ''}")
    return out


def grid_view(ctx: AppContext, view, cell: int, grid: dict, sel_ids):
    """(figure, shown marker) of a prepared grid."""
    fig = image_grid_figure(grid, sprite_url(view.run_id, grid["sprite"]),
                            hover_texts(view, grid["order"]), selected=sel_ids)
    return fig, {"run": view.run_id, "cell": int(cell), "sprite": grid["sprite"]}


def render(ctx: AppContext, run_id, cell, sel, pending):
    """Callback body: (figure, shown, request, message, title).

    A prepared cell is drawn at once. Otherwise a request for the background job is written
    (the job draws the grid when done). ``pending`` is the last request: when a prepared cell is
    drawn while an older request may still run, the request is cleared so Dash cancels that job
    and it cannot overwrite this cell.
    """
    clear = None if pending else no_update
    view = ctx.run(run_id)
    if view is None or cell is None:
        return (empty_figure("Click a cell to see its images."), None, clear, "", "Images")
    info = view.cell_info(cell)
    if info is None:
        return (empty_figure(f"Run {run_id} has no cell {cell}."), None, clear, "", "Images")
    title = f"Cell {cell} · {info['n']} images · accuracy {info.get('accuracy', 0):.0%}"
    grid = artifacts.read_grid(ctx.app_cache(view), cell)
    if grid is not None:
        fig, shown = grid_view(ctx, view, cell, grid, (sel or {}).get("ids") or [])
        return fig, shown, clear, "", title
    request = {"run": view.run_id, "cell": int(cell), "sel": (sel or {}).get("ids") or [],
               "nonce": uuid.uuid4().hex}
    return (empty_figure("Preparing thumbnails…"), None, request, "Preparing the cell's thumbnails…",
            title)


def prepare(ctx: AppContext, request: dict | None, set_progress):
    """Background job body: prepare the requested cell's grid; returns (figure, shown, message)."""
    if not request:
        return no_update, no_update, no_update
    view = ctx.run(request["run"])
    cell = int(request["cell"])
    if view is None:
        return empty_figure(""), None, run_unavailable(request)

    progress = view_progress(set_progress)

    try:
        from ..shared_jobs import cell_lock

        cache = ctx.app_cache(view)
        with cell_lock(view.path, cell):  # a second request waits, then reads the grid
            grid = artifacts.read_grid(cache, cell) or artifacts.prepare_grid(view, cache, cell,
                                                                              progress)
    except Exception as e:  # reported in the panel; the app stays usable
        return empty_figure(""), None, html.Span(f"Could not prepare cell {cell}: "
                                                 f"{type(e).__name__}: {e}", className="fx-error")
    fig, shown = grid_view(ctx, view, cell, grid, request.get("sel") or [])
    return fig, shown, ""


def selection_patch(ctx: AppContext, run_id, cell, sel, shown):
    """Patch the markers' ``selectedpoints`` when the selection comes from the URL or a note."""
    if not shown or shown.get("run") != run_id or shown.get("cell") != cell:
        return no_update
    if (sel or {}).get("from") == "graph":  # the graph already shows what the user selected
        return no_update
    view = ctx.run(run_id)
    grid = artifacts.read_grid(ctx.app_cache(view), cell) if view else None
    if grid is None:
        return no_update
    slots = [i for i in grid["order"] if i >= 0]
    patch = Patch()
    patch["data"][0]["selectedpoints"] = selected_positions(slots, (sel or {}).get("ids"))
    return patch


def register(app, ctx: AppContext, managers) -> None:
    @app.callback(Output(ids.IMAGES_GRAPH, "figure"), Output(ids.IMAGES_SHOWN, "data"),
                  Output(ids.GRID_REQUEST, "data"), Output(ids.IMAGES_MESSAGE, "children"),
                  Output(ids.IMAGES_TITLE, "children"),
                  Input(ids.STORE_CELL, "data"), State(ids.STORE_RUN, "data"),
                  State(ids.STORE_SEL, "data"), State(ids.GRID_REQUEST, "data"))
    def _render(cell, run_id, sel, pending):
        return render(ctx, run_id, cell, sel, pending)

    # The job writes the grid itself (no "ready" store feeding back into _render: Dash forbids
    # such cycles between callbacks).
    @app.callback(Output(ids.IMAGES_GRAPH, "figure", allow_duplicate=True),
                  Output(ids.IMAGES_SHOWN, "data", allow_duplicate=True),
                  Output(ids.IMAGES_MESSAGE, "children", allow_duplicate=True),
                  Input(ids.GRID_REQUEST, "data"),
                  **view_job(managers.views, ids.IMAGES_PROGRESS, ids.IMAGES_PROGRESS_LABEL,
                             ids.IMAGES_PROGRESS_WRAP))
    def _prepare(set_progress, request):
        return prepare(ctx, request, set_progress)

    app.clientside_callback(
        ClientsideFunction(namespace="faxplainer", function_name="thumbnailTooltip"),
        Output(ids.IMAGES_TOOLTIP, "show"), Output(ids.IMAGES_TOOLTIP, "bbox"),
        Output(ids.IMAGES_TOOLTIP_IMG, "src"), Output(ids.IMAGES_TOOLTIP_TEXT, "children"),
        Input(ids.IMAGES_GRAPH, "hoverData"), State(ids.STORE_RUN, "data"))

    @app.callback(Output(ids.IMAGES_GRAPH, "figure", allow_duplicate=True),
                  Input(ids.STORE_SEL, "data"), State(ids.STORE_RUN, "data"),
                  State(ids.STORE_CELL, "data"), State(ids.IMAGES_SHOWN, "data"),
                  prevent_initial_call=True)
    def _select(sel, run_id, cell, shown):
        return selection_patch(ctx, run_id, cell, sel, shown)
