"""Dimension atlas (issue 25): what each of the run's 16 dimensions looks at, one row each, read
without opening a single map.

A row says the dimension's verdict (mostly on the **subject**, the **background**, or **mixed**:
:mod:`pipeline.explain.profiles`), the share of its relevance on the subject against the
background as a bar (the tick: the subject's area, what a flat map would give), where its evidence
is by the blur test (:mod:`pipeline.explain.region_evidence`: the map follows the attention, the
test follows the value), its shares on the
image border and on textured regions, how concentrated its maps are, its mean contribution to the
logit (orange towards fake, blue towards real), the atlas's sentence, and the held-out images
where the dimension is highest and lowest, each drawn with that dimension's map and opening the
image viewer on it. The CLIP-only column (each dimension's top regions named by zero-shot
similarity to a small vocabulary) appears only when the atlas has names (a run with CLIP's text
tower); the stand-in has none.

The atlas is computed once per run over a fixed sample of held-out images
(:func:`pipeline.explain.atlas_jobs.get_atlas`, kept in the run folder): "Build the atlas" runs it
as a background job with a progress bar and Cancel, then draws the examples' maps; a kept atlas
shows at once (:func:`pipeline.explain.atlas.read_atlas`, torch-free).
"""
from __future__ import annotations

from dash import Input, Output, State, html, no_update

from pipeline.explain.atlas import atlas_summaries, read_atlas
from pipeline.explain.profiles import EVIDENCE_VERDICTS, NO_EVIDENCE, VERDICT_ODDS, count_sentence, \
    evidence_count_sentence

from app.files import artifacts, urls
from app.jobs.managers import stage_progress
from app.jobs.panel import start_cancel_job, start_cancel_progress, start_cancel_state
from app.state import ids
from app.state.context import AppContext
from app.state.runs import LABEL_WORDS
from app.views.viewer import open_button

VERDICT_TIPS = {  # the verdict is judged against a flat map (pipeline.explain.profiles.verdict_of)
    "subject": f"its relevance is denser on the subject (the foreground DINOv2's patch features separate) "
               f"than an evenly spread map's, by at least {VERDICT_ODDS:g}x in odds",
    "background": f"its relevance is denser on the background than an evenly spread map's, by at least "
                  f"{VERDICT_ODDS:g}x in odds",
    "mixed": "its relevance lies on the subject and the background about as an evenly spread map's would"}
EVIDENCE_TIPS = {  # pipeline.explain.profiles: the blur test's verdict, judged against the subject's area
    "subject": "blurring the subject moves it more, per pixel, than blurring the background: its evidence is "
               "in the subject's fine detail",
    "background": "blurring the background moves it more, per pixel, than blurring the subject: its evidence "
                  "is in the background's fine detail",
    "mixed": "both blurs move it about in proportion to their areas",
    "none": f"neither blur moves it by {100 * NO_EVIDENCE:.0f}% of its spread: it reads no fine detail"}


def layout() -> html.Details:
    start, cancel, progress = start_cancel_progress(ids.ATLAS_START, ids.ATLAS_CANCEL, ids.ATLAS_PROGRESS,
                                                    ids.ATLAS_PROGRESS_LABEL, ids.ATLAS_MESSAGE)
    start.children = "Build the atlas"
    return html.Details(id=ids.ATLAS_PANEL, open=True, className="fx-panel fx-atlas", children=[
        html.Summary(id=ids.ATLAS_SUMMARY, className="fx-checks-summary", children="Dimension atlas"),
        html.Div(className="fx-atlas-head", children=[
            html.Span("What each dimension looks at, over a fixed sample of held-out images: the share "
                      "of its relevance on the subject or the background, the border, textured regions, "
                      "how concentrated its maps are, its push towards fake or real, and the images where "
                      "it is highest and lowest (click one to open it with that dimension's map).",
                      className="fx-muted"),
            html.Div([start, cancel], className="fx-atlas-buttons"),
            progress,
        ]),
        html.Div(id=ids.ATLAS_CONTENT),
    ])


def percent(x: float | None) -> str:
    return "–" if x is None else f"{100 * float(x):.0f}%"


