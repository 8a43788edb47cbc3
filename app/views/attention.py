"""Attention view: the selected images' relevance maps as a matrix (Chefer et al. 2021 rollout,
computed by ``pipeline.explain.cache``).

Rows are the selected images; columns are the 16 dimensions in ONE order for the whole selection
(by mean |contribution to the logit| over it), so a column reads down: what one dimension looks at
in each image. The order and the contributions come from the run itself (its ``z16`` and its
head's output layer, ``pipeline.explain.contributions``), so they are known before the first map
is computed and never move while the rows arrive. A summary row on top shows the selection's
mean contribution per dimension (orange pushes towards fake, blue towards real), and each column
states once, in words, whether its maps pass the deletion check (``pipeline.explain.faithfulness``): a failing dimension is marked, and its maps
should not be read as "what the model looks at". Clicking a map opens it in the image viewer.
Maps not computed yet are computed in a background job with a progress bar; cached ones show at
once (the callback only writes image URLs).

Each image has one p(fake): the run's (as in the grid and the viewer). The maps' forward pass may
run in another precision than the run's embedding (fp32 for gradients, bf16 embeddings): where its
logit differs from the run's by more than rounding, the row says so, labelled with its precision
(:func:`logit_lines`).
"""
from __future__ import annotations

import numpy as np
from dash import ClientsideFunction, Input, Output, State, dcc, html, no_update

from pipeline.explain.contributions import column_order
from pipeline.explain.profiles import count_sentence, read_profiles, summarise
from pipeline.explain.overlays import FAKE_RGB, REAL_RGB, colour_scale

from app.files import artifacts, urls

from app.state import ids
from app.state.context import AppContext
from app.jobs.panel import Job, JobPanel, JobView, Ready
from app.views.viewer import open_button

MAX_IMAGES = 8  # images shown at once (16 maps each); a larger selection shows its first ones


def layout() -> html.Div:
    return html.Div(id=ids.ATTN_PANEL, className="fx-panel fx-attention", children=[
        html.Div(className="fx-panel-head", children=[
            html.Span("Attention", className="fx-panel-title"),
            html.Span("rows: selected images · columns: dimensions, one order for all rows (most "
                      "used first) · click a map to enlarge it", className="fx-muted"),
        ]),
        JobPanel(ids.CHECK_JOB, [dcc.Store(id=ids.ATTN_CHECKED)], className="fx-check-panel"),
        JobPanel(ids.ATTN_PROFILE_JOB, [dcc.Store(id=ids.ATTN_PROFILED)], className="fx-check-panel"),
        JobPanel(ids.ATTN_JOB, [html.Div(id=ids.ATTN_CONTENT), dcc.Store(id=ids.ATTN_READY)]),
        dcc.Store(id=ids.ATTN_SCROLL),
    ])


def colour_legend() -> html.Div:
    """What the colours of the maps mean: a colour bar for the dimension maps and the aggregate."""
    def bar(stops):
        return html.Span(className="fx-colourbar",
                         style={"background": f"linear-gradient(90deg, {', '.join(stops)})"})

    real, fake = (f"rgb{tuple(REAL_RGB)}", f"rgb{tuple(FAKE_RGB)}")
    return html.Div(className="fx-legend fx-attn-legend", children=[
        html.Span(["dimension maps: ", html.Span("low", className="fx-muted"), bar(colour_scale()),
                   html.Span("high relevance for that dimension", className="fx-muted")],
                  className="fx-legend-item"),
        html.Span(["aggregate: ", html.Span("evidence for real", className="fx-muted"),
                   bar([real, "rgb(150,150,150)", fake]), html.Span("evidence for fake", className="fx-muted")],
                  className="fx-legend-item"),
        html.Span("subject / background / mixed under a dimension: where its relevance is denser than "
                  "an evenly spread map's, with its share of the relevance on that side and that side's "
                  "share of the images (mixed: the subject's); violet bar: its share on the subject",
                  className="fx-legend-item fx-muted"),
        html.Span("✓ / ✗ under a dimension: its maps pass / fail the deletion check: hiding its "
                  "20% most relevant patches changes the dimension more than hiding random "
                  "patches, on the share of test images shown (✗: do not trust that map)",
                  className="fx-legend-item fx-muted"),
    ])


