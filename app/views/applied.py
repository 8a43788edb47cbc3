"""A run's applied sets in the app: the data switch of the representation view, what an open set is
(status line, titles, legend), and "score a folder with this run" as a background job.

An applied set (``pipeline.generalise.apply``: new images scored with a run's encoder, projection and head)
opens as the pseudo-run ``RUN@SET`` (:mod:`app.state.runs`), so the image grid, the attention maps, the
viewer and the concepts work on its images as on a run's. The switch (``ids.REPR_DATA``) lists the
run's training data and its applied sets; the shell's router turns a choice into ``STORE_RUN``
(the open cell is kept: the cells are the run's) and sets the switch's value, as it sets the run
picker's. How a set is drawn ("its glyphs" or "its images
over the training glyphs", ``ids.REPR_LAYERS``) is :mod:`app.views.applied_map`'s. The run / set
distinction stays visible: the status line, the representation title and the image view's title
say "applied set X of run Y".

"Score a folder with this run…" opens a panel like "New run…": a folder (any images: with
``0_real``/``1_fake`` or a manifest's labels the set gets metrics, without them predictions only)
or a CSV manifest, an optional name, Start / Cancel and a progress bar. The job runs on the runs
manager (a long job never holds up the views); in shared mode the path must pass
``pipeline.data.roots.allowed_data_path`` in the job, and the panel is offered to the roles that
may apply models (``app.state.roles.may_apply``: analysts may). When it finishes, the set is listed in
the run picker and the switch, with a link that opens it.
"""
from __future__ import annotations

from dash import ClientsideFunction, Input, Output, State, ctx as dash_ctx, dcc, html, no_update

from pipeline.data.roots import data_roots, describe_roots
from pipeline.store.run_store import RunStore

from app.state import ids
from app.state.context import AppContext
from app.jobs.panel import start_cancel_job, start_cancel_progress
from app.jobs.managers import panel_state, stage_progress
from app.state.roles import current_identity, may_apply
from app.state.runs import applied_choices, applied_id, run_choices, split_run_id
from app.state.urlstate import ViewState, format_search
from app.views.metrics import generator_table, num, pct

HIDDEN = {"display": "none"}


# -- layout ---------------------------------------------------------------------------------------
def data_switch() -> html.Div:
    """The row above the map: which data (training or an applied set), how a set is drawn, and
    the button that scores a new folder with this run."""
    return html.Div(className="fx-data-switch", children=[
        html.Label("Data", htmlFor=ids.REPR_DATA, className="fx-muted"),
        dcc.Dropdown(id=ids.REPR_DATA, options=[], clearable=False, searchable=False,
                     className="fx-data-dropdown", placeholder="training data"),
        html.Div(id=ids.REPR_LAYERS_WRAP, style=HIDDEN, children=[
            dcc.RadioItems(id=ids.REPR_LAYERS, value="set", inline=True, className="fx-toggle",
                           options=[{"label": "its glyphs", "value": "set"},
                                    {"label": "its images over the training glyphs", "value": "both"}])]),
        html.Button("Score a folder with this run…", id=ids.APPLY_TOGGLE, n_clicks=0,
                    className="fx-score-button",
                    title="score new images with this run's encoder, projection and head, and see "
                          "where they fall among its cells (no retraining)"),
    ])


def score_panel(ctx: AppContext) -> html.Div:
    """The "score a folder" panel (hidden until the button opens it)."""
    user, role = current_identity(ctx.cfg)
    if not may_apply(role):  # no role lacks it today; the panel follows app.state.roles all the same
        return html.Div(id=ids.APPLY_COLLAPSE, className="fx-newrun", style=HIDDEN, children=[
            html.Div("Scoring new images needs the analyst or maintainer role.", className="fx-muted")])
    where = ("" if ctx.cfg.server.mode != "shared" else
             f" {describe_roots(data_roots(ctx.cfg)).capitalize()}; the path must lie under one of them.")
    return html.Div(id=ids.APPLY_COLLAPSE, className="fx-newrun fx-score", style=HIDDEN, children=[
        html.H3(["Score a folder with this run ", html.Span(
            "new images through the run's encoder, projection and head; no retraining",
            className="fx-muted")], className="fx-panel-title"),
        dcc.Store(id=ids.APPLY_SCROLL),
        html.Div([html.Label("Folder or CSV manifest to score (labels optional: 0_real/1_fake "
                             "folders or a manifest's label column give metrics; without them, "
                             "predictions only)" + where),
                  dcc.Input(id=ids.APPLY_PATH, type="text", value="", debounce=False,
                            placeholder="/path/to/new-images")]),
        html.Div([html.Label("Name (default: the folder's)"),
                  dcc.Input(id=ids.APPLY_NAME, type="text", value="", placeholder="e.g. batch-12")]),
        html.Div(id=ids.APPLY_RUN, className="fx-muted"),
        *start_cancel_progress(ids.APPLY_START, ids.APPLY_CANCEL, ids.APPLY_PROGRESS,
                               ids.APPLY_PROGRESS_LABEL, ids.APPLY_MESSAGE),
    ])


