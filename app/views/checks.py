"""Data checks panel: what the analyst must know before reading any explanation.

It sits above the views and opens by itself when something is flagged: the file facts that alone
predict the label (shortcut risks, each with the reason in words and a small per-class histogram of
the fact), exact duplicates and leakage across the split, held-out near-duplicates of training
images (with the held-out AUC with and without them, and the pairs to open in the viewer), and the
bias probe (how class-neutral re-encodings move p(fake) per class; a background job of its own,
started from here, cached with the run). All of it comes from ``meta.json``'s ``checks`` and
``<run>/checks/`` (``pipeline.checks.validity``).

When a file fact that a re-encoding can equalise is flagged (size, format, JPEG quality...), the
panel offers to re-run the same data with both classes re-encoded alike (the spec chosen by
``pipeline.checks.confound``; a background job with progress and cancel, like "New run…"); the
finished re-run is offered next to the run in the compare view (``app.views.compare``).
"""
from __future__ import annotations

from dash import Input, Output, State, dcc, html, no_update
import plotly.graph_objects as go

from pipeline.checks.validity import flagged, read_probe

from app.state import ids
from app.state.context import AppContext
from app.jobs.panel import Job, JobPanel, JobView, Ready, start_cancel_job, start_cancel_progress, start_cancel_state
from app.views.viewer import open_button

MAX_PAIRS = 12  # near-duplicate pairs listed with open buttons


def layout() -> html.Details:
    return html.Details(id=ids.CHECKS_PANEL, className="fx-panel fx-checks", children=[
        html.Summary(id=ids.CHECKS_SUMMARY, className="fx-checks-summary"),
        html.Div(id=ids.CHECKS_CONTENT),
        confound_layout(),
        JobPanel(ids.PROBE_JOB, [html.Div(id=ids.PROBE_CONTENT)], className="fx-probe"),
    ])


def confound_layout() -> html.Div:
    """The "re-run with both classes re-encoded" box (hidden unless a re-encodable fact is flagged)."""
    start, cancel, progress = start_cancel_progress(ids.CONFOUND_START, ids.CONFOUND_CANCEL, ids.CONFOUND_PROGRESS,
                                                    ids.CONFOUND_PROGRESS_LABEL, ids.CONFOUND_MESSAGE)
    start.className = "primary fx-confound-start"
    return html.Div(id=ids.CONFOUND_BOX, className="fx-confound", style={"display": "none"}, children=[
        html.Div(id=ids.CONFOUND_REASON, className="fx-confound-reason"),
        start, cancel,
        html.Button("Compare the two runs", id=ids.COMPARE_SHOW, n_clicks=0, style={"display": "none"}),
        progress,
        dcc.Store(id=ids.STORE_COMPARE),
    ])


def confound_box(ctx: AppContext, run_id, may_start: bool = True) -> tuple:
    """(box style, reason, button text) of the re-run box for the run: shown when its checks flag
    a fact that a re-encoding equalises and the analyst may start runs."""
    from pipeline.checks.confound import run_fix

    hidden = ({"display": "none"}, "", "Re-run")
    view = ctx.run(run_id)
    if view is None or view.is_applied or not view.meta.get("checks"):
        return hidden
    try:
        fix = run_fix(view.path)
    except Exception as e:  # a damaged facts.csv: said, never a broken panel
        return {}, html.Span(f"No re-encoding could be chosen: {e}", className="fx-error"), "Re-run"
    if fix is None:
        return hidden
    if not may_start:
        return {}, html.Span(f"A re-encoding would equalise this: {fix.reason}. Ask a maintainer to "
                             f"re-run it with data.reencode={fix.spec}.", className="fx-muted"), "Re-run"
    return ({}, [html.B("Equalise the flagged file facts: "), f"{fix.reason}. Re-running the same data "
                 f"this way shows what the detector has without them."],
            f"Re-run with both classes re-encoded ({fix.spec})")