def faithfulness_words(k: int, f: dict | None) -> tuple[str, str, bool | None]:
    """(short mark, sentence, passes?) for dimension ``k``'s deletion check."""
    if f is None:
        return "…", f"d{k}: the deletion check of this run is still running", None
    ok = bool(f["passes"])
    sentence = (f"d{k} {'passes' if ok else 'fails'} the deletion check: hiding its most relevant "
                f"patches changes it more than hiding random ones on {f['win_rate']:.0%} of the test "
                f"images (by {f['gain']:+.2f} on average, in units of the dimension)")
    return f"{'✓' if ok else '✗'} {f['win_rate']:.0%}", sentence, ok


def share_words(summary) -> tuple[str, str]:
    """(verdict, "40% on 27%") of a dimension over the selection: the share of its relevance on the
    side it looks at, and that side's share of the images (a mixed one: the subject's), so a
    background verdict with less than half of the relevance reads right: it is dense there."""
    s, a = float(summary.subject_share), float(summary.subject_area)
    if summary.verdict == "background":
        return "background", f"{1 - s:.0%} on {1 - a:.0%}"
    return summary.verdict, f"{s:.0%} on {a:.0%}"


def share_chip(summary, n_images: int) -> html.Div:
    """Where a dimension's relevance lies over the selection: its verdict and share, and a bar
    (violet: subject, khaki: background) under it."""
    word, share = share_words(summary)
    s = float(summary.subject_share)
    return html.Div(className=f"fx-share-chip {summary.verdict}", title=(
        f"d{summary.dim} over the {n_images} image(s) shown: {s:.0%} of its relevance on the subject, "
        f"{1 - s:.0%} on the background (the subject covers {summary.subject_area:.0%} of them)"), children=[
        html.Span(word, className="fx-share-word"), html.Span(share, className="fx-share-value"),
        html.Span(className="fx-share-mini", children=[
            html.Span(className="subject", style={"width": f"{100 * s:.0f}%"})]),
    ])


def header_row(order: list[int], contributions: list[list[float]], faithfulness: list[dict] | None,
               summaries: list | None = None) -> list:
    """The matrix's first row: one header per dimension with the selection's mean contribution as
    a bar (up = towards fake, down = towards real), its deletion-check mark and, once the images'
    profiles are known (``summaries``, :func:`pipeline.explain.profiles.summarise`), where its
    relevance lies: subject, background or mixed, with the share."""
    values = np.asarray(contributions, dtype=np.float64)
    mean = values.mean(axis=0)
    scale = float(np.abs(mean).max(initial=0.0)) or 1.0
    cells = [html.Div("image", className="fx-attn-corner"),
             html.Div("aggregate map", className="fx-attn-corner")]
    for k in order:
        c = float(mean[k])
        f = faithfulness[k] if faithfulness is not None and k < len(faithfulness) else None
        mark, sentence, ok = faithfulness_words(k, f)
        height = f"{45 * abs(c) / scale:.0f}%"
        bar = html.Div(className="fx-attn-bar", children=[
            html.Div(className=f"fx-attn-bar-fill {'fake' if c >= 0 else 'real'}",
                     style={"height": height, "bottom": "50%"} if c >= 0 else {"height": height, "top": "50%"}),
        ])
        about = (f"d{k}: mean contribution {c:+.3f} to the logit over the {len(values)} image(s) "
                 f"shown (mean |contribution| {np.abs(values[:, k]).mean():.3f} sets the order)")
        summary = summaries[k] if summaries is not None and k < len(summaries) else None
        cells.append(html.Div(className=f"fx-attn-head{' fails' if ok is False else ''}",
                              **{"data-dim": str(k), "data-verdict": summary.verdict if summary else ""},
                              title=f"{about}. {sentence}", children=[
            html.B(f"d{k}"), bar,
            html.Span(f"{c:+.2f}", className="fx-contrib-pos" if c >= 0 else "fx-contrib-neg"),
            html.Span(mark, className="fx-attn-mark"),
            share_chip(summary, summary.n_images) if summary is not None else
            html.Span("…", className="fx-share-chip pending", title="where its relevance lies: computing"),
        ]))
    return cells


