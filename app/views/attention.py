"""Attention view: for each selected image, the image, its aggregate relevance map and its 16
per-dimension maps (Chefer et al. 2021 rollout, computed by ``pipeline.explain_cache``).

Dimensions are ordered by how much they push the logit towards the predicted class and labelled
with that contribution; each also shows its faithfulness figures from the deletion check
(``pipeline.faithfulness``). Maps not computed yet are computed in a background job with a
progress bar; cached ones show at once (the callback only writes image URLs).
"""
from __future__ import annotations

from dash import Input, State, html

from .. import artifacts, ids
from ..context import AppContext
from ..jobpanel import Job, JobPanel, JobView, Ready

MAX_IMAGES = 8  # images shown at once (16 maps each); a larger selection shows its first ones


def layout() -> html.Div:
    return html.Div(className="fx-panel fx-attention", children=[
        html.Div(className="fx-panel-head", children=[
            html.Span("Attention", className="fx-panel-title"),
            html.Span("orange pushes towards fake, blue towards real; dimensions ordered by their "
                      "contribution to the prediction", className="fx-muted"),
        ]),
        JobPanel(ids.ATTN_JOB, [html.Div(id=ids.ATTN_CONTENT)]),
    ])


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


def show(ctx: AppContext, sel, run_id):
    """What the attention view shows for a selection: cached maps at once, else a job."""
    view = ctx.run(run_id)
    chosen = _chosen(view, sel)
    if view is None or not chosen:
        return Ready(([],), "Select images in the image view (box or lasso) to see their maps.")
    ready = content(ctx, view, chosen)
    if ready is not None:
        return Ready((ready[0],), ready[1])
    return Job({"run": view.run_id, "indices": chosen}, ([],),
               f"Computing relevance maps of {min(len(chosen), MAX_IMAGES)} image(s)…")


def compute(ctx: AppContext, view, request: dict, progress, explain=None):
    """The job: compute and draw the requested maps; returns ((content,), message)."""
    from .. import work

    chosen = [int(i) for i in request["indices"]]
    get_maps, _, get_faithfulness = explain or work.explain_functions()
    cache = ctx.app_cache(view)
    artifacts.prepare_attention(view, cache, chosen[:MAX_IMAGES], get_maps, progress)
    artifacts.prepare_faithfulness(view, cache, get_faithfulness, progress)
    ready = content(ctx, view, chosen)
    if ready is None:
        raise RuntimeError(f"the maps were computed but their files are missing under {cache}")
    return (ready[0],), ready[1]


JOB = JobView(ids.ATTN_JOB, outputs=[(ids.ATTN_CONTENT, "children")], show=show, compute=compute,
              blank=([],), failure="Could not compute the maps")


def register(app, ctx: AppContext, managers) -> None:
    JOB.register(app, ctx, managers.views,
                 inputs=[Input(ids.STORE_SEL, "data"), State(ids.STORE_RUN, "data")])
