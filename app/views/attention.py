"""Attention view: for each selected image, the image, its aggregate relevance map and its 16
per-dimension maps (Chefer et al. 2021 rollout, computed by ``pipeline.explain_cache``).

Dimensions are ordered by how much they push the logit towards the predicted class and labelled
with that contribution; each also shows its faithfulness figures from the deletion check
(``pipeline.faithfulness``). Maps not computed yet are computed in a background job with a
progress bar; cached ones show at once (the callback only writes image URLs).
"""
from __future__ import annotations

import uuid

from dash import Input, Output, State, html, no_update

from .. import artifacts, ids
from ..context import AppContext
from ..jobs import run_unavailable, view_progress, view_job

MAX_IMAGES = 8  # images shown at once (16 maps each); a larger selection shows its first ones


def layout() -> html.Div:
    return html.Div(className="fx-panel fx-attention", children=[
        html.Div(className="fx-panel-head", children=[
            html.Span("Attention", className="fx-panel-title"),
            html.Span("orange pushes towards fake, blue towards real; dimensions ordered by their "
                      "contribution to the prediction", className="fx-muted"),
        ]),
        html.Div(id=ids.ATTN_PROGRESS_WRAP, style={"display": "none"}, children=[
            html.Progress(id=ids.ATTN_PROGRESS, max="100", value="0"),
            html.Div(id=ids.ATTN_PROGRESS_LABEL, className="fx-progress-label"),
        ]),
        html.Div(id=ids.ATTN_MESSAGE, className="fx-message"),
        html.Div(id=ids.ATTN_CONTENT),
        _stores(),
    ])


def _stores():
    from dash import dcc

    return html.Div([dcc.Store(id=ids.ATTN_REQUEST)])


def file_url(run_id: str, index: int, name: str) -> str:
    return f"/files/attn/{run_id}/{int(index)}/{name}.jpg"


def _caption(view, index: int) -> list:
    words = ("real", "fake")
    right = bool(view.correct[index])
    return [html.B(view.file_name(index)), html.Br(),
            f"label {words[int(view.label[index])]} · predicted {words[int(view.pred[index])]} "
            f"{'✔' if right else '✘'} · p(fake) {view.prob[index]:.3f}"]


def image_block(view, index: int, meta: dict, faithfulness: list[dict] | None) -> html.Div:
    """One selected image: the image, its aggregate map, its 16 dimension maps.

    Each dimension is labelled with its contribution to the logit and its deletion-check figures
    (``Δ``: how much more hiding its most relevant patches moves the dimension than hiding random
    ones, in units of z; ``win``: share of test images where it does).
    """
    frame = "right" if view.correct[index] else "wrong"
    if meta.get("error"):
        return html.Div(className="fx-attn-image", **{"data-index": str(index)}, children=[
            html.Div(_caption(view, index), className="fx-caption"),
            html.Div(f"No maps: {meta['error']}", className="fx-error")])
    logit = meta["logit"]
    contributions = meta["contributions"]
    dims = []
    for k in artifacts.dimension_order(contributions, logit):
        c = contributions[k]
        label = [html.Span(f"d{k} ", style={"fontWeight": 600}),
                 html.Span(f"{c:+.2f}", className="fx-contrib-pos" if c >= 0 else "fx-contrib-neg")]
        title = f"dimension {k}: contribution {c:+.3f} to the logit"
        if faithfulness is not None and k < len(faithfulness):
            f = faithfulness[k]
            label += [html.Br(), html.Span(f"Δ {f['gain']:+.2f} · win {f['win_rate']:.0%}",
                                           className="fx-muted")]
            title += (f"; deletion check: relevant-minus-random drop {f['gain']:+.3f}, "
                      f"relevant wins on {f['win_rate']:.0%} of test images")
        dims.append(html.Div(className="fx-attn-dim", **{"data-dim": str(k)}, children=[
            html.Img(src=file_url(view.run_id, index, f"d{k:02d}"), alt=f"dimension {k}",
                     title=title),
            html.Div(label, className="fx-caption"),
        ]))
    return html.Div(className="fx-attn-image", **{"data-index": str(index)}, children=[
        html.Div(className=f"fx-attn-big {frame}", children=[
            html.Img(src=file_url(view.run_id, index, "image"), alt=view.file_name(index)),
            html.Div(_caption(view, index), className="fx-caption"),
        ]),
        html.Div(className=f"fx-attn-big {frame}", children=[
            html.Img(src=file_url(view.run_id, index, "aggregate"), alt="aggregate map"),
            html.Div(className="fx-caption",
                     children=f"aggregate map · logit {logit:+.2f} (> 0 = fake)"),
        ]),
        html.Div(dims, className="fx-attn-dims"),
    ])