def count_line(profiles: dict, shown: list[int]) -> tuple[list | None, html.Div]:
    """(per-dimension summaries, the line above the matrix) from the shown images' profiles: "of 16
    dimensions, 6 look mostly at the background of these 3 images: ..."; None while some are missing."""
    have = [profiles[i] for i in shown if i in profiles]
    if not have:
        return None, html.Div("Where each dimension looks (subject or background): computing…",
                              className="fx-count-line pending")
    summaries = summarise(have)
    what = "this image" if len(have) == 1 else f"these {len(have)} images"
    line = count_sentence(summaries, what)
    if len(have) < len(shown):
        line += f" ({len(shown) - len(have)} more image(s): computing…)"
    return summaries, html.Div(line, className="fx-count-line")


def _caption(view, index: int) -> list:
    outcome = view.outcome(index)  # right / wrong / unlabelled (an applied set's image)
    label, pred = view.label_word(index), view.pred_word(index)
    return [html.B(view.file_name(index), className="fx-attn-file"), html.Br(),
            html.Span(label, className=f"fx-badge {label}"), " predicted ", pred, " ",
            html.Span(outcome if outcome != "unlabelled" else "no label",
                      className=f"fx-badge {outcome}"),
            html.Br(), f"p(fake) {view.prob[index]:.3f}"]


def logit_lines(run_prob: float, run_logit: float, maps_logit: float | None,
                precision: dict) -> list[tuple[str, str]]:
    """(text, tooltip) lines under an image's aggregate map: the run's logit (the p(fake) shown
    beside it comes from it) and, only where the maps' forward pass gives another number (by more
    than the rounding shown), that one too, labelled with the precision that made it."""
    embed, maps = precision.get("precision", "fp32"), precision.get("maps_precision", "fp32")
    lines = [(f"logit {run_logit:+.2f} (> 0 = fake)",
              f"the run's logit ({embed} embedding): p(fake) {run_prob:.3f}, as in the grid and the viewer")]
    if maps_logit is None:
        return lines
    # the head's sigmoid (pipeline.model.head.sigmoid) would import torch into the web process
    with np.errstate(over="ignore"):
        maps_prob = float(1.0 / (1.0 + np.exp(-np.float64(maps_logit))))
    if f"{maps_logit:+.2f}" == f"{run_logit:+.2f}" and f"{maps_prob:.3f}" == f"{run_prob:.3f}":
        return lines
    why = (f"The run embedded its images in {embed}: p(fake) {run_prob:.3f} (logit {run_logit:+.2f}) "
           f"is that computation's, shown everywhere. The relevance maps need gradients, so their "
           f"forward pass ran in {maps}, which gives logit {maps_logit:+.2f} (p {maps_prob:.3f}); the "
           f"maps and the aggregate are that pass's." if embed != maps else
           f"The maps' forward pass ({maps}, as the run's embedding) gives logit {maps_logit:+.2f} "
           f"(p {maps_prob:.3f}), not the run's {run_logit:+.2f} (p {run_prob:.3f}): the image file "
           f"may have changed since the run. The maps and the aggregate are that pass's.")
    return lines + [(f"maps ({maps} forward): logit {maps_logit:+.2f}, p {maps_prob:.3f}", why)]


def _map_button(view, index: int, name: str, dim, alt: str, title: str):
    """A map that opens the image viewer on its image with this map as the overlay."""
    return open_button(index, "" if dim == "image" else dim,
                       html.Img(src=urls.attention(view.run_id, index, name), alt=alt),
                       className="fx-attn-map", title=title)


def image_row(view, index: int, meta: dict, order: list[int], failing: set[int],
              contributions=None) -> list:
    """One selected image: its picture, its aggregate map, and its maps in the columns' order;
    ``contributions`` (K,): the values written under its maps (default: the maps' own)."""
    frame = view.outcome(index)
    picture = (html.Img(src=urls.thumb(view.run_id, index), alt=view.file_name(index),
                        className="fx-attn-thumb") if meta.get("pending") else
               _map_button(view, index, "image", "image", view.file_name(index), "the image the model saw"))
    first = html.Div(className=f"fx-attn-big {frame}", **{"data-index": str(index)},
                     children=[picture, html.Div(_caption(view, index), className="fx-caption")])
    if meta.get("pending"):
        return [first, html.Div("computing its maps…", className="fx-muted fx-attn-error")]
    if meta.get("error"):
        return [first, html.Div(f"No maps: {meta['error']}", className="fx-error fx-attn-error")]
    if contributions is None:
        contributions = meta["contributions"]
    lines = logit_lines(float(view.prob[index]), float(view.logit[index]), meta.get("logit"), view.precision)
    row = [first, html.Div(className="fx-attn-big", children=[
        _map_button(view, index, "aggregate", "aggregate", "aggregate map", "aggregate map: click to enlarge"),
        *[html.Div(text, title=title, className="fx-caption" if j == 0 else "fx-caption fx-attn-maps-logit")
          for j, (text, title) in enumerate(lines)]])]
    for k in order:
        c = float(contributions[k]) if k < len(contributions) else 0.0
        row.append(html.Div(className=f"fx-attn-dim{' fails' if k in failing else ''}",
                            **{"data-dim": str(k), "data-index": str(index)}, children=[
            _map_button(view, index, f"d{k:02d}", k, f"dimension {k}",
                        f"dimension {k} of {view.file_name(index)}: contribution {c:+.3f} to the logit"),
            html.Span(f"{c:+.2f}", className="fx-contrib-pos" if c >= 0 else "fx-contrib-neg"),
        ]))
    return row


