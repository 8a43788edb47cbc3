"""Image view: a cell's images as framed thumbnails on a grid arranged by similarity.

A cell is drawn from its prepared grid (:func:`app.files.artifacts.read_grid`): one sprite picture plus
an invisible selectable marker per thumbnail. A cell not prepared yet is prepared by a background
job (thumbnails, arrangement, sprite) with a progress bar, which then draws the grid itself.
Box or lasso selection feeds the attention view; selection restored from the URL is applied with a
``dash.Patch`` of the marker trace only. Under the analyst's image filter (``ids.STORE_FILTER``)
the grid holds only the cell's matching images, arranged by similarity among themselves (its own
grid file, keyed by the filter); a cell the filter leaves empty says so.

The view opens an image set as it opens a cell (``STORE_CELL`` = ``"set:<hash>"``,
:mod:`app.state.imagesets`, e.g. a matrix pair's misclassified images): prepared by the same job, named
by its title ("misclassified by the head trained on gan, tested on diffusion (frames: the run's own head) · 23 images"), filtered alike.
An applied set's images (pseudo-run ``RUN@SET``) without a label have a grey frame and a "?"
badge: no right or wrong.
"""
from __future__ import annotations

from dash import ClientsideFunction, Input, Output, Patch, State, dcc, html, no_update

from app.files import artifacts, urls

from app.state import ids, imagesets
from app.state.filters import ImageFilter
from app.state.context import AppContext
from app.figures.common import empty_figure, trace_index
from app.figures.grid import (GRID_TRACE_NAME, GRID_TRACES, highlight_style, image_grid_figure, selected_positions,
                              selection_shapes)
from app.jobs.panel import Job, JobPanel, JobView, Ready

GRAPH_CONFIG = {"scrollZoom": True, "displaylogo": False, "showSendToCloud": False,  # no upload from a forensic tool
                "modeBarButtonsToRemove": ["autoScale2d", "toImage"]}


def layout() -> html.Div:
    from app.views import concepts

    return html.Div(className="fx-panel", children=[
        html.Div(className="fx-panel-head", children=[
            html.Span(id=ids.IMAGES_TITLE, className="fx-panel-title", children="Images"),
            dcc.RadioItems(id=ids.VIEW_TOGGLE, className="fx-toggle", value="images", inline=True,
                           options=[{"label": "Images", "value": "images"},
                                    {"label": "Concepts", "value": "concepts"}]),
        ]),
        JobPanel(ids.IMAGES_JOB, id=ids.IMAGES_PANEL, content=[
            html.Div(className="fx-highlight-note", children=[
                html.Span(id=ids.IMAGES_HIGHLIGHT),
                html.Button("clear", id=ids.HIGHLIGHT_CLEAR, n_clicks=0, style={"display": "none"})]),
            dcc.Graph(id=ids.IMAGES_GRAPH, figure=empty_figure("Click a cell to see its images."),
                      config=GRAPH_CONFIG, style={"height": "520px"}, clear_on_unhover=True),
            # Hovering a thumbnail shows it larger (served by the thumbnail route) with its facts.
            dcc.Tooltip(id=ids.IMAGES_TOOLTIP, direction="right", className="fx-tooltip", children=[
                html.Img(id=ids.IMAGES_TOOLTIP_IMG, className="fx-tooltip-img"),
                html.Div(id=ids.IMAGES_TOOLTIP_TEXT, className="fx-tooltip-text"),
            ]),
            html.Div(className="fx-legend", children=[
                html.Span([html.Span("R", className="fx-badge real"), "real image"],
                          className="fx-legend-item"),
                html.Span([html.Span("F", className="fx-badge fake"), "fake image"],
                          className="fx-legend-item"),
                html.Span([html.Span(className="fx-frame right"), "prediction right"],
                          className="fx-legend-item"),
                html.Span([html.Span(className="fx-frame wrong"), "prediction wrong"],
                          className="fx-legend-item"),
                html.Span([html.Span(className="fx-frame unlabelled"), "no label (prediction only)"],
                          id=ids.IMAGES_LEGEND_UNLABELLED, className="fx-legend-item",
                          style={"display": "none"}),  # shown for a set with such images (app.views.applied)
                html.Span([html.Span(className="fx-frame selected"), "selected"],
                          className="fx-legend-item"),
                html.Span("click an image to open it · box/lasso-select images to compare their "
                          "maps", className="fx-legend-item fx-muted"),
            ]),
        ]),
        concepts.layout(),
        dcc.Store(id=ids.IMAGES_SHOWN),
    ])