def _chosen(view, sel) -> list[int]:
    n = view.n_images if view else 0
    return [int(i) for i in (sel or {}).get("ids") or [] if 0 <= int(i) < n]


def content(ctx: AppContext, view, chosen: list[int]):
    """(children, message) from cached maps, or None when some are not computed yet."""
    shown = chosen[:MAX_IMAGES]
    cache = ctx.app_cache(view)
    metas = {i: artifacts.read_attention(cache, i) for i in shown}
    faith = artifacts.read_faithfulness(cache)
    if faith is None or any(m is None for m in metas.values()):
        return None
    note = (f"Showing the first {len(shown)} of {len(chosen)} selected images."
            if len(chosen) > len(shown) else "")
    return [image_block(view, i, metas[i], faith) for i in shown], note


def render(ctx: AppContext, run_id, sel, pending):
    """Callback body: (content, request, message). Cached maps show at once."""
    clear = None if pending else no_update
    view = ctx.run(run_id)
    chosen = _chosen(view, sel)
    if view is None or not chosen:
        return [], clear, "Select images in the image view (box or lasso) to see their maps."
    ready = content(ctx, view, chosen)
    if ready is not None:
        return ready[0], clear, ready[1]
    request = {"run": view.run_id, "indices": chosen, "nonce": uuid.uuid4().hex}
    return [], request, f"Computing relevance maps of {min(len(chosen), MAX_IMAGES)} image(s)…"


def prepare(ctx: AppContext, request: dict | None, set_progress, explain=None):
    """Background job body: compute and draw the requested maps; returns (content, message)."""
    if not request:
        return no_update, no_update
    view = ctx.run(request["run"])
    if view is None:
        return [], run_unavailable(request)

    progress = view_progress(set_progress)

    chosen = [int(i) for i in request["indices"]]
    try:
        from ..jobs import explain_functions

        get_maps, _, get_faithfulness = explain or explain_functions()
        cache = ctx.app_cache(view)
        artifacts.prepare_attention(view, cache, chosen[:MAX_IMAGES], get_maps, progress)
        artifacts.prepare_faithfulness(view, cache, get_faithfulness, progress)
        ready = content(ctx, view, chosen)
        if ready is None:
            raise RuntimeError(f"the maps were computed but their files are missing under {cache}")
    except Exception as e:  # reported in the panel
        return [], html.Span(f"Could not compute the maps: {type(e).__name__}: {e}",
                             className="fx-error")
    return ready


def register(app, ctx: AppContext, managers) -> None:
    @app.callback(Output(ids.ATTN_CONTENT, "children"), Output(ids.ATTN_REQUEST, "data"),
                  Output(ids.ATTN_MESSAGE, "children"),
                  Input(ids.STORE_SEL, "data"), State(ids.STORE_RUN, "data"),
                  State(ids.ATTN_REQUEST, "data"))
    def _render(sel, run_id, pending):
        return render(ctx, run_id, sel, pending)

    @app.callback(Output(ids.ATTN_CONTENT, "children", allow_duplicate=True),
                  Output(ids.ATTN_MESSAGE, "children", allow_duplicate=True),
                  Input(ids.ATTN_REQUEST, "data"),
                  **view_job(managers.views, ids.ATTN_PROGRESS, ids.ATTN_PROGRESS_LABEL,
                             ids.ATTN_PROGRESS_WRAP))
    def _prepare(set_progress, request):
        return prepare(ctx, request, set_progress)
