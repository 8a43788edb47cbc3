"""Cross-generator matrix panel: does what the detector learned carry over to other generators?

For a run whose fakes come from two or more generators, ``pipeline.generalise.run_matrix`` trains heads of
the run's kind on its cached features (no image is read): one per generator on that generator's
training images, and one per generator on all the others' training images, each tested on every
generator's held-out images. The panel shows the kept matrix at once
(``pipeline.generalise.run_matrix.cached_matrix``, which imports no torch) as two heatmaps
(:mod:`app.figures.matrix`, AUC or accuracy); otherwise a button computes it as a background job
(``JobView``), kept with the run for the next time. An applied set shows its run's matrix.

Clicking a pair keeps its misclassified held-out images (the run's record indices) as an image set
(:mod:`app.state.imagesets`) and writes ``ids.MATRIX_OPEN``; the shell's router then opens the run with
that set in the image view, titled "misclassified by the head trained on gan, tested on diffusion"
(its frames stay those of the run's own head).
"""
from __future__ import annotations

from dash import Input, Output, State, dcc, html, no_update

from pipeline.generalise.run_matrix import cached_matrix

from app.state import ids, imagesets
from app.state.context import AppContext
from app.figures.common import empty_figure
from app.jobs.panel import Job, JobPanel, JobView, Ready
from app.figures.matrix import matrix_figure, pair_at, pair_title
from app.state.runs import split_run_id

HIDDEN, SHOWN = {"display": "none"}, {}


def layout() -> html.Details:
    return html.Details(id=ids.MATRIX_PANEL, className="fx-panel fx-matrix", children=[
        html.Summary(id=ids.MATRIX_SUMMARY, className="fx-checks-summary",
                     children="Cross-generator matrix"),
        html.Div(className="fx-matrix-head", children=[
            html.Span("Each head is trained on the run's cached features of some generators' training "
                      "images and tested on every generator's held-out images (its fakes with their "
                      "reals). Outlined: the generator itself (left) and the generator left out, "
                      "never seen (right). Click a pair to see the images its head gets wrong.",
                      className="fx-muted"),
            dcc.RadioItems(id=ids.MATRIX_FIGURE, value="auc", inline=True, className="fx-toggle",
                           options=[{"label": "AUC", "value": "auc"},
                                    {"label": "accuracy", "value": "accuracy"}]),
        ]),
        JobPanel(ids.MATRIX_JOB, [
            dcc.Graph(id=ids.MATRIX_GRAPH, figure=empty_figure(""), style=HIDDEN, className="fx-matrix-graph",
                      config={"displayModeBar": False}),
            html.Div(id=ids.MATRIX_CONTENT),
            html.Button("Compute the matrix", id=ids.MATRIX_START, n_clicks=0, style=HIDDEN),
        ]),
        html.Div(id=ids.MATRIX_MESSAGE, className="fx-message"),
        dcc.Store(id=ids.MATRIX_OPEN), dcc.Store(id=ids.MATRIX_ASK),
    ])


def training_view(ctx: AppContext, run_id):
    """The run whose matrix is shown: the open run, or an applied set's run."""
    return ctx.run(split_run_id(run_id)[0]) if run_id else None


def fake_generators(view) -> list[str]:
    """The generators that have fakes in the run (the matrix needs two or more)."""
    cols = view.columns
    fake_codes = set(cols.generator.codes[cols.label == 1].tolist())
    return [g for k, g in enumerate(cols.generator.values) if k in fake_codes and g != "no generator"]


def summary(view, gens: list[str], ready: bool) -> str:
    if len(gens) < 2:
        return (f"Cross-generator matrix: needs fakes of two or more generators "
                f"(run {view.run_id} has {len(gens)})")
    state = "" if ready else " · not computed yet"
    return (f"Cross-generator matrix of run {view.run_id} ({len(gens)} generators: "
            f"{', '.join(gens)}){state}")


def notes(matrix: dict) -> list:
    """What the matrix rests on: which reals, its notes, its cost."""
    heads = sum(len(t) for t in (matrix.get("heads") or {}).values())
    lines = [f"reals: {matrix.get('reals', '?')}"] + [str(n) for n in matrix.get("notes", [])]
    lines.append(f"{heads} heads trained in {matrix.get('seconds', 0):.1f} s on the run's cached features")
    return [html.Div(line, className="fx-muted") for line in lines]


