"""A view whose content may have to be computed first, as one component: :class:`JobPanel` in the
layout and :class:`JobView` for its two callbacks (the Dash docs' All-in-One component shape).

The image grid, the attention maps and the concepts each show something that is either on disk
already (shown at once) or computed by a background job with a progress bar. A view supplies two
functions and nothing else:

* ``show(ctx, *inputs)``: what to display now: :class:`Ready` (values for the view's outputs and
  a message), :class:`Job` (a request for the background job, placeholders and a message), or
  None (leave everything as it is);
* ``compute(ctx, view, request, progress, **kw)``: the job: returns ``(values, message)``.

:class:`JobView` registers the plain *render* callback on the view's inputs and the background
*prepare* callback on the panel's request store, and owns the glue every view needs: a fresh
nonce per request (the files on disk say what is ready, Dash remembers no result: ``app.jobs.managers``);
clearing a pending request when something is shown from disk, so that Dash cancels the older job
and it cannot overwrite what is on screen; a run that cannot be opened; an error turned into a
message in the panel (the app stays usable); progress reports that show the bar; a job replaced
while it waited (the heavy queue keeps one waiting job per analyst and view, ``app.jobs.fair_queue``)
answering at once that it was; and, with every answer, when the job started and how long it
computed (the panel's timing store, which the load test reads to split waiting from computing).

Ids: the panel's ids are built from its name by :class:`JobPanel.ids` (plain strings, so browser
tests and the load test address them like every other id; no ``MATCH`` is needed since each
panel's callbacks are its own).
"""
from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from dash import Input, Output, State, dcc, html, no_update, set_props

from app.jobs.managers import view_job, view_progress


class JobPanel(html.Div):
    """Progress bar and label, message line, the view's own content, and the request store.

    Parameters
    ----------
    name : the panel's name (``app.state.ids``: ``IMAGES_JOB``, ...), from which its ids are built.
    content : the view's own components (its outputs), placed under the message line.
    """

    class ids:
        """Ids of the panel named ``name``, one builder per part."""

        progress = staticmethod(lambda name: f"{name}-job-progress")
        progress_label = staticmethod(lambda name: f"{name}-job-progress-label")
        progress_wrap = staticmethod(lambda name: f"{name}-job-progress-wrap")
        message = staticmethod(lambda name: f"{name}-job-message")
        request = staticmethod(lambda name: f"{name}-job-request-store")
        partial = staticmethod(lambda name: f"{name}-job-partial-store")
        timing = staticmethod(lambda name: f"{name}-job-timing-store")

    def __init__(self, name: str, content: Sequence[Any] = (), **div_props):
        ids = self.ids
        super().__init__([
            html.Div(id=ids.progress_wrap(name), style={"display": "none"}, children=[
                html.Progress(id=ids.progress(name), max="100", value="0"),
                html.Div(id=ids.progress_label(name), className="fx-progress-label"),
            ]),
            html.Div(id=ids.message(name), className="fx-message"),
            *content,
            dcc.Store(id=ids.request(name)), dcc.Store(id=ids.partial(name)),
            dcc.Store(id=ids.timing(name)),
        ], **div_props)


def start_cancel_progress(start: str, cancel: str, bar: str, label: str, message: str) -> list:
    """Start and Cancel buttons and the progress row (bar, label, message) of a panel whose job is
    a long background callback of its own ("New run…", "Score a folder…")."""
    return [
        html.Button("Start", id=start, n_clicks=0, className="primary"),
        html.Button("Cancel", id=cancel, n_clicks=0, disabled=True),
        html.Div(className="fx-progress-row", children=[
            html.Progress(id=bar, max="100", value="0"),
            html.Span(id=label, className="fx-progress-label"),
            html.Div(id=message, className="fx-message"),
        ]),
    ]


def start_cancel_job(manager, start: str, cancel: str, bar: str, label: str) -> dict:
    """The background-callback settings that go with :func:`start_cancel_progress`: run on
    ``manager``, fill the bar and its label, disable Start while running, Cancel cancels."""
    return dict(background=True, manager=manager, interval=500,
                progress=[Output(bar, "value"), Output(label, "children")],
                progress_default=["0", ""],  # a finished, failed or cancelled job leaves no label
                running=[(Output(start, "disabled"), True, False), (Output(cancel, "disabled"), False, True)],
                cancel=[Input(cancel, "n_clicks")], prevent_initial_call=True)


def start_cancel_state(app, start: str, cancel: str, message: str, label: str, cancelled_words: str) -> None:
    """Register what a :func:`start_cancel_progress` panel says the moment Start or Cancel is
    pressed (the job itself cannot: a cancelled job returns nothing, a starting one has not
    reported yet): the previous job's words go, and Cancel leaves ``cancelled_words``."""
    from app.jobs.managers import panel_state

    @app.callback(Output(message, "children", allow_duplicate=True), Output(label, "children", allow_duplicate=True),
                  Input(start, "n_clicks"), Input(cancel, "n_clicks"), prevent_initial_call=True)
    def _state(_start, _cancel):
        from dash import ctx as dash_ctx

        return panel_state(dash_ctx.triggered_id == cancel, cancelled_words)


@dataclass(frozen=True)
class Ready:
    """Shown now: ``values`` for the view's outputs, and the panel's message."""

    values: tuple
    message: Any = ""


