"""Concept view (toggle of the image view): the cell's visual concepts.

Each concept (a cluster of relevant image segments, ACE-style, computed by
``pipeline.explain.cache.get_concepts``) shows its most central patches, its size and its profile
over the 16 dimensions. Computed in a background job on first request, then read from disk.
Concepts are found per cell: an open image set (:mod:`app.state.imagesets`) has none, and the view says
so. An applied set's cells (pseudo-run ``RUN@SET``) get concepts from the set's images there.
"""
from __future__ import annotations

from dash import ALL, Input, Output, State, ctx as dash_ctx, dcc, html, no_update

from app.files import artifacts, urls

from app.state import ids, imagesets
from app.state.context import AppContext
from app.figures.common import profile_figure
from app.jobs.panel import Job, JobPanel, JobView, Ready

CONCEPT_COLOURS = ("rgb(76,114,176)", "rgb(221,132,82)", "rgb(85,168,104)", "rgb(196,78,82)",
                   "rgb(129,114,179)", "rgb(147,120,96)")


def layout() -> html.Div:
    return JobPanel(ids.CONCEPTS_JOB, [html.Div(id=ids.CONCEPTS_CONTENT)], id=ids.CONCEPTS_PANEL,
                    style={"display": "none"})


MIN_SHARE = 0.10  # a concept with a smaller share of the cell's segments is marked as small


def plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def label_share(concept: dict) -> html.Div:
    """How many of the concept's segments come from real and from fake images, as a bar."""
    real, fake = int(concept.get("segments_real", 0)), int(concept.get("segments_fake", 0))
    unknown = int(concept.get("segments_unlabelled", 0))  # an applied set's images without a label
    total = real + fake + unknown or 1
    words = f"from real images {real} ({real / total:.0%}) · from fake images {fake} ({fake / total:.0%})"
    if unknown:
        words += f" · from images without a label {unknown} ({unknown / total:.0%})"
    return html.Div(className="fx-concept-share", children=[
        html.Div(className="fx-share-bar", title=f"{real} segments from real images, {fake} from fake"
                 + (f", {unknown} without a label" if unknown else ""),
                 children=[html.Span(className="real", style={"width": f"{100 * real / total:.0f}%"}),
                           html.Span(className="fake", style={"width": f"{100 * fake / total:.0f}%"}),
                           html.Span(className="unlabelled", style={"width": f"{100 * unknown / total:.0f}%"})]),
        html.Span(words, className="fx-muted"),
    ])


def concept_block(run_id: str, cell: int, k: int, concept: dict, total: int) -> html.Div:
    colour = CONCEPT_COLOURS[k % len(CONCEPT_COLOURS)]
    share = concept["size"] / total if total else 0
    n_images = len(concept.get("images") or ()) or int(concept.get("n_images", 0))
    small = share < MIN_SHARE or concept["size"] < 2
    return html.Div(className=f"fx-concept{' small' if small else ''}", **{"data-concept": str(k)}, children=[
        html.Div([html.B(f"Concept {k + 1}", style={"color": colour}),
                  html.Span(f" · {plural(concept['size'], 'segment')} from {plural(n_images, 'image')} "
                            f"· {share:.0%} of the cell's segments", className="fx-muted")]),
        html.Div(f"small concept (under {MIN_SHARE:.0%} of the segments, or a single segment): "
                 f"one image's detail rather than a pattern of the cell", className="fx-concept-small")
        if small else None,
        label_share(concept),
        html.Div(className="fx-patches", children=[
            html.Img(src=urls.concept_patch(run_id, cell, k, j), alt=f"concept {k + 1} patch {j + 1}")
            for j in range(len(concept.get("patches", [])))]),
        dcc.Graph(id=ids.concept_profile(k), figure=profile_figure(concept["profile"], colour),
                  config={"displayModeBar": False}, style={"height": "150px"}),
        html.Button(f"Show its {plural(n_images, 'image')} in the grid", id=ids.concept_show(k),
                    n_clicks=0, className="fx-concept-show", disabled=not concept.get("images")),
    ])


def content(view, cache, cell: int):
    """(children, message) of the cell's cached concepts, or None when not computed yet."""
    data = artifacts.read_concepts(view, cell)
    if data is None:
        return None
    concepts = data.get("concepts", [])
    total = sum(c["size"] for c in concepts)
    blocks = [concept_block(view.run_id, cell, k, c, total) for k, c in enumerate(concepts)]
    return blocks, f"{len(concepts)} concepts of cell {cell}" + source_note(data)