def matrix(view, chosen: list[int], metas: dict[int, dict], faithfulness: list[dict] | None,
           profiles: dict | None = None) -> html.Div:
    """The attention matrix of ``chosen`` (all rows in one column order), under the line that
    counts the dimensions looking mostly at the background / the subject of these images
    (``profiles``: :func:`pipeline.explain.profiles.read_profiles` of them).

    The order and the values come from the run's own contributions (``view.contributions``), all
    known before any map. Only a run folder without a readable head (test runs) falls back on the
    maps drawn so far."""
    run_values = view.contributions(chosen)
    if run_values is not None:
        contributions, n_dims = run_values, run_values.shape[1]
        row_values = dict(zip(chosen, run_values))
    else:
        good = [i for i in chosen if not metas[i].get("error")]  # (pending rows carry an "error" too)
        n_dims = max((len(metas[i]["contributions"]) for i in good), default=0)
        contributions = [metas[i]["contributions"] for i in good] or [[0.0] * n_dims]
        row_values = {}
    order = column_order(contributions) if n_dims else []
    failing = {k for k in order if faithfulness is not None and k < len(faithfulness)
               and not faithfulness[k]["passes"]}
    with_maps = [i for i in chosen if not metas[i].get("error")]
    summaries, line = count_line(profiles or {}, with_maps)
    cells = header_row(order, contributions, faithfulness, summaries)
    for i in chosen:
        cells.extend(image_row(view, i, metas[i], order, failing, row_values.get(i)))
    return html.Div([
        line,
        colour_legend(),
        html.Div(cells, className="fx-attn-matrix", **{"data-order": ",".join(map(str, order))},
                 style={"gridTemplateColumns": f"repeat(2, 128px) repeat({len(order)}, minmax(64px, 1fr))"}),
    ])


def _outside(view, cell, chosen: list[int]) -> list[int]:
    """The ``chosen`` images that are not in the open cell or image set ``cell``."""
    if cell is None:
        return list(chosen)
    inside = view.in_cell(cell, chosen)
    return [i for i, ok in zip(chosen, inside.tolist()) if not ok]


def _chosen(view, sel) -> list[int]:
    n = view.n_images if view else 0
    return [int(i) for i in (sel or {}).get("ids") or [] if 0 <= int(i) < n]


def content(ctx: AppContext, view, chosen: list[int], partial: bool = False):
    """(children, message) from cached maps, or None when some are not computed yet (with
    ``partial``, rows not computed yet are drawn as placeholders instead). The deletion check
    may still be running: its marks then say so."""
    shown = chosen[:MAX_IMAGES]
    cache = ctx.app_cache(view)
    metas = {i: artifacts.read_attention(cache, i) for i in shown}
    missing = [i for i, m in metas.items() if m is None]
    if missing and not partial:
        return None
    for i in missing:
        metas[i] = {"error": "computing…", "pending": True}
    note = (f"Showing the first {len(shown)} of {len(chosen)} selected images. "
            if len(chosen) > len(shown) else "")
    if missing:
        note += f"Computing the maps of {len(missing)} more image(s)…"
    profiles = read_profiles(view.path, with_maps(metas))  # where each dimension looks, once computed
    return [matrix(view, shown, metas, artifacts.read_faithfulness(view), profiles)], note


def with_maps(metas: dict[int, dict | None]) -> list[int]:
    """The images whose maps are drawn (not pending, not failed)."""
    return [i for i, m in metas.items() if m is not None and not m.get("error")]