def hover_texts(view, order: list[int]) -> list[str]:
    """Hover text per filled slot (lines): file, label, prediction, probability, generator, split."""
    out = []
    for i in order:
        if i < 0:
            continue
        r = view.records[i]
        out.append(f"{r.get('path') or view.file_name(i)}\nlabel {view.label_word(i)} · predicted "
                   f"{view.pred_word(i)} {view.outcome_mark(i)}\np(fake) = {view.prob[i]:.3f}\n"
                   f"generator: {r.get('generator') or '–'} · {r.get('split') or ''}")
    return out


def highlighted_in(highlight: dict | None, run_id, cell) -> list[int]:
    """The highlighted images when the highlight belongs to this run's open cell."""
    h = highlight or {}
    return list(h.get("ids") or []) if h.get("run") == run_id and h.get("cell") == cell else []


def grid_view(ctx: AppContext, view, cell: int, grid: dict, sel_ids, highlight: dict | None = None):
    """(figure, shown marker) of a prepared grid."""
    fig = image_grid_figure(grid, urls.sprite(view.run_id, grid["sprite"]),
                            hover_texts(view, grid["order"]), selected=sel_ids,
                            highlighted=highlighted_in(highlight, view.run_id, cell),
                            highlight_colour=(highlight or {}).get("colour"))
    return fig, {"run": view.run_id, "cell": imagesets.cell_key(cell), "sprite": grid["sprite"],
                 "filter": grid.get("filter", "")}


def highlight_note(run_id, cell, highlight: dict | None):
    """(text, clear button style) above the grid while some of its images are highlighted."""
    ids_ = highlighted_in(highlight, run_id, cell)
    if not ids_:
        return "", {"display": "none"}
    colour = highlight.get("colour_name") or "purple"  # a concept's images: in the concept's colour
    return f"Highlighted (dotted {colour}): {highlight.get('why') or f'{len(ids_)} images'}", {}


def title(ctx: AppContext, run_id, cell, flt=None) -> str:
    """The image view's title: the open cell (of an applied set: said so) or image set, its size
    and accuracy (and how many images pass the filter ``flt``)."""
    view = ctx.run(run_id)
    info = view.cell_info(cell) if view is not None and cell is not None else None
    if info is None:
        return "Images"
    accuracy = info.get("accuracy")
    score = f"accuracy {accuracy:.0%}" if accuracy is not None else \
        ("no labels: predictions only" if info["n"] else "no image")
    if info.get("set"):
        text = f"{info['title']} · {info['n']} images"
    else:
        where = f" of applied set {view.set_name}" if view.is_applied else ""
        text = f"Cell {cell}{where} · {info['n']} images · {score}"
    flt = ImageFilter.from_json(flt)
    if not flt.keeps_all:
        text += f" · {len(artifacts.filtered_members(view, cell, flt))} shown (filter)"
    return text


def show(ctx: AppContext, cell, run_id, sel, flt=None, highlight=None):
    """A prepared cell is drawn at once; otherwise a job prepares it (and then draws it)."""
    view = ctx.run(run_id)
    if view is None or cell is None:
        return Ready((empty_figure("Click a cell to see its images."), None))
    info = view.cell_info(cell)
    if info is None:
        what = "image set" if imagesets.is_set(cell) else "cell"
        where = view.describe()
        return Ready((empty_figure(f"{where[0].upper()}{where[1:]} has no {what} {cell}."), None))
    flt = ImageFilter.from_json(flt)
    grid = artifacts.read_grid(ctx.app_cache(view), cell, flt.key())
    if grid is not None:
        return Ready(grid_view(ctx, view, cell, grid, (sel or {}).get("ids") or [], highlight))
    if len(artifacts.filtered_members(view, cell, flt)) == 0:
        name = info["title"] if info.get("set") else f"cell {cell}"
        if flt.keeps_all:  # e.g. a cell no image of an applied set fell in
            return Ready((empty_figure(f"No image of {view.describe()} is in {name}."), None))
        return Ready((empty_figure(f"No image of {name} passes the filter<br>"
                                   f"({flt.describe()})."), None))
    return Job({"run": view.run_id, "cell": imagesets.cell_key(cell), "sel": (sel or {}).get("ids") or [],
                "filter": flt.to_json(), "highlight": highlight},
               (empty_figure("Preparing thumbnails…"), None), "Preparing the cell's thumbnails…")