def share_bar(subject: float, area: float, of: str = "its relevance") -> html.Div:
    """Subject (violet) against background (khaki) share of a dimension's relevance (or of ``of``);
    the tick is the subject's area, the share a flat map would have."""
    s = min(max(float(subject), 0.0), 1.0)
    words = (f"{percent(s)} of {of} on the subject, {percent(1 - s)} on the background "
             f"(the subject covers {percent(area)} of the images: an even spread would put that much on it)")
    return html.Div(className="fx-sb", title=words, children=[
        html.Div(className="fx-sb-bar", children=[
            html.Span(className="subject", style={"width": f"{100 * s:.0f}%"}),
            html.Span(className="background", style={"width": f"{100 * (1 - s):.0f}%"}),
            html.Span(className="fx-sb-area", style={"left": f"{100 * min(max(float(area), 0.0), 1.0):.0f}%"}),
        ]),
        html.Div([html.Span(f"subject {percent(s)}", className="fx-sb-subject"), " · ",
                  html.Span(f"background {percent(1 - s)}", className="fx-sb-background")],
                 className="fx-sb-words"),
    ])


def evidence_cell(entry: dict) -> html.Div:
    """The blur test: where the dimension's evidence is (``pipeline.explain.region_evidence``)."""
    verdict = entry.get("evidence_verdict")
    if verdict is None:
        return html.Div("–", className="fx-atlas-evidence fx-muted", title="no blur test in this atlas")
    area = float(entry.get("subject_area", 0.0))
    moves = (f"blurring the subject ({percent(area)} of the image) moves it by {float(entry['evidence_subject']):.2f}, "
             f"the background ({percent(1 - area)}) by {float(entry['evidence_background']):.2f}")
    chip = html.Span(verdict, className=f"fx-verdict-chip {verdict}", title=EVIDENCE_TIPS[verdict] + f" ({moves})")
    if verdict == "none":
        return html.Div([chip, html.Span(moves, className="fx-muted")], className="fx-atlas-evidence")
    return html.Div([chip, share_bar(entry["evidence_share"], entry.get("subject_area", 0.0), "its moves under blur")],
                    className="fx-atlas-evidence")


def contribution_cell(entry: dict) -> html.Div:
    c = float(entry["mean_contribution"])
    towards = "fake" if c >= 0 else "real"
    return html.Div(className="fx-atlas-contrib", title=(
        f"mean contribution {c:+.3f} to the logit over the sample (> 0: towards fake); positive on "
        f"{percent(entry['towards_fake'])} of the images"), children=[
        html.Span(f"{c:+.2f}", className="fx-contrib-pos" if c >= 0 else "fx-contrib-neg"),
        html.Div(f"towards {towards}", className="fx-muted")])


def example(view, drawn: set[int], k: int, item: dict, end: str) -> html.Button:
    """One image where dimension ``k`` is highest or lowest: its map of ``k`` when drawn (``drawn``:
    the images whose maps are), else its thumbnail; opens the viewer on the image with that map."""
    i = int(item["index"])
    src = urls.attention(view.run_id, i, f"d{k:02d}") if i in drawn else urls.thumb(view.run_id, i)
    label = LABEL_WORDS.get(int(item.get("label", -1)), "unlabelled")
    title = (f"{end} d{k}: {view.file_name(i) if 0 <= i < view.n_images else i} ({label}), value "
             f"{float(item['z']):+.2f}, contribution {float(item['contribution']):+.2f}, "
             f"{percent(item.get('subject_share'))} of its relevance on the subject")
    return open_button(i, k, html.Img(src=src, alt=f"{end} d{k}: image {i}"),
                       className=f"fx-atlas-ex {label}", title=title)


def names_cell(entry: dict) -> html.Div:
    names = entry.get("names") or []
    return html.Div([html.Span("CLIP only:", className="fx-muted"), " ", ", ".join(n["word"] for n in names[:3]) or "–"],
                    className="fx-atlas-names",
                    title="; ".join(f"{n['word']} {float(n['score']):.2f}" for n in names))