# -- callback bodies ------------------------------------------------------------------------------
def training_run(run_id) -> str | None:
    """The run behind ``run_id`` (itself, or an applied set's run)."""
    return split_run_id(run_id)[0] if run_id else None


def switch_options(ctx: AppContext, run_id) -> list[dict]:
    """The switch's options: the run's training data, then each of its applied sets."""
    run = training_run(run_id)
    path = ctx.run_dir(run)
    if path is None:
        return []
    n = (RunStore(path).read_meta().get("data") or {}).get("n_images", "?")
    sets = applied_choices(RunStore(path))
    options = [{"label": f"training data of the run · {n} images", "value": run}] + sets
    if not sets:
        options.append({"label": "no applied set yet: score a folder with this run", "value": "",
                        "disabled": True})
    return options


def switch(ctx: AppContext, run_id) -> tuple:
    """(options, layers style, representation title, score panel's run line) for the open run or
    applied set (callback body; the router sets the switch's value, as it sets the run picker's)."""
    view = ctx.run(run_id)
    if view is None:
        return [], HIDDEN, "Representation", ""
    title = "Representation" if not view.is_applied else \
        ["Representation · ", html.Span(view.describe(), className="fx-applied-name")]
    run = training_run(run_id)
    return (switch_options(ctx, run_id), {} if view.is_applied else HIDDEN, title,
            f"Scored with run {run}: its encoder, projection and head (the run is not changed).")


def legend_note(ctx: AppContext, run_id, layers) -> tuple:
    """(children, style) of the line under the legend that says how an applied set is drawn."""
    view = ctx.run(run_id)
    if view is None or not view.is_applied:
        return [], HIDDEN
    unlabelled = not view.labelled.all()
    if layers == "both":
        parts = [html.B("Applied set over the training glyphs: "), html.Span(
                 "the run's glyphs (faded) count its training images; each marker is an image of the set at its "
                 "place in its cell · colour = its label (blue real, orange fake)"
                 + (", or its prediction when it has none" if unlabelled else "")
                 + " · ● right, ✕ wrong" + (", ◆ no label (prediction only)" if unlabelled else "")
                 + " · black outline = far from the cell's training images (16-d)")]
    else:
        parts = [html.B("Applied set: "), html.Span(
                 "each glyph counts the set's images in that run cell (area ~ images; same share of the set as "
                 "of the run's images = same size as in the training view); grey = no image of the set fell there"
                 + (" · images without a label are coloured by their prediction, solid: no right or wrong "
                    "without a label" if unlabelled else ""))]
    return [html.Span(parts, className="fx-applied-line")], {}


def status_parts(view) -> tuple[str, list]:
    """(status line, metrics children) of an applied set (``shell.status`` shows them)."""
    enc, data = view.meta.get("encoder") or {}, view.meta.get("data") or {}
    placement = view.meta.get("placement") or {}
    n_cells = len(view.cells.get("cells", []))
    reached = sum(1 for c in view.cells.get("cells", []) if c.get("n"))
    labels = (f"{data.get('n_real', 0)} real, {data.get('n_fake', 0)} fake"
              + (f", {data.get('n_unlabelled')} without a label" if data.get("n_unlabelled") else ""))
    line = (f"applied set {view.set_name} of run {view.parent_id} · scored with its encoder "
            f"{enc.get('name', '?')} · {enc.get('model', '?')} · {view.n_images} images ({labels}) · "
            f"{reached} of {n_cells} cells reached · {placement.get('n_far', 0)} far from their cell"
            + (f" · {data.get('n_bad')} unusable files skipped" if data.get("n_bad") else ""))
    return line, metrics_parts(view)


def metrics_parts(view) -> list:
    """The set's figures (accuracy per class, AP, AUC, per generator) next to the run's held-out
    ones; without labels, its predictions only."""
    m = view.meta.get("applied_metrics")
    if not m:
        n_fake = int((view.pred == 1).sum())
        return [html.Span([html.B("No labels: predictions only"), f" · {view.n_images - n_fake} predicted real, "
                           f"{n_fake} predicted fake"], className="fx-metric")]
    out = [html.Span(["accuracy on the set ", html.B(pct(m.get("accuracy")))], className="fx-metric"),
           html.Span(["AP ", html.B(num(m.get("ap")))], className="fx-metric"),
           html.Span(["AUC ", html.B(num(m.get("auc")))], className="fx-metric"),
           html.Span(f"on {m.get('n', '?')} labelled images ({m.get('n_real', '?')} real, {m.get('n_fake', '?')} "
                     f"fake; real acc. {pct(m.get('real_accuracy'))}, fake acc. {pct(m.get('fake_accuracy'))})",
                     className="fx-muted")]
    parent = (view.meta.get("parent_metrics") or {})
    if parent:
        out.append(html.Span(f"the run's held-out: accuracy {pct(parent.get('accuracy'))}, AUC "
                             f"{num(parent.get('auc'))}", className="fx-muted"))
    per_gen = m.get("per_generator") or {}
    if len(per_gen) > 1:
        out.append(html.Details(className="fx-metrics-details", open=len(per_gen) <= 4, children=[
            html.Summary(f"per generator (the set, {len(per_gen)})"), generator_table(per_gen)]))
    return out


