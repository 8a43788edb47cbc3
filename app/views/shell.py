"""The shell: run picker, encoder status (and the stand-in notice), run metrics, "new run" as a
background job, and the router that keeps the app-wide stores and the URL in step.

The router is the only callback that writes the four stores (run, cell, selection, view) and the
URL; every view reads the stores. Browser back/forward changes the URL, and the router turns it
back into stores.
"""
from __future__ import annotations

import dataclasses

from dash import ALL, Input, Output, State, ctx as dash_ctx, dcc, html, no_update

from pipeline.data.roots import allowed_data_path
from pipeline.report.notes import NotesStore
from pipeline.checks.validity import flagged, read_probe

from app.state import ids, imagesets, last_run
from app.state.context import AppContext
from app.jobs.panel import start_cancel_job, start_cancel_progress
from app.jobs.managers import job_user, panel_state, stage_progress
from app.state.roles import current_identity, may_start_runs, start_runs_refusal
from app.jobs.work import new_run_config, run_new
from app.state.runs import run_choices
from app.views.metrics import metrics_block
from pipeline.data.demo.about import DESCRIPTION, is_demo_set
from app.state.urlstate import ViewState, format_search, parse_search, with_cell, with_run


def navbar(ctx: AppContext) -> html.Div:
    return html.Div(className="fx-navbar", children=[
        html.Span("FaXplainer", className="fx-brand"),
        dcc.Dropdown(id=ids.RUN_PICKER, className="fx-run-picker", options=run_choices(ctx.runs_path),
                     placeholder="choose a run", clearable=False),
        html.Button("New run…", id=ids.NEWRUN_TOGGLE, n_clicks=0),
        html.Span(id=ids.STATUS, className="fx-status"),
    ])


def new_run_panel(ctx: AppContext) -> html.Div:
    cfg = ctx.cfg
    user, role = current_identity(cfg)
    hidden = {"display": "none"}
    if not may_start_runs(role):  # the server refuses the job too (app.state.roles)
        return html.Div(id=ids.NEWRUN_COLLAPSE, className="fx-newrun", style=hidden, children=[
            html.Div(start_runs_refusal(user), className="fx-muted")])
    if cfg.server.mode == "shared":  # only the data sets under the server's data roots
        from app.views.data_picker import data_picker

        path_field = data_picker(cfg)
    else:
        path_field = html.Div([
            html.Label("Folder (0_real/1_fake layout) or CSV manifest; empty = configured data or "
                       "the demo set"),
            dcc.Input(id=ids.NEWRUN_PATH, type="text", value=cfg.data.manifest or cfg.data.root or "",
                      debounce=False)])
    return html.Div(id=ids.NEWRUN_COLLAPSE, className="fx-newrun", style=hidden, children=[
        html.H3(["New run ", html.Span("encode a data set, train the vision-only projection and the "
                                       "16-d head, and explain it; it runs in the background",
                                       className="fx-muted")], className="fx-panel-title"),
        path_field,
        html.Div([html.Label("Only these categories (comma-separated)"),
                  dcc.Input(id=ids.NEWRUN_CATEGORIES, type="text", placeholder="e.g. bird")]),
        html.Div([html.Label("Only these generators"),
                  dcc.Input(id=ids.NEWRUN_GENERATORS, type="text", placeholder="e.g. progan")]),
        *start_cancel_progress(ids.NEWRUN_START, ids.NEWRUN_CANCEL, ids.NEWRUN_PROGRESS,
                               ids.NEWRUN_PROGRESS_LABEL, ids.NEWRUN_MESSAGE),
    ])