@dataclass(frozen=True)
class Job:
    """To compute: ``request`` (JSON-able, with the ``run`` id) for the background job;
    ``values`` shown meanwhile; the panel's message."""

    request: dict
    values: tuple
    message: Any = ""


class JobView:
    """The two callbacks of a :class:`JobPanel` (module docstring).

    Parameters
    ----------
    name : the panel's name.
    outputs : ``(component id, property)`` of the view's own outputs, in the order of ``values``.
    show : ``show(ctx, *inputs) -> Ready | Job | None``.
    compute : ``compute(ctx, view, request, progress, **kw) -> (values, message)``; ``view`` is
        the request's run (``app.state.runs.RunView``), ``progress(stage, done, total)``.
    blank : values when nothing can be shown (the run is gone, the job failed).
    failure : start of the message when the job raises, e.g. "Could not compute the maps".
    partial : optional ``partial(ctx, value) -> (values, message)``: what to show of a job that
        is still running. ``compute`` then also receives ``partial=push`` and calls ``push(value)``
        (JSON-able, e.g. the images done so far) as parts are ready; the panel shows them at once.
    """

    def __init__(self, name: str, outputs: Sequence[tuple[str, str]], show: Callable, compute: Callable,
                 blank: tuple, failure: str, partial: Callable | None = None):
        self.name, self.outputs, self.show, self.compute = name, list(outputs), show, compute
        self.blank, self.failure, self.partial = tuple(blank), failure, partial

    def render(self, ctx, *inputs, pending=None) -> tuple:
        """The render callback's body: ``(*values, message, request)``."""
        result = self.show(ctx, *inputs)
        if result is None:
            return (no_update,) * (len(self.outputs) + 2)
        if isinstance(result, Job):
            return (*result.values, result.message, {**result.request, "nonce": uuid.uuid4().hex})
        return (*result.values, result.message, None if pending else no_update)

    def prepare(self, ctx, request: dict | None, set_progress: Callable, **kwargs) -> tuple:
        """The background job's body: ``(*values, message)``."""
        if not request:
            return (no_update,) * (len(self.outputs) + 1)
        view = ctx.run(request.get("run"))
        if view is None:
            return (*self.blank, html.Span(f"Run {request.get('run')} cannot be opened.",
                                           className="fx-error"))
        if self.partial is not None:
            set_progress, kwargs["partial"] = _with_partial(set_progress)
        try:
            values, message = self.compute(ctx, view, request, view_progress(set_progress), **kwargs)
        except Exception as e:  # reported in the panel; the app stays usable
            return (*self.blank, html.Span(f"{self.failure}: {type(e).__name__}: {e}",
                                           className="fx-error"))
        return (*values, message)

    def replaced(self, newer: str) -> tuple:
        """The answer of a job replaced by the same analyst's newer request while it waited."""
        return ((no_update,) * len(self.outputs) +
                (html.Span("Replaced by your newer request of this view (each analyst keeps one "
                           "waiting request per view).", className="fx-muted"),))

    def register(self, app, ctx, manager, inputs: Sequence[Input | State]) -> None:
        """Register both callbacks; ``inputs`` are the render callback's Inputs and States."""
        ids, name = JobPanel.ids, self.name

        @app.callback(*[Output(c, p) for c, p in self.outputs], Output(ids.message(name), "children"),
                      Output(ids.request(name), "data"), *inputs, State(ids.request(name), "data"))
        def _render(*args):
            return self.render(ctx, *args[:-1], pending=args[-1])

        job = view_job(manager, ids.progress(name), ids.progress_label(name), ids.progress_wrap(name))
        if self.partial is not None:  # the job's partial results travel as one more progress output
            job["progress"].append(Output(ids.partial(name), "data"))
            job["progress_default"].append(None)

            @app.callback(*[Output(c, p, allow_duplicate=True) for c, p in self.outputs],
                          Output(ids.message(name), "children", allow_duplicate=True),
                          Input(ids.partial(name), "data"), prevent_initial_call=True)
            def _partial(value):
                if not value:
                    return (no_update,) * (len(self.outputs) + 1)
                values, message = self.partial(ctx, value)
                return (*values, message)

        replaced_by = getattr(manager, "replaced_by", None)  # the shared server's heavy queue

        @app.callback(*[Output(c, p, allow_duplicate=True) for c, p in self.outputs],
                      Output(ids.message(name), "children", allow_duplicate=True),
                      Input(ids.request(name), "data"), **job)
        def _prepare(set_progress, request):
            started = time.time()
            newer = replaced_by() if replaced_by is not None and request else None
            answer = self.replaced(newer) if newer else self.prepare(ctx, request, set_progress)
            if request:  # when it started and how long it took (wall clock, seconds)
                set_props(ids.timing(name), {"data": {"started": started, "replaced": bool(newer),
                                                      "seconds": round(time.time() - started, 4)}})
            return answer


def _with_partial(set_progress: Callable) -> tuple[Callable, Callable]:
    """(set_progress for the bar, push(value) for partial results): each report carries both,
    since Dash sets all progress outputs at once."""
    last = {"bar": ("0", "", {"display": "none"}), "partial": None}

    def bar(value):
        last["bar"] = tuple(value)
        set_progress((*last["bar"], last["partial"]))

    def push(value):
        last["partial"] = value
        set_progress((*last["bar"], value))

    return bar, push