def rerun_reencoded(ctx: AppContext, run_id: str, progress, started_by: str | None = None, run_new=None) -> str:
    """Job body: the run ``run_id`` again on the same data with both classes re-encoded by the
    spec its flagged facts call for; returns the new run's id."""
    from pipeline.checks.confound import run_fix
    from pipeline.store.run_store import RunStore

    from app.jobs import work

    view = ctx.run(run_id)
    if view is None:
        raise ValueError(f"run {run_id!r} cannot be opened")
    fix = run_fix(view.path)
    if fix is None:
        raise ValueError(f"run {run_id}: no flagged file fact that a re-encoding equalises")
    cfg = work.reencoded_run_config(ctx.cfg, RunStore(view.path).config(), fix.spec)
    return (run_new or work.run_new)(cfg, progress, started_by=started_by)


def rerun_message(run_a: str, run_b: str, spec: str) -> html.Span:
    from app.state.urlstate import ViewState, format_search

    return html.Span([f"Run {run_b} (both classes re-encoded, {spec}) is ready: ",
                      dcc.Link("open it", href=format_search(ViewState(run=run_b))),
                      f", or compare it with {run_a} (the button beside)."])


def fact_histogram(hist: dict) -> go.Figure:
    """Per-class counts of one fact's values (grouped bars: blue real, orange fake)."""
    fig = go.Figure([go.Bar(name="real", x=hist["bins"], y=hist["real"], marker_color="rgb(31,119,180)"),
                     go.Bar(name="fake", x=hist["bins"], y=hist["fake"], marker_color="rgb(255,127,14)")])
    fig.update_layout(barmode="group", height=150, margin=dict(l=40, r=6, t=20, b=36), plot_bgcolor="white",
                      # above the plot area, so that it never covers a bar
                      legend=dict(orientation="h", y=1.02, yanchor="bottom", x=1, xanchor="right",
                                  font=dict(size=10)),
                      xaxis=dict(tickfont=dict(size=9), type="category"),
                      yaxis=dict(title=dict(text="images", font=dict(size=10)), tickfont=dict(size=9)))
    return fig


def _auc(x) -> str:
    return "–" if x is None or x != x else f"{x:.2f}"


def shortcut_block(sc: dict, head_auc) -> list:
    if not sc:
        return []
    if sc.get("status") == "too few":
        return [html.Div(f"Shortcut check not scored: {sc.get('reason')}", className="fx-muted")]
    out = [html.Div(f"File facts predicting the label (AUC cross-validated on training / on held-out; "
                    f"the detector's held-out AUC is {_auc(head_auc)}):", className="fx-muted")]
    flags = {f["fact"] for f in sc.get("flags", [])}
    for f in sorted((f for f in sc.get("facts", []) if f.get("cv_auc") is not None), key=lambda f: -f["cv_auc"])[:6]:
        row = [html.Span(f"{f['words']}", className="fx-check-fact"),
               html.Span(f"{_auc(f['cv_auc'])} / {_auc(f['heldout_auc'])}", className="fx-check-auc")]
        if f["fact"] in flags:
            row.append(html.Span(f["reason"], className="fx-warning"))
        out.append(html.Div(row, className=f"fx-check-row{' flagged' if f['fact'] in flags else ''}",
                            **{"data-fact": f["fact"]}))
        if f["fact"] in flags and f.get("histogram"):
            out.append(dcc.Graph(figure=fact_histogram(f["histogram"]), config={"displayModeBar": False},
                                 className="fx-check-hist"))
    allf = sc.get("all_facts") or {}
    out.append(html.Div(f"all facts together: {_auc(allf.get('cv_auc'))} / {_auc(allf.get('heldout_auc'))}"
                        + (f" — {allf['reason']}" if allf.get("flagged") and allf.get("reason") else ""),
                        className="fx-warning" if allf.get("flagged") else "fx-muted"))
    for g, sub in (sc.get("per_generator") or {}).items():
        for f in sub.get("flags", []):
            out.append(html.Div(f"generator {g}: {f['reason']}", className="fx-warning"))
    return out


