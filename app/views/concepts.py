"""Concept view (toggle of the image view): the cell's visual concepts.

Each concept (a cluster of relevant image segments, ACE-style, computed by
``pipeline.explain_cache.get_concepts``) shows its most central patches, its size and its profile
over the 16 dimensions. Computed in a background job on first request, then read from disk.
"""
from __future__ import annotations

import uuid

from dash import Input, Output, State, dcc, html, no_update

from .. import artifacts, ids
from ..context import AppContext
from ..jobs import run_unavailable, view_progress, view_job
from ..figures import profile_figure

CONCEPT_COLOURS = ("rgb(76,114,176)", "rgb(221,132,82)", "rgb(85,168,104)", "rgb(196,78,82)",
                   "rgb(129,114,179)", "rgb(147,120,96)")


def layout() -> html.Div:
    return html.Div(id=ids.CONCEPTS_PANEL, style={"display": "none"}, children=[
        html.Div(id=ids.CONCEPTS_PROGRESS_WRAP, style={"display": "none"}, children=[
            html.Progress(id=ids.CONCEPTS_PROGRESS, max="100", value="0"),
            html.Div(id=ids.CONCEPTS_PROGRESS_LABEL, className="fx-progress-label"),
        ]),
        html.Div(id=ids.CONCEPTS_MESSAGE, className="fx-message"),
        html.Div(id=ids.CONCEPTS_CONTENT),
        dcc.Store(id=ids.CONCEPTS_REQUEST),
    ])


def patch_url(run_id: str, cell: int, k: int, j: int) -> str:
    return f"/files/concept/{run_id}/{int(cell)}/{int(k)}/{int(j)}"


def concept_block(run_id: str, cell: int, k: int, concept: dict, total: int) -> html.Div:
    colour = CONCEPT_COLOURS[k % len(CONCEPT_COLOURS)]
    share = concept["size"] / total if total else 0
    return html.Div(className="fx-concept", **{"data-concept": str(k)}, children=[
        html.Div([html.B(f"Concept {k + 1}", style={"color": colour}),
                  html.Span(f" · {concept['size']} segments ({share:.0%})", className="fx-muted")]),
        html.Div(className="fx-patches", children=[
            html.Img(src=patch_url(run_id, cell, k, j), alt=f"concept {k + 1} patch {j + 1}")
            for j in range(len(concept.get("patches", [])))]),
        dcc.Graph(id=ids.concept_profile(k), figure=profile_figure(concept["profile"], colour),
                  config={"displayModeBar": False}, style={"height": "120px"}),
    ])


def content(view, cache, cell: int):
    """(children, message) of the cell's cached concepts, or None when not computed yet."""
    data = artifacts.read_concepts(cache, cell)
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


def render(ctx: AppContext, run_id, cell, view_name, pending):
    """Callback body: (content, request, message). Cached concepts show at once."""
    if view_name != "concepts":
        return no_update, no_update, no_update
    clear = None if pending else no_update
    view = ctx.run(run_id)
    if view is None or cell is None:
        return [], clear, "Click a cell to see its concepts."
    ready = content(view, ctx.app_cache(view), cell)
    if ready is not None:
        return ready[0], clear, ready[1]
    request = {"run": view.run_id, "cell": int(cell), "nonce": uuid.uuid4().hex}
    return [], request, f"Finding the concepts of cell {cell}…"


def prepare(ctx: AppContext, request: dict | None, set_progress, explain=None):
    """Background job body: compute the requested cell's concepts; returns (content, message)."""
    if not request:
        return no_update, no_update
    view = ctx.run(request["run"])
    if view is None:
        return [], run_unavailable(request)

    progress = view_progress(set_progress)

    cell = int(request["cell"])
    try:
        from ..jobs import explain_functions

        _, get_concepts, _ = explain or explain_functions()
        cache = ctx.app_cache(view)
        artifacts.prepare_concepts(view, cache, cell, get_concepts, progress)
        ready = content(view, cache, cell)
        if ready is None:
            raise RuntimeError(f"the concepts were computed but their file is missing under {cache}")
    except Exception as e:  # reported in the panel
        return [], html.Span(f"Could not compute the concepts: {type(e).__name__}: {e}",
                             className="fx-error")
    return ready


def register(app, ctx: AppContext, managers) -> None:
    @app.callback(Output(ids.IMAGES_PANEL, "style"), Output(ids.CONCEPTS_PANEL, "style"),
                  Input(ids.STORE_VIEW, "data"))
    def _toggle(view_name):
        concepts = view_name == "concepts"
        return {"display": "none" if concepts else "block"}, {"display": "block" if concepts else "none"}

    @app.callback(Output(ids.CONCEPTS_CONTENT, "children"), Output(ids.CONCEPTS_REQUEST, "data"),
                  Output(ids.CONCEPTS_MESSAGE, "children"),
                  Input(ids.STORE_VIEW, "data"), Input(ids.STORE_CELL, "data"),
                  State(ids.STORE_RUN, "data"), State(ids.CONCEPTS_REQUEST, "data"))
    def _render(view_name, cell, run_id, pending):
        return render(ctx, run_id, cell, view_name, pending)

    @app.callback(Output(ids.CONCEPTS_CONTENT, "children", allow_duplicate=True),
                  Output(ids.CONCEPTS_MESSAGE, "children", allow_duplicate=True),
                  Input(ids.CONCEPTS_REQUEST, "data"),
                  **view_job(managers.views, ids.CONCEPTS_PROGRESS, ids.CONCEPTS_PROGRESS_LABEL,
                             ids.CONCEPTS_PROGRESS_WRAP))
    def _prepare(set_progress, request):
        return prepare(ctx, request, set_progress)