def compute(ctx: AppContext, view, request: dict, progress):
    """The job: thumbnails, arrangement and sprite of the requested cell; returns the grid."""
    from app.files.cell_grids import cell_lock

    cell = imagesets.cell_key(request["cell"])
    flt = ImageFilter.from_json(request.get("filter"))
    cache = ctx.app_cache(view)
    with cell_lock(view.path, cell):  # a second request waits, then reads the grid
        grid = (artifacts.read_grid(cache, cell, flt.key())
                or artifacts.prepare_grid(view, cache, cell, progress, flt))
    return grid_view(ctx, view, cell, grid, request.get("sel") or [], request.get("highlight")), ""


JOB = JobView(ids.IMAGES_JOB, outputs=[(ids.IMAGES_GRAPH, "figure"), (ids.IMAGES_SHOWN, "data")],
              show=show, compute=compute, blank=(empty_figure(""), None),
              failure="Could not prepare the cell")


def selection_patch(ctx: AppContext, run_id, cell, sel, shown, highlight=None):
    """Patch the outlines of the selection and of highlighted images (and, for a selection from
    the URL or a note, the markers' ``selectedpoints``) when either changes."""
    if not shown or shown.get("run") != run_id or shown.get("cell") != cell:
        return no_update
    view = ctx.run(run_id)
    grid = artifacts.read_grid(ctx.app_cache(view), cell, shown.get("filter", "")) if view else None
    if grid is None:
        return no_update
    chosen = (sel or {}).get("ids")
    patch = Patch()
    patch["layout"]["shapes"] = (selection_shapes(grid, chosen) + selection_shapes(
        grid, highlighted_in(highlight, run_id, cell), highlight_style((highlight or {}).get("colour"))))
    if (sel or {}).get("from") != "graph":  # the graph already shows what the user selected
        slots = [i for i in grid["order"] if i >= 0]
        markers = trace_index(GRID_TRACES, GRID_TRACE_NAME)
        patch["data"][markers]["selectedpoints"] = selected_positions(slots, chosen)
    return patch


def register(app, ctx: AppContext, managers) -> None:
    JOB.register(app, ctx, managers.grids, inputs=[Input(ids.STORE_CELL, "data"),
                                                   State(ids.STORE_RUN, "data"),
                                                   State(ids.STORE_SEL, "data"),
                                                   Input(ids.STORE_FILTER, "data"),
                                                   State(ids.STORE_HIGHLIGHT, "data")])

    @app.callback(Output(ids.IMAGES_HIGHLIGHT, "children"), Output(ids.HIGHLIGHT_CLEAR, "style"),
                  Input(ids.STORE_HIGHLIGHT, "data"), Input(ids.STORE_CELL, "data"),
                  State(ids.STORE_RUN, "data"))
    def _highlight_note(highlight, cell, run_id):
        return highlight_note(run_id, cell, highlight)

    @app.callback(Output(ids.IMAGES_TITLE, "children"), Input(ids.STORE_CELL, "data"),
                  State(ids.STORE_RUN, "data"), Input(ids.STORE_FILTER, "data"))
    def _title(cell, run_id, flt):
        return title(ctx, run_id, cell, flt)

    app.clientside_callback(
        ClientsideFunction(namespace="faxplainer", function_name="thumbnailTooltip"),
        Output(ids.IMAGES_TOOLTIP, "show"), Output(ids.IMAGES_TOOLTIP, "bbox"),
        Output(ids.IMAGES_TOOLTIP_IMG, "src"), Output(ids.IMAGES_TOOLTIP_TEXT, "children"),
        Input(ids.IMAGES_GRAPH, "hoverData"), State(ids.STORE_RUN, "data"))

    @app.callback(Output(ids.IMAGES_GRAPH, "figure", allow_duplicate=True),
                  Input(ids.STORE_SEL, "data"), Input(ids.STORE_HIGHLIGHT, "data"),
                  State(ids.STORE_RUN, "data"), State(ids.STORE_CELL, "data"),
                  State(ids.IMAGES_SHOWN, "data"), prevent_initial_call=True)
    def _select(sel, highlight, run_id, cell, shown):
        return selection_patch(ctx, run_id, cell, sel, shown, highlight)