def finished_message(ctx: AppContext, store) -> html.Span:
    """What the panel says when a set is ready: its size, its figures, a link that opens it."""
    meta = store.read_meta()
    data, m = meta.get("data") or {}, meta.get("metrics")
    figures = (f"accuracy {pct(m.get('accuracy'))} (real {pct(m.get('real_accuracy'))}, fake "
               f"{pct(m.get('fake_accuracy'))}), AUC {num(m.get('auc'))}" if m else "no labels: predictions only")
    search = format_search(ViewState(run=applied_id(store.run.run_id, store.name)))
    skipped = f", {data.get('n_bad')} unusable files skipped" if data.get("n_bad") else ""
    return html.Span([f"Applied set {store.name} is ready: {data.get('n_images')} images{skipped}; {figures}. ",
                      dcc.Link("Open it", href=search, id=ids.APPLY_OPEN)])


def start_state(trigger) -> tuple:
    """(message, progress label) the moment Start or Cancel is pressed."""
    return panel_state(trigger == ids.APPLY_CANCEL, "Cancelled: nothing was written. Embeddings already "
                       "computed are kept in the cache, so starting again resumes there.")


def register(app, ctx: AppContext, managers) -> None:
    @app.callback(Output(ids.REPR_DATA, "options"), Output(ids.REPR_LAYERS_WRAP, "style"), Output(ids.REPR_TITLE, "children"),
                  Output(ids.APPLY_RUN, "children"), Input(ids.STORE_RUN, "data"))
    def _switch(run_id):
        return switch(ctx, run_id)

    @app.callback(Output(ids.REPR_APPLIED_NOTE, "children"), Output(ids.REPR_APPLIED_NOTE, "style"),
                  Input(ids.STORE_RUN, "data"), Input(ids.REPR_LAYERS, "value"))
    def _legend(run_id, layers):
        return legend_note(ctx, run_id, layers)

    @app.callback(Output(ids.IMAGES_LEGEND_UNLABELLED, "style"), Input(ids.STORE_RUN, "data"))
    def _grid_legend(run_id):
        view = ctx.run(run_id)
        return {} if view is not None and not view.labelled.all() else HIDDEN

    @app.callback(Output(ids.APPLY_COLLAPSE, "style"), Input(ids.APPLY_TOGGLE, "n_clicks"),
                  prevent_initial_call=True)
    def _toggle(n):
        return {} if n % 2 else HIDDEN

    # The panel sits above the map, the button beside it: bring the opened panel into view.
    app.clientside_callback(
        ClientsideFunction(namespace="faxplainer", function_name="scrollToOpened"),
        Output(ids.APPLY_SCROLL, "data"), Input(ids.APPLY_COLLAPSE, "style"),
        State(ids.APPLY_COLLAPSE, "id"), prevent_initial_call=True)

    @app.callback(Output(ids.APPLY_MESSAGE, "children"),
                  Output(ids.RUN_PICKER, "options", allow_duplicate=True),
                  Output(ids.REPR_DATA, "options", allow_duplicate=True),
                  Input(ids.APPLY_START, "n_clicks"),
                  State(ids.APPLY_PATH, "value"), State(ids.APPLY_NAME, "value"),
                  State(ids.STORE_RUN, "data"),
                  **start_cancel_job(managers.runs, ids.APPLY_START, ids.APPLY_CANCEL, ids.APPLY_PROGRESS,
                                     ids.APPLY_PROGRESS_LABEL))
    def _score(set_progress, _n, path, name, run_id):
        return score(ctx, path, name, run_id, stage_progress(set_progress))

    @app.callback(Output(ids.APPLY_MESSAGE, "children", allow_duplicate=True),
                  Output(ids.APPLY_PROGRESS_LABEL, "children", allow_duplicate=True),
                  Input(ids.APPLY_START, "n_clicks"), Input(ids.APPLY_CANCEL, "n_clicks"),
                  prevent_initial_call=True)
    def _state(_start, _cancel):
        return start_state(dash_ctx.triggered_id)


def score(ctx: AppContext, path, name, run_id, progress) -> tuple:
    """The job's body: (message, run picker options, switch options). Errors become a message."""
    from app.jobs.work import score_folder

    run = training_run(run_id)
    run_dir = ctx.run_dir(run)
    if run_dir is None:
        return html.Span("Open a run first: its models score the folder.", className="fx-error"), \
            no_update, no_update
    try:
        store = score_folder(ctx.cfg, run_dir, path, name, progress)
    except ValueError as e:  # a path outside the data roots, no usable image, a bad name
        return html.Span(str(e), className="fx-error"), no_update, no_update
    except Exception as e:  # shown to the user; the app stays usable
        return (html.Span(f"Scoring failed: {type(e).__name__}: {e}", className="fx-error"),
                no_update, no_update)
    return finished_message(ctx, store), run_choices(ctx.runs_path), switch_options(ctx, run_id)