def show(ctx: AppContext, sel, run_id, cell):
    """What the attention view shows for a selection: cached maps at once, else a job.

    A selection must lie in the open cell or image set (a link may carry any ids): otherwise it is
    refused with a message and nothing is computed.
    """
    view = ctx.run(run_id)
    chosen = _chosen(view, sel)
    if view is None or not chosen:
        return Ready(([], None), "Select images in the image view (box or lasso) to see their maps.")
    outside = _outside(view, cell, chosen)
    if outside:
        info = view.cell_info(cell) if cell is not None else None
        where = ("an open cell" if info is None else
                 f"the open image set ({info['title']})" if info.get("set") else f"cell {cell}")
        return Ready(([], None), html.Span(
            f"{len(outside)} of the {len(chosen)} selected images are not in {where} "
            f"(e.g. image {outside[0]} is in cell {int(view.cell[outside[0]])}); select images "
            f"in the open grid.", className="fx-error"))
    ready = content(ctx, view, chosen)
    if ready is not None:
        return Ready((ready[0], {"run": view.run_id}), ready[1])
    # every row a placeholder, under the headers in their final order: known before any map
    pending = content(ctx, view, chosen, partial=True)[0]
    return Job({"run": view.run_id, "indices": chosen}, (pending, no_update),
               f"Computing relevance maps of {min(len(chosen), MAX_IMAGES)} image(s)…")


def compute(ctx: AppContext, view, request: dict, progress, explain=None, partial=None):
    """The job: compute and draw the requested maps, showing each pass's images as they are
    drawn (``partial``); returns ((content, ready), message). The deletion check is another
    job (:data:`CHECK`), started once maps exist, so no selection waits for it."""
    from app.jobs import work

    chosen = [int(i) for i in request["indices"]]
    get_maps = (explain or work.explain_functions())[0]
    cache = ctx.app_cache(view)
    artifacts.prepare_attention(view, cache, chosen[:MAX_IMAGES], get_maps, progress,
                                drawn=(lambda done: partial({"run": view.run_id, "indices": chosen}))
                                if partial else None)
    ready = content(ctx, view, chosen)
    if ready is None:
        raise RuntimeError(f"the maps were computed but their files are missing under {cache}")
    return (ready[0], {"run": view.run_id}), ready[1]


def redraw(ctx: AppContext, checked, sel, run_id, cell):
    """The matrix again once the run's deletion check (its marks) or the shown images' profiles
    (where each dimension looks) are ready, if the maps of the current selection are all drawn;
    ``checked``: the run they are ready for. Else nothing changes."""
    view = ctx.run(run_id)
    if view is None or checked != run_id:
        return no_update, no_update
    chosen = _chosen(view, sel)
    ready = content(ctx, view, chosen) if chosen and cell is not None and not _outside(view, cell, chosen) \
        else None
    return (ready[0], ready[1]) if ready is not None else (no_update, no_update)


def partial_rows(ctx: AppContext, value: dict):
    """The matrix of a job still running: rows drawn so far, placeholders for the others."""
    view = ctx.run(value.get("run"))
    if view is None:
        return (no_update, no_update), no_update
    children, note = content(ctx, view, [int(i) for i in value["indices"]], partial=True)
    return (children, no_update), note


JOB = JobView(ids.ATTN_JOB, outputs=[(ids.ATTN_CONTENT, "children"), (ids.ATTN_READY, "data")],
              show=show, compute=compute, blank=([], None), failure="Could not compute the maps",
              partial=partial_rows)


def show_check(ctx: AppContext, ready, run_id, checked):
    """The deletion check of the run's maps, once per run, after the first maps are shown."""
    if not ready or ready.get("run") != run_id or checked == run_id:
        return None
    view = ctx.run(run_id)
    if view is None:
        return None
    if artifacts.read_faithfulness(view) is not None:
        return Ready((run_id,))
    return Job({"run": run_id}, (no_update,),
               "Deletion check of this run's maps (once per run, on 8 test images): computing; "
               "the marks under the dimensions appear when it is done.")


def compute_check(ctx: AppContext, view, request: dict, progress, explain=None):
    from app.jobs import work

    get_faithfulness = (explain or work.explain_functions())[2]  # kept in the run folder
    get_faithfulness(view.path, progress=lambda done, total, *_: progress("faithfulness", done, total))
    return (view.run_id,), ""