def duplicates_block(view, dup: dict, near: dict) -> list:
    out = []
    if dup:
        out.append(html.Div(f"Exact duplicates: {dup.get('n_groups', 0)} group(s) of identical files; "
                            f"{dup.get('n_conflicts', 0)} under both labels ({dup.get('n_excluded', 0)} copies "
                            f"left out of training and metrics); {dup.get('n_cross_split', 0)} on both sides "
                            f"of the split (held-out copies moved to training)", className="fx-muted"))
        for c in dup.get("conflicts", [])[:5]:
            out.append(html.Div("same bytes, both labels: " + " · ".join(f["path"] for f in c["files"]),
                                className="fx-check-files"))
    if near:
        m = near.get("metrics") or {}
        n = near.get("n_heldout_with_near_duplicate", 0)
        other = f", {near.get('n_other_label')} of them of the other label" if n else ""
        out.append(html.Div(
            f"Near-duplicates (cosine ≥ {near.get('threshold')} in the vision-only features): {n} held-out "
            f"image(s) close to a training image{other}; "
            f"held-out AUC {_auc((m.get('all') or {}).get('auc'))} with them, "
            f"{_auc((m.get('without_near_duplicates') or {}).get('auc'))} without",
            className="fx-warning" if n else "fx-muted"))
        pairs = near.get("pairs", [])[:MAX_PAIRS]
        if pairs and view is not None:
            out.append(html.Div(className="fx-check-pairs", children=[
                html.Span([open_button(p["heldout_row"], "", f"held-out {view.file_name(p['heldout_row'])}"),
                           " ≈ ", open_button(p["train_row"], "", f"train {view.file_name(p['train_row'])}"),
                           html.Span(f" {p['similarity']:.3f}", className="fx-muted")], className="fx-check-pair")
                for p in pairs]))
    return out


def probe_block(probe: dict | None) -> list:
    """The bias probe's table, or a button to run it."""
    if not probe:
        return [html.Div(["Bias probe: not run yet. It re-encodes held-out images class-neutrally (JPEG, "
                          "PNG, resize, crop; and, when a file fact is flagged, a transformation that equalises it) "
                          "and shows how p(fake) moves for each class: ",
                          html.Button("Run the bias probe", id=ids.PROBE_START, n_clicks=0)],
                         className="fx-muted")]
    head = html.Tr([html.Th("transformation"), html.Th("real: mean shift"), html.Th("flipped"),
                    html.Th("fake: mean shift"), html.Th("flipped"), html.Th("verdict")])

    def cells(c):
        return [html.Td(f"{c['mean_shift']:+.3f}" if c.get("n") else "–"),
                html.Td(f"{c['flip_fraction']:.0%}" if c.get("n") else "–")]

    rows = [html.Tr([html.Td(t["words"]), *cells(t.get("real") or {}), *cells(t.get("fake") or {}),
                     html.Td(t["verdict"], className=f"fx-verdict {t['verdict']}", title=t.get("reason", ""))])
            for t in probe.get("transforms", [])]
    return [html.Div(f"Bias probe on {probe['n']} held-out images ({probe['n_real']} real, {probe['n_fake']} "
                     f"fake): mean shift of p(fake) and share of decisions flipped per class. bias = one "
                     f"class moves towards the other (a learned shortcut); slight = the same by less than "
                     f"{probe.get('min_effect', 0.1):.2f} (a clean detector drifts that much when fine detail "
                     f"is lost); robustness = both degrade alike.",
                     className="fx-muted"),
            html.Table([html.Thead(head), html.Tbody(rows)], className="fx-metrics-table fx-probe-table"),
            html.Button("Run the bias probe", id=ids.PROBE_START, n_clicks=0, style={"display": "none"})]


def panel(ctx: AppContext, run_id):
    """(summary, content, probe content, open?) for the run's checks."""
    view = ctx.run(run_id)
    if view is None:
        return "Data checks", [], probe_block(None), False
    if view.is_applied:  # the checks are of a run's training data; the bias probe re-scores its held-out
        return (f"Data checks: made for runs; see run {view.parent_id} (its training data) for them",
                [], [html.Button("Run the bias probe", id=ids.PROBE_START, n_clicks=0,
                                 style={"display": "none"})], False)
    checks = view.meta.get("checks")
    if checks is None:
        return ("Data checks: none for this run (made before they were part of every run)", [],
                probe_block(read_probe(view.path)), False)
    probe = read_probe(view.path)
    warnings = flagged({**checks, "bias_probe": probe or {}})
    summary = (html.Span([html.B(f"⚠ Data checks: {len(warnings)} warning(s) "), "— the detector's answer "
                          "may be about the files, not the images"], className="fx-warning-strong")
               if warnings else "Data checks: nothing flagged (file facts, duplicates, near-duplicates)")
    head_auc = ((view.meta.get("metrics") or {}).get("head") or {}).get("auc")
    content = ([html.Ul([html.Li(w) for w in warnings], className="fx-check-warnings")] if warnings else []) + \
        shortcut_block(checks.get("shortcuts") or {}, head_auc) + \
        duplicates_block(view, checks.get("duplicates") or {}, checks.get("near_duplicates") or {})
    return summary, content, probe_block(probe), bool(warnings)