def source_note(data: dict) -> str:
    """Which of the cell's images the concepts come from, when not all of them."""
    n, used, skipped = data.get("n_images"), data.get("n_images_used"), data.get("n_skipped") or 0
    note = ""
    if n and used is not None and used + skipped < n:
        note = f", from a fixed random sample of {used + skipped} of its {n} images (concepts.max_images)"
    if skipped:
        note += f"; {skipped} unreadable image{'s' if skipped > 1 else ''} left out"
    return note


def show(ctx: AppContext, view_name, cell, run_id):
    """What the concept view shows: nothing unless toggled on; cached concepts at once, else a job."""
    if view_name != "concepts":
        return None
    view = ctx.run(run_id)
    if view is None or cell is None:
        return Ready(([],), "Click a cell to see its concepts.")
    if imagesets.is_set(cell):
        info = view.cell_info(cell)
        name = info["title"] if info else "this image set"
        return Ready(([],), f"Concepts are found per cell of the representation; the open image set "
                            f"({name}) is not a cell. Click a cell to see its concepts.")
    ready = content(view, ctx.app_cache(view), cell)
    if ready is not None:
        return Ready((ready[0],), ready[1])
    return Job({"run": view.run_id, "cell": int(cell)}, ([],), f"Finding the concepts of cell {cell}…")


def compute(ctx: AppContext, view, request: dict, progress, explain=None):
    """The job: compute the requested cell's concepts; returns ((content,), message)."""
    from app.jobs import work

    cell = int(request["cell"])
    _, get_concepts, _ = explain or work.explain_functions()
    cache = ctx.app_cache(view)
    progress("concepts", 0, 1)
    get_concepts(view.path, cell, progress=lambda done, total, stage="concepts", *_:  # kept in the run folder
                 progress(stage, done, total))
    ready = content(view, cache, cell)
    if ready is None:
        raise RuntimeError(f"the concepts were computed but their file is missing under {view.path}")
    return (ready[0],), ready[1]


JOB = JobView(ids.CONCEPTS_JOB, outputs=[(ids.CONCEPTS_CONTENT, "children")], show=show,
              compute=compute, blank=([],), failure="Could not compute the concepts")


def highlight(ctx: AppContext, trigger, clicks, run_id, cell):
    """STORE_HIGHLIGHT after a click: the images of concept k (of the open cell), or None."""
    if not clicks:
        return no_update
    if trigger == ids.HIGHLIGHT_CLEAR:
        return None
    view = ctx.run(run_id)
    is_cell = cell is not None and not imagesets.is_set(cell)  # an image set has no concepts
    data = artifacts.read_concepts(view, cell) if view and is_cell else None
    k = int(trigger["index"]) if isinstance(trigger, dict) else -1
    if data is None or not 0 <= k < len(data.get("concepts", [])):
        return no_update
    images = [int(i) for i in data["concepts"][k].get("images", [])]
    return {"ids": images, "run": view.run_id, "cell": int(cell),
            "why": f"the {plural(len(images), 'image')} of concept {k + 1}"}


def register(app, ctx: AppContext, managers) -> None:
    @app.callback(Output(ids.IMAGES_PANEL, "style"), Output(ids.CONCEPTS_PANEL, "style"),
                  Input(ids.STORE_VIEW, "data"))
    def _toggle(view_name):
        concepts = view_name == "concepts"
        return {"display": "none" if concepts else "block"}, {"display": "block" if concepts else "none"}

    JOB.register(app, ctx, managers.views, inputs=[Input(ids.STORE_VIEW, "data"),
                                                   Input(ids.STORE_CELL, "data"),
                                                   State(ids.STORE_RUN, "data")])

    @app.callback(Output(ids.STORE_HIGHLIGHT, "data"), Input(ids.concept_show(ALL), "n_clicks"),
                  Input(ids.HIGHLIGHT_CLEAR, "n_clicks"), State(ids.STORE_RUN, "data"),
                  State(ids.STORE_CELL, "data"), prevent_initial_call=True)
    def _highlight(_shows, _clear, run_id, cell):
        value = dash_ctx.triggered[0].get("value") if dash_ctx.triggered else None
        return highlight(ctx, dash_ctx.triggered_id, value, run_id, cell)