def show(ctx: AppContext, asked, run_id, figure):
    """The kept matrix at once; a job when asked for (the button, for this run: ``asked`` =
    ``{"run": id}``) and not kept; else the button."""
    view = training_view(ctx, run_id)
    if view is None:
        return Ready((empty_figure(""), HIDDEN, [], HIDDEN, "Cross-generator matrix"))
    gens = fake_generators(view)
    if len(gens) < 2:
        return Ready((empty_figure(""), HIDDEN, [html.Div(
            "The matrix compares generators: this run's fakes come from fewer than two.",
            className="fx-muted")], HIDDEN, summary(view, gens, False)))
    matrix = cached_matrix(view.path)
    if matrix is not None:
        return Ready((matrix_figure(matrix, figure), SHOWN, notes(matrix), HIDDEN, summary(view, gens, True)))
    if (asked or {}).get("run") == run_id:
        return Job({"run": view.run_id, "figure": figure}, (no_update, HIDDEN, [], HIDDEN, no_update),
                   f"Training {2 * len(gens)} small heads on the run's cached features…")
    return Ready((empty_figure(""), HIDDEN, [html.Div(
        f"Not computed yet: {2 * len(gens)} heads of the run's kind, trained on its cached features "
        f"(no image is read; seconds to a minute). Kept with the run.", className="fx-muted")],
        SHOWN, summary(view, gens, False)))


def compute(ctx: AppContext, view, request: dict, progress):
    """The job: the run's matrix (``pipeline.generalise.run_matrix.run_matrix``, kept with the run)."""
    from pipeline.generalise.run_matrix import run_matrix

    matrix = run_matrix(view.path, progress=lambda done, total: progress("heads trained (epochs)", done, total))
    gens = fake_generators(view)
    return (matrix_figure(matrix, request.get("figure")), SHOWN, notes(matrix), HIDDEN,
            summary(view, gens, True)), ""


JOB = JobView(ids.MATRIX_JOB, outputs=[(ids.MATRIX_GRAPH, "figure"), (ids.MATRIX_GRAPH, "style"),
                                       (ids.MATRIX_CONTENT, "children"), (ids.MATRIX_START, "style"),
                                       (ids.MATRIX_SUMMARY, "children")],
              show=show, compute=compute, blank=(empty_figure(""), HIDDEN, [], SHOWN, no_update),
              failure="Could not compute the matrix")


def open_pair(ctx: AppContext, click, run_id) -> tuple:
    """(``MATRIX_OPEN``, message) after a click on a pair: its misclassified held-out images kept
    as an image set of the run, to open in the image view; a pair without any says so."""
    view = training_view(ctx, run_id)
    points = (click or {}).get("points") or []
    matrix = cached_matrix(view.path) if view is not None and points else None
    pair = pair_at(matrix, points[0].get("curveNumber"), points[0].get("x"), points[0].get("y")) \
        if matrix is not None else None
    if pair is None:
        return no_update, no_update
    table, train, test = pair
    cell = ((matrix.get(table) or {}).get(train) or {}).get(test)
    title = pair_title(table, train, test)
    if cell is None:
        return no_update, html.Span(f"{title}: no head or no held-out images for this pair.",
                                    className="fx-muted")
    wrong = [int(i) for i in cell.get("misclassified") or []]
    if not wrong:
        return no_update, html.Span(f"{title}: none, the head gets every held-out image right.",
                                    className="fx-muted")
    key = imagesets.save_set(ctx.app_cache(view), wrong, title,
                             {"kind": "matrix", "table": table, "train": train, "test": test})
    return ({"run": view.run_id, "cell": key},
            f"{title}: {len(wrong)} images, opened in the image view (run {view.run_id}).")


def register(app, ctx: AppContext, managers) -> None:
    # The button asks for the matrix of the run open when it was pressed (another run opened
    # later is not computed because of an old click).
    @app.callback(Output(ids.MATRIX_ASK, "data"), Input(ids.MATRIX_START, "n_clicks"),
                  State(ids.STORE_RUN, "data"), prevent_initial_call=True)
    def _ask(clicks, run_id):
        return {"run": run_id} if clicks else no_update

    JOB.register(app, ctx, managers.views, inputs=[Input(ids.MATRIX_ASK, "data"),
                                                   Input(ids.STORE_RUN, "data"),
                                                   Input(ids.MATRIX_FIGURE, "value")])

    @app.callback(Output(ids.MATRIX_OPEN, "data"), Output(ids.MATRIX_MESSAGE, "children"),
                  Input(ids.MATRIX_GRAPH, "clickData"), State(ids.STORE_RUN, "data"),
                  prevent_initial_call=True)
    def _open(click, run_id):
        return open_pair(ctx, click, run_id)