CHECK = JobView(ids.CHECK_JOB, outputs=[(ids.ATTN_CHECKED, "data")], show=show_check,
                compute=compute_check, blank=(None,), failure="Could not run the deletion check")


def show_profiles(ctx: AppContext, ready, sel, run_id, cell):
    """Where each dimension looks on the shown images (their subject masks and profiles,
    :func:`pipeline.explain.atlas_jobs.get_profiles`), once their maps are shown; a job for the
    images not profiled yet, else nothing to do."""
    if not ready or ready.get("run") != run_id:
        return None
    view = ctx.run(run_id)
    chosen = _chosen(view, sel)[:MAX_IMAGES]
    if view is None or not chosen or cell is None or _outside(view, cell, chosen):
        return None
    cache = ctx.app_cache(view)
    drawn = with_maps({i: artifacts.read_attention(cache, i) for i in chosen})
    todo = [i for i in drawn if i not in read_profiles(view.path, drawn)]
    if not todo:
        return None
    return Job({"run": view.run_id, "indices": todo}, (no_update,),
               f"Finding the subject of {len(todo)} image(s): where each dimension looks (subject or background)…")


def compute_profiles(ctx: AppContext, view, request: dict, progress, atlas=None):
    from app.jobs import work

    get_profiles = (atlas or work.atlas_functions())[1]  # kept in the run folder
    indices = [int(i) for i in request["indices"]]
    get_profiles(view.path, indices, progress=lambda done, total, *_: progress("subject masks (images)", done, total))
    return ({"run": view.run_id, "indices": indices},), ""


PROFILES = JobView(ids.ATTN_PROFILE_JOB, outputs=[(ids.ATTN_PROFILED, "data")], show=show_profiles,
                   compute=compute_profiles, blank=(None,),
                   failure="Where each dimension looks (subject or background) could not be computed")


def register(app, ctx: AppContext, managers) -> None:
    JOB.register(app, ctx, managers.views,
                 inputs=[Input(ids.STORE_SEL, "data"), State(ids.STORE_RUN, "data"),
                         State(ids.STORE_CELL, "data")])
    CHECK.register(app, ctx, managers.views,
                   inputs=[Input(ids.ATTN_READY, "data"), State(ids.STORE_RUN, "data"),
                           State(ids.ATTN_CHECKED, "data")])

    PROFILES.register(app, ctx, managers.views,
                      inputs=[Input(ids.ATTN_READY, "data"), State(ids.STORE_SEL, "data"),
                              State(ids.STORE_RUN, "data"), State(ids.STORE_CELL, "data")])

    # Not an input of the matrix's own render: that would close a loop of callbacks (maps ready
    # -> check -> redraw -> maps ready), which Dash refuses to run.
    @app.callback(Output(ids.ATTN_CONTENT, "children", allow_duplicate=True),
                  Output(JobPanel.ids.message(ids.ATTN_JOB), "children", allow_duplicate=True),
                  Input(ids.ATTN_CHECKED, "data"), State(ids.STORE_SEL, "data"),
                  State(ids.STORE_RUN, "data"), State(ids.STORE_CELL, "data"), prevent_initial_call=True)
    def _redraw(checked, sel, run_id, cell):
        return redraw(ctx, checked, sel, run_id, cell)

    # The same once the shown images' profiles are kept: the column headers say where each looks.
    @app.callback(Output(ids.ATTN_CONTENT, "children", allow_duplicate=True),
                  Output(JobPanel.ids.message(ids.ATTN_JOB), "children", allow_duplicate=True),
                  Input(ids.ATTN_PROFILED, "data"), State(ids.STORE_SEL, "data"),
                  State(ids.STORE_RUN, "data"), State(ids.STORE_CELL, "data"), prevent_initial_call=True)
    def _redraw_profiled(profiled, sel, run_id, cell):
        return redraw(ctx, (profiled or {}).get("run"), sel, run_id, cell)

    # Selecting images in the grid brings the attention view into view (it is below the fold).
    app.clientside_callback(
        ClientsideFunction(namespace="faxplainer", function_name="scrollToAttention"),
        Output(ids.ATTN_SCROLL, "data"), Input(ids.STORE_SEL, "data"), State(ids.ATTN_PANEL, "id"),
        prevent_initial_call=True)