def status(ctx: AppContext, run_id):
    """Callback body: (status line, notice children, notice style, metrics)."""
    hidden = {"display": "none"}
    if run_id is None:
        return "No run open: start one with “New run…”.", "", hidden, ""
    view = ctx.run(run_id)
    if view is None:  # e.g. a link naming a run that is not here: say so, open nothing
        why = ctx.run_error(run_id) or "it cannot be opened"
        notice = [html.B(f"Run {run_id!r} cannot be shown: "), f"{why}. Nothing is open; pick a run "
                  f"above. (Notes cannot be written until a run is open.)"]
        return "No run open.", notice, {}, ""
    enc = view.meta.get("encoder") or {}
    data = view.meta.get("data") or {}
    line = (f"encoder: {enc.get('name', '?')} · {enc.get('model', '?')} ({enc.get('weights', '?')})"
            f" · {view.n_images} images · {len(view.cells.get('cells', []))} cells"
            + (f" · {data.get('n_bad')} unusable files skipped" if data.get("n_bad") else ""))
    applied_metrics = None
    if view.is_applied:  # "applied set X of run Y", and the set's own figures
        from app.views.applied import status_parts

        line, applied_metrics = status_parts(view)
    notice, style = "", hidden
    if enc.get("fallback_reason"):  # one line; the reason on demand
        notice = html.Details(className="fx-badge-notice", children=[
            html.Summary([html.B("Stand-in encoder: "), f"CLIP was not used; maps and concepts describe "
                          f"{enc.get('model')}, not CLIP (why)"]),
            html.Div(f"The offline stand-in encoder {enc.get('model')} ({enc.get('weights')}) replaced "
                     f"CLIP because: {enc['fallback_reason'].rstrip('.')}.")])
        style = {}
    if is_demo_set(data.get("root")):  # say what the images are, once, beside the figures
        about = html.Div([html.B("Demo data: "), DESCRIPTION.removeprefix("Demo data: ")], className="fx-demo-note")
        notice, style = ([notice, about] if notice else about), {}
    warnings = flagged({**(view.meta.get("checks") or {}), "bias_probe": read_probe(view.path) or {}})
    badge = [html.Span(f"⚠ {len(warnings)} data check warning(s): see Data checks",
                       className="fx-checks-badge", title="; ".join(warnings))] if warnings else []
    metrics = applied_metrics if applied_metrics is not None else \
        metrics_block(view.meta.get("metrics") or {}, data)
    return line, notice, style, badge + metrics


def _int_or_none(value) -> int | None:
    """An id sent by the browser as an int, or None when it is not one."""
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def route(ctx: AppContext, trigger, value, current: ViewState) -> tuple[ViewState, bool]:
    """Next app state from one trigger; returns (state, write it to the URL?).

    ``trigger`` is the id that fired (None on page load), ``value`` its new value.
    """
    if trigger in (None, ids.URL):
        state = parse_search(value)
        if state.run is None:  # no run named: the default run, with the rest of the URL's state
            fallback = last_run.default_run(ctx)  # shared mode: the run this user last opened
            return dataclasses.replace(state, run=fallback), fallback is not None
        if ctx.run_dir(state.run) is None:  # an unknown run: nothing opens, the status line says why
            return ViewState(run=state.run, view=state.view), False
        return state, False
    if trigger == ids.RUN_PICKER:  # (None: the picker dropped a value it has no option for)
        return (with_run(current, value), True) if value else (current, False)
    if trigger == ids.REPR_DATA:  # the training data or an applied set of the same run: same cells
        if not value or value == current.run or ctx.run_dir(value) is None:
            return current, False
        keep = current.cell if isinstance(current.cell, int) else None
        return ViewState(run=value, cell=keep, view=current.view), True
    if trigger == ids.MATRIX_OPEN:  # a matrix pair's misclassified images, as an image set
        run, cell = (value or {}).get("run"), imagesets.cell_key((value or {}).get("cell"))
        if ctx.run_dir(run) is None or not imagesets.is_set(cell):
            return current, False
        return ViewState(run=run, cell=cell, view="images"), True
    if trigger == ids.REPR_GRAPH:
        points = (value or {}).get("points") or []
        if not points or points[0].get("customdata") is None:
            return current, False
        custom = points[0]["customdata"]
        cell = int(custom[0] if isinstance(custom, list) else custom)
        return with_cell(current, cell), True
    if trigger == ids.IMAGES_GRAPH:
        points = (value or {}).get("points") or []
        sel = tuple(sorted({int(p["customdata"]) for p in points if p.get("customdata") is not None}))
        return dataclasses.replace(current, sel=sel), True
    if trigger == ids.VIEW_TOGGLE:
        return dataclasses.replace(current, view=value or "images"), True
    if trigger == ids.STORE_HIGHLIGHT:  # a concept's images highlighted: show them in the grid
        return (dataclasses.replace(current, view="images"), True) if (value or {}).get("ids") \
            else (current, False)
    if trigger == ids.FINDER_TABLE:  # a row of the cell table (cellClicked; row id = cell id)
        row = _int_or_none((value or {}).get("rowId"))
        view = ctx.run(current.run)
        if row is None or view is None or view.cell_info(row) is None:
            return current, False
        return with_cell(current, row), True
    if isinstance(trigger, dict) and trigger.get("type") == ids.finder_hit("")["type"]:
        view = ctx.run(current.run)  # a file found by the name search: open its cell
        index = _int_or_none(trigger.get("index"))
        if view is None or index is None or not 0 <= index < view.n_images:
            return current, False
        return dataclasses.replace(with_cell(current, int(view.cell[index])), view="images"), True
    if isinstance(trigger, dict) and trigger.get("type") == ids.note_jump("")["type"]:
        path = ctx.run_dir(current.run)
        note = NotesStore(path).get(trigger["index"]) if path else None
        if note is None:
            return current, False
        cell = note.get("cell")
        images = tuple(note.get("images") or ())
        if cell is None and images:
            view = ctx.run(current.run)
            cells = {int(view.cell[i]) for i in images if view and 0 <= i < view.n_images}
            cell = cells.pop() if len(cells) == 1 else current.cell
        return dataclasses.replace(current, cell=cell, sel=images, view="images"), True
    return current, False