def show_probe(ctx: AppContext, clicks, run_id):
    """The bias probe on request (the button), as a background job; a cached one at once."""
    view = ctx.run(run_id)
    if view is None or not clicks:
        return None
    probe = read_probe(view.path)
    if probe is not None:
        return Ready((probe_block(probe),))
    n = view.meta.get("config", {}).get("checks", {}).get("bias_images", 1000)
    from pipeline.checks.validity import probe_transforms

    ways = len(probe_transforms(view.path))
    return Job({"run": view.run_id}, (no_update,), f"Bias probe: re-encoding up to {n} held-out images "
               f"{ways} ways and scoring them with the run's detector…")


def compute_probe(ctx: AppContext, view, request: dict, progress, probe=None):
    from pipeline.checks.validity import run_bias_probe  # job side: loads the run's models

    result = (probe or run_bias_probe)(view.path, progress=lambda d, t: progress("images probed", d, t))
    return (probe_block(result),), ""


PROBE = JobView(ids.PROBE_JOB, outputs=[(ids.PROBE_CONTENT, "children")], show=show_probe,
                compute=compute_probe, blank=([],), failure="Could not run the bias probe")


def register(app, ctx: AppContext, managers) -> None:
    @app.callback(Output(ids.CHECKS_SUMMARY, "children"), Output(ids.CHECKS_CONTENT, "children"),
                  Output(ids.PROBE_CONTENT, "children"), Output(ids.CHECKS_PANEL, "open"),
                  Input(ids.STORE_RUN, "data"))
    def _panel(run_id):
        return panel(ctx, run_id)

    PROBE.register(app, ctx, managers.views, inputs=[Input(ids.PROBE_START, "n_clicks"),
                                                     State(ids.STORE_RUN, "data")])

    from app.jobs.managers import job_user, stage_progress
    from app.state.roles import current_identity, may_start_runs
    from app.views import compare

    @app.callback(Output(ids.CONFOUND_BOX, "style"), Output(ids.CONFOUND_REASON, "children"),
                  Output(ids.CONFOUND_START, "children"), Input(ids.STORE_RUN, "data"))
    def _confound(run_id):
        return confound_box(ctx, run_id, may_start_runs(current_identity(ctx.cfg)[1]))

    @app.callback(Output(ids.CONFOUND_MESSAGE, "children"), Output(ids.STORE_COMPARE, "data"),
                  Output(ids.COMPARE_SHOW, "style"),
                  Input(ids.CONFOUND_START, "n_clicks"), State(ids.STORE_RUN, "data"),
                  **start_cancel_job(managers.runs, ids.CONFOUND_START, ids.CONFOUND_CANCEL, ids.CONFOUND_PROGRESS,
                                     ids.CONFOUND_PROGRESS_LABEL))
    def _rerun(set_progress, _n, run_id):
        from pipeline.checks.confound import run_fix

        try:
            run_b = rerun_reencoded(ctx, run_id, stage_progress(set_progress), started_by=job_user(ctx.cfg))
            spec = run_fix(ctx.run_dir(run_id)).spec
        except Exception as e:  # shown to the user; the app stays usable
            return html.Span(f"The re-run failed: {type(e).__name__}: {e}", className="fx-error"), no_update, \
                no_update
        return rerun_message(run_id, run_b, spec), {"a": run_id, "b": run_b}, {}

    start_cancel_state(app, ids.CONFOUND_START, ids.CONFOUND_CANCEL, ids.CONFOUND_MESSAGE, ids.CONFOUND_PROGRESS_LABEL,
                       "Cancelled: the re-run stopped. Embeddings it had finished are kept in the cache.")

    compare.register(app, ctx)