def atlas_row(view, drawn: set[int], entry: dict, with_names: bool) -> html.Div:
    k, verdict = int(entry["dim"]), entry["verdict"]
    cells = [
        html.Div([html.B(entry.get("label") or f"d{k}"),
                  html.Span(verdict, className=f"fx-verdict-chip {verdict}", title=VERDICT_TIPS.get(verdict, ""))],
                 className="fx-atlas-dim"),
        share_bar(entry["subject_share"], entry.get("subject_area", 0.0)),
        evidence_cell(entry),
        html.Div(percent(entry["border_share"]), className="fx-atlas-num",
                 title="share of its relevance on the image's border band"),
        html.Div(percent(entry["textured_share"]), className="fx-atlas-num",
                 title="share of its relevance on textured regions (local variance above the image's median)"),
        html.Div(percent(entry["concentration"]), className="fx-atlas-num",
                 title="share held by its top 10% of patches (10%: spread evenly; 100%: a few patches)"),
        contribution_cell(entry),
        html.Div([example(view, drawn, k, it, "highest") for it in entry.get("top", [])], className="fx-atlas-exs"),
        html.Div([example(view, drawn, k, it, "lowest") for it in entry.get("bottom", [])], className="fx-atlas-exs"),
        html.Div(entry.get("sentence", ""), className="fx-atlas-sentence"),
    ]
    if with_names:
        cells.append(names_cell(entry))
    return html.Div(cells, className=f"fx-atlas-row {verdict}", **{"data-dim": str(k), "data-verdict": verdict})


HEADERS = [("dimension", "its verdict: where its relevance is denser than an evenly spread map's"),
           ("map: subject | background", "share of its relevance on the subject and on the background"),
           ("evidence (blur test)", "where its evidence is: how far it moves when the subject, or the "
                                    "background, is blurred (the map follows the attention; this follows the value)"),
           ("border", "share on the border band"), ("textured", "share on textured regions"),
           ("top 10%", "concentration: share held by its top 10% of patches"),
           ("mean contribution", "to the logit, over the sample"),
           ("highest on", "the images where it is highest (its map; frame: blue real, orange fake)"),
           ("lowest on", "the images where it is lowest (its map; frame: blue real, orange fake)"),
           ("in words", "")]


def atlas_table(view, cache, atlas: dict) -> html.Div:
    """The count line and one row per dimension, the most used (largest |mean contribution|) first."""
    dims = sorted(atlas.get("dimensions", []), key=lambda d: -abs(float(d["mean_contribution"])))
    with_names = bool(atlas.get("names_available")) and any(d.get("names") for d in dims)
    headers = HEADERS + ([("regions named (CLIP only)", "zero-shot similarity of its top regions to "
                           + ", ".join(atlas.get("vocabulary") or []))] if with_names else [])
    head = html.Div([html.Div(h, title=t, className="fx-atlas-th") for h, t in headers],
                    className="fx-atlas-row fx-atlas-header")
    n = int(atlas.get("n_images", 0))
    summaries = atlas_summaries(atlas)
    line = count_sentence(summaries, f"the {n} held-out images of the atlas")
    skipped = atlas.get("skipped") or []
    notes = [html.Div(line, className="fx-count-line")]
    if (blur := evidence_count_sentence(summaries, f"the same {n} images")) is not None:
        notes.append(html.Div(blur, className="fx-count-line fx-count-evidence"))
    if skipped:
        notes.append(html.Div(f"{len(skipped)} sampled image(s) left out: "
                              + "; ".join(f"image {s['index']}: {s['message']}" for s in skipped[:3]),
                              className="fx-muted"))
    drawn = drawn_examples(cache, atlas)
    return html.Div([*notes, html.Div([head, *[atlas_row(view, drawn, d, with_names) for d in dims]],
                                      className="fx-atlas-table" + (" with-names" if with_names else ""))])


def examples_of(atlas: dict) -> list[int]:
    """Every image the atlas shows as an example (highest or lowest of some dimension)."""
    seen = []
    for d in atlas.get("dimensions", []):
        for item in [*d.get("top", []), *d.get("bottom", [])]:
            if int(item["index"]) not in seen:
                seen.append(int(item["index"]))
    return seen


def summary(view, atlas: dict | None) -> str:
    if atlas is None:
        return f"Dimension atlas of run {view.run_id} · not built yet"
    verdicts = [d["verdict"] for d in atlas.get("dimensions", [])]
    counts = ", ".join(f"{verdicts.count(v)} {v}" for v in ("background", "subject", "mixed") if verdicts.count(v))
    text = f"Dimension atlas of run {view.run_id} · {atlas.get('n_images', 0)} held-out images · maps: {counts}"
    evidence = [d.get("evidence_verdict") for d in atlas.get("dimensions", [])]
    if evidence and None not in evidence:
        text += " · evidence: " + ", ".join(f"{evidence.count(v)} {v}" for v in EVIDENCE_VERDICTS if evidence.count(v))
    return text