def finished_run_message(ctx: AppContext, run_id: str, open_run: str | None):
    """(URL search, message, run picker options) once a new run is ready (callback body)."""
    search = format_search(ViewState(run=run_id))
    if not open_run or open_run == run_id:
        return search, f"Run {run_id} is ready.", run_choices(ctx.runs_path)
    return (no_update, html.Span([f"Run {run_id} is ready: ",
                                  dcc.Link("open it", href=search, id=ids.NEWRUN_OPEN)]),
            run_choices(ctx.runs_path))


def new_run_state(trigger) -> tuple:
    """(message, progress label) when Start or Cancel is pressed: the previous job's words go."""
    return panel_state(trigger == ids.NEWRUN_CANCEL, "Cancelled: the run stopped. Embeddings it had "
                       "finished are kept in the cache, so starting it again resumes there.")


def register(app, ctx: AppContext, managers) -> None:
    @app.callback(Output(ids.STATUS, "children"), Output(ids.FALLBACK_NOTICE, "children"),
                  Output(ids.FALLBACK_NOTICE, "style"), Output(ids.METRICS, "children"),
                  Input(ids.STORE_RUN, "data"))
    def _status(run_id):
        return status(ctx, run_id)

    @app.callback(Output(ids.NEWRUN_COLLAPSE, "style"), Input(ids.NEWRUN_TOGGLE, "n_clicks"),
                  prevent_initial_call=True)
    def _toggle_new_run(n):
        return {} if n % 2 else {"display": "none"}

    # A finished run is offered with an "open it" link (a URL the router reads) rather than
    # opened: the analyst may be in the middle of another run's cell. With nothing open, it opens.
    @app.callback(Output(ids.URL, "search", allow_duplicate=True),
                  Output(ids.NEWRUN_MESSAGE, "children"),
                  Output(ids.RUN_PICKER, "options"),
                  Input(ids.NEWRUN_START, "n_clicks"),
                  State(ids.NEWRUN_PATH, "value"), State(ids.NEWRUN_CATEGORIES, "value"),
                  State(ids.NEWRUN_GENERATORS, "value"), State(ids.STORE_RUN, "data"),
                  **start_cancel_job(managers.runs, ids.NEWRUN_START, ids.NEWRUN_CANCEL, ids.NEWRUN_PROGRESS,
                                     ids.NEWRUN_PROGRESS_LABEL))
    def _new_run(set_progress, _n, path, categories, generators, open_run):
        try:
            cfg = new_run_config(ctx.cfg, allowed_data_path(ctx.cfg, path), categories, generators)
        except ValueError as e:
            return no_update, html.Span(str(e), className="fx-error"), no_update
        progress = stage_progress(set_progress)

        try:
            run_id = run_new(cfg, progress, started_by=job_user(ctx.cfg))
        except Exception as e:  # shown to the user; the app stays usable
            return no_update, html.Span(f"The run failed: {type(e).__name__}: {e}",
                                        className="fx-error"), no_update
        return finished_run_message(ctx, run_id, open_run)

    # What the panel says the moment a job starts or is cancelled (the job itself cannot: a
    # cancelled job returns nothing, and a starting one has not reported yet).
    @app.callback(Output(ids.NEWRUN_MESSAGE, "children", allow_duplicate=True),
                  Output(ids.NEWRUN_PROGRESS_LABEL, "children", allow_duplicate=True),
                  Input(ids.NEWRUN_START, "n_clicks"), Input(ids.NEWRUN_CANCEL, "n_clicks"),
                  prevent_initial_call=True)
    def _new_run_state(_start, _cancel):
        return new_run_state(dash_ctx.triggered_id)

    @app.callback(Output(ids.STORE_RUN, "data"), Output(ids.STORE_CELL, "data"),
                  Output(ids.STORE_SEL, "data"), Output(ids.STORE_VIEW, "data"),
                  Output(ids.URL, "search"), Output(ids.RUN_PICKER, "value"),
                  Output(ids.VIEW_TOGGLE, "value"), Output(ids.REPR_DATA, "value"),
                  Input(ids.URL, "search"), Input(ids.RUN_PICKER, "value"),
                  Input(ids.REPR_GRAPH, "clickData"), Input(ids.IMAGES_GRAPH, "selectedData"),
                  Input(ids.VIEW_TOGGLE, "value"), Input(ids.note_jump(ALL), "n_clicks"),
                  Input(ids.STORE_HIGHLIGHT, "data"),
                  Input(ids.FINDER_TABLE, "cellClicked"), Input(ids.finder_hit(ALL), "n_clicks"),
                  Input(ids.REPR_DATA, "value"), Input(ids.MATRIX_OPEN, "data"),
                  State(ids.STORE_RUN, "data"), State(ids.STORE_CELL, "data"),
                  State(ids.STORE_SEL, "data"), State(ids.STORE_VIEW, "data"))
    def _route(search, picked, click, selected, toggle, _jumps, highlight, row, _hits, data_choice,
               matrix_pick, run, cell, sel, view):
        trigger = dash_ctx.triggered_id
        if isinstance(trigger, dict) and not dash_ctx.triggered[0].get("value"):
            return (no_update,) * 8  # a jump button was (re)created, not clicked
        values = {ids.URL: search, ids.RUN_PICKER: picked, ids.REPR_GRAPH: click,
                  ids.IMAGES_GRAPH: selected, ids.VIEW_TOGGLE: toggle, ids.STORE_HIGHLIGHT: highlight,
                  ids.FINDER_TABLE: row, ids.REPR_DATA: data_choice, ids.MATRIX_OPEN: matrix_pick}
        current = ViewState(run=run, cell=cell, sel=tuple((sel or {}).get("ids") or ()),
                            view=view or "images")
        first_load = run is None and view is None
        value = None if isinstance(trigger, dict) else values.get(trigger)
        state, write_url = route(ctx, trigger, value, current)
        if state.run != run:
            last_run.remember(ctx, state.run)  # for this user's next bare URL (shared mode)
        # The image graph already shows a selection the user drew; any other source is patched in.
        source = "graph" if trigger == ids.IMAGES_GRAPH else "state"

        def changed(new, old):
            return new if (new != old or first_load) else no_update

        sel_out = no_update
        if state.sel != current.sel or first_load or state.cell != current.cell:
            sel_out = {"ids": list(state.sel), "from": source}
        return (changed(state.run, run), changed(state.cell, cell), sel_out,
                changed(state.view, view), format_search(state) if write_url else no_update,
                # the picker only shows runs it lists: an unknown run's id would be dropped by it
                changed(state.run, picked) if ctx.run_dir(state.run) else no_update,
                changed(state.view, toggle), changed(state.run, data_choice))