def drawn_examples(cache, atlas: dict) -> set[int]:
    """The atlas's examples whose maps are drawn in the app's cache (the attention view's pictures)."""
    metas = {i: artifacts.read_attention(cache, i) for i in examples_of(atlas)}
    return {i for i, m in metas.items() if m is not None and not m.get("error")}


SHOWN, HIDDEN = {}, {"display": "none"}


def show(ctx: AppContext, run_id) -> tuple:
    """(summary, content, the Build button's label and style) of the open run: the kept atlas at
    once (the button only while some of its examples' maps are not drawn), else the button."""
    view = ctx.run(run_id)
    if view is None:
        return "Dimension atlas", [], "Build the atlas", HIDDEN
    try:
        atlas = read_atlas(view.path)
    except (OSError, ValueError, KeyError) as e:  # e.g. an applied set whose folder has no atlas sample
        return "Dimension atlas", html.Div(f"No atlas for {view.run_id}: {e}", className="fx-muted"), \
            "Build the atlas", HIDDEN
    if atlas is None:
        return summary(view, None), html.Div(
            "Not built yet: relevance maps, subject masks and blur tests of 64 held-out images (about a "
            "second each on a quiet CPU), kept with the run.", className="fx-muted"), "Build the atlas", SHOWN
    missing = len(examples_of(atlas)) - len(drawn_examples(ctx.app_cache(view), atlas))
    return (summary(view, atlas), atlas_table(view, ctx.app_cache(view), atlas),
            f"Draw the examples' maps ({missing})", SHOWN if missing else HIDDEN)


def build(ctx: AppContext, run_id, progress, get_atlas=None, get_maps=None) -> tuple:
    """The job: the run's atlas (kept), then its examples' maps drawn; (summary, content, message)."""
    from app.jobs import work

    view = ctx.run(run_id)
    if view is None:
        return no_update, no_update, html.Span(f"Run {run_id} cannot be opened.", className="fx-error"), no_update
    get_atlas = get_atlas or work.atlas_functions()[0]
    atlas = get_atlas(view.path, progress=lambda done, total, stage="atlas", *_: progress(stage, done, total))
    cache = ctx.app_cache(view)
    artifacts.prepare_attention(view, cache, examples_of(atlas), get_maps or work.explain_functions()[0], progress)
    return summary(view, atlas), atlas_table(view, cache, atlas), "", HIDDEN


def register(app, ctx: AppContext, managers) -> None:
    @app.callback(Output(ids.ATLAS_SUMMARY, "children"), Output(ids.ATLAS_CONTENT, "children"),
                  Output(ids.ATLAS_START, "children"), Output(ids.ATLAS_START, "style"),
                  Input(ids.STORE_RUN, "data"))
    def _show(run_id):
        return show(ctx, run_id)

    @app.callback(Output(ids.ATLAS_SUMMARY, "children", allow_duplicate=True),
                  Output(ids.ATLAS_CONTENT, "children", allow_duplicate=True),
                  Output(ids.ATLAS_MESSAGE, "children"), Output(ids.ATLAS_START, "style", allow_duplicate=True),
                  Input(ids.ATLAS_START, "n_clicks"), State(ids.STORE_RUN, "data"),
                  **start_cancel_job(managers.views, ids.ATLAS_START, ids.ATLAS_CANCEL, ids.ATLAS_PROGRESS,
                                     ids.ATLAS_PROGRESS_LABEL))
    def _build(set_progress, _n, run_id):
        try:
            return build(ctx, run_id, stage_progress(set_progress))
        except Exception as e:  # shown in the panel; the app stays usable
            return no_update, no_update, html.Span(f"Could not build the atlas: {type(e).__name__}: {e}",
                                                   className="fx-error"), no_update

    start_cancel_state(app, ids.ATLAS_START, ids.ATLAS_CANCEL, ids.ATLAS_MESSAGE, ids.ATLAS_PROGRESS_LABEL,
                       "Cancelled: the images profiled so far are kept; building again resumes there.")
