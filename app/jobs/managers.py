"""Background jobs: Dash's two background-callback managers and the adapters that show progress.

As Dash keeps its managers apart from the work they run, this module only says *where* jobs run;
the work itself is in :mod:`app.jobs.work`, and a view's job panel in :mod:`app.jobs.panel`.

* Local mode: two ``DiskcacheManager`` s under ``<cache>/dash-jobs/``, one for the views (a cell's
  grid, relevance maps, concepts) and one for new runs. The jobs run in a separate process (the app
  stays usable); "cancel" ends that process.
* Shared mode (``server.mode: shared``): ``CeleryManager`` s on the Redis of ``server.redis_url``,
  sending each kind of job to its own Celery queue (:mod:`app.jobs.celery_app`) with workers of its own:
  a cell's grid (cheap, seconds at most) never waits behind anyone's relevance maps or concepts
  (heavy, seconds to minutes), and a long run never holds up either. On the heavy queue an analyst
  has at most one waiting job per view (a newer request replaces the older, :mod:`app.jobs.fair_queue`);
  on every queue a job that has not started says in its progress line how many jobs are ahead.

No result is memoised by Dash (no ``cache_by``): each view request carries a nonce, and the files
on disk (``app.files.artifacts``, ``pipeline.explain.cache``) are the cache, so a deleted or damaged
artifact is computed again instead of being reported ready from a remembered answer, and Dash's
result store only holds a result until its page has read it. No web request imports torch or the
explainability stack: the jobs do, or, in local mode, ``python -m app`` once before it serves
(:func:`preload_job_stack`, ``server.preload_job_stack``), so that its forked jobs start loaded.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Callable

from pipeline.config import Config


@dataclasses.dataclass(frozen=True)
class Managers:
    views: object  # manager of the heavy view jobs (relevance maps, concepts, deletion check)
    runs: object  # manager of new runs
    grids: object  # manager of a cell's grid (local mode: the views' manager)


USER_HEADER = "faxplainer_user"  # the Celery message header naming who asked for a job
FINISHED = ("SUCCESS", "FAILURE")  # Celery states of a job that has ended


def make_managers(cfg: Config) -> Managers:
    """The managers of ``cfg``'s mode (module docstring)."""
    if cfg.server.mode == "shared":
        from app.jobs.celery_app import GRIDS_QUEUE, RUNS_QUEUE, VIEWS_QUEUE, celery_for
        from app.state.roles import current_identity

        celery = celery_for(cfg)

        def who() -> str | None:
            return current_identity(cfg)[0]

        return Managers(views=queued_manager(celery, VIEWS_QUEUE, who, one_per_user=True),
                        runs=queued_manager(celery, RUNS_QUEUE, who),
                        grids=queued_manager(celery, GRIDS_QUEUE, who))
    import diskcache
    from dash import DiskcacheManager

    root = Path(cfg.cache_path) / "dash-jobs"
    views = DiskcacheManager(diskcache.Cache(str(root / "views")))  # one process per job: no queue
    return Managers(views=views, runs=DiskcacheManager(diskcache.Cache(str(root / "runs"))),
                    grids=views)


def preload_job_stack() -> float:
    """Import what the local jobs import (torch, timm, scikit-learn, scikit-image, the pipeline),
    in the web process, before it serves; returns the seconds it took.

    Local jobs are forked from the web process (``DiskcacheManager``: one process per job), so each
    job then starts with these modules loaded instead of importing them again: 5-10 s of every
    selection's maps on 2 cores (``bench/first_insight.py``, step 0). The price is the web
    process's memory (about 0.8 GB more, shared with its jobs until they write to it). Nothing here
    runs a torch operation, so no thread pool exists yet to be inherited by a forked job.
    """
    import time

    t0 = time.perf_counter()
    import skimage.segmentation  # noqa: F401  (what pipeline.explain.concepts imports when it runs)
    import sklearn.cluster  # noqa: F401

    import pipeline.explain.cache  # noqa: F401  (and with it pipeline.model.run_models: torch, timm)
    import pipeline.runner  # noqa: F401
    return time.perf_counter() - t0


def queued_manager(celery, queue: str, who: Callable[[], str | None] = lambda: None,
                   one_per_user: bool = False):
    """A ``dash.CeleryManager`` that sends its jobs to the Celery queue ``queue``.

    ``who()`` names the user asking (called in the web request that submits the job); the name
    travels with the job (:data:`USER_HEADER`, read back by :func:`job_user`). A job that waits
    reports its place in the queue as its progress (:class:`app.jobs.fair_queue.QueueBook`); with
    ``one_per_user``, a user's newer job of a view replaces their older one still waiting, and
    :meth:`replaced_by` tells the job so when it starts.
    """
    import uuid

    import redis
    from dash import CeleryManager

    from app.jobs.fair_queue import QueueBook

    class QueuedCeleryManager(CeleryManager):
        def __init__(self, celery_app):
            super().__init__(celery_app)
            self.queue = queue
            self._book = None

        @property
        def book(self) -> QueueBook:
            if self._book is None:  # connected on first use, in the process that uses it
                self._book = QueueBook(redis.Redis.from_url(self.handle.conf.broker_url), queue)
            return self._book

        def call_job_fn(self, key, job_fn, args, context):
            task_id, user = uuid.uuid4().hex, who()
            self.book.submitted(task_id, key, user=user, view=job_fn.name, replace=one_per_user)
            task = job_fn.apply_async((key, self._make_progress_key(key), args, context),
                                      queue=queue, task_id=task_id, headers={USER_HEADER: user})
            return task.task_id

        def get_result(self, key, job):
            result = super().get_result(key, job)
            if result is self.UNDEFINED and job and self.get_task(job).state in FINISHED:
                # Dash reads the result, then asks whether the job still runs: a job that wrote
                # its result and ended between the two would count as cancelled and its answer
                # be lost. It writes the result before it ends, so read once more.
                result = super().get_result(key, job)
            return result

        def get_updated_props(self, key):
            # Dash's own deletes the *result* here (not the props), which loses an answer written
            # between its two reads; the props expire with the other results (result_expires).
            updated = self.handle.backend.get(self._make_set_props_key(key))
            return json.loads(updated) if updated else {}

        def get_progress(self, key):
            progress = super().get_progress(key)
            if progress is not None:
                return progress
            waiting = self.book.waiting_label(key)  # not started: its place in the queue
            return None if waiting is None else waiting_progress(waiting)

        def replaced_by(self) -> str | None:
            """Inside a job: the newer job of the same user and view that replaced it, or None."""
            from celery import current_task

            return self.book.replaced_by(current_task.request.id) if current_task else None

    return QueuedCeleryManager(celery)


def job_user(cfg: Config) -> str | None:
    """Who asked for the job running now: inside a Celery job the user its web request named
    (:func:`queued_manager`), inside a web request the logged-in user; local mode: None."""
    if cfg.server.mode != "shared":
        return None
    from celery import current_task

    if current_task and current_task.request.id:
        return getattr(current_task.request, USER_HEADER, None)
    from app.state.roles import current_identity

    return current_identity(cfg)[0]


def waiting_progress(words: str) -> list:
    """Progress values of a job still in the queue: an empty bar, ``words`` as its label, shown.

    A :func:`view_job` has these three progress outputs first (a panel's partial results, if any,
    fourth: left empty), a new run's job the first two; Dash reads as many values as the callback
    has progress outputs, so the list is longer than any of them.
    """
    return ["0", words, SHOWN] + [None] * 5


SHOWN, HIDDEN = {"display": "block"}, {"display": "none"}


def view_job(manager, progress_bar: str, progress_label: str, progress_wrap: str) -> dict:
    """Options of a view's background callback, with its progress bar.

    The bar is shown by the job's own progress reports (:func:`view_progress`) and hidden when a
    job starts and ends, so a job with nothing to do (the empty request that cancels an older
    job) never flashes the older job's last label.
    """
    from dash import Output

    return dict(background=True, manager=manager, interval=300,
                progress=[Output(progress_bar, "value"), Output(progress_label, "children"),
                          Output(progress_wrap, "style")],
                progress_default=["0", "", HIDDEN],
                running=[(Output(progress_wrap, "style"), HIDDEN, HIDDEN)],
                prevent_initial_call=True)


def view_progress(set_progress: Callable) -> Callable[[str, int, int], None]:
    """:func:`stage_progress` for a :func:`view_job`: each report also shows the bar."""
    return stage_progress(lambda value: set_progress((*value, SHOWN)))


def stage_progress(set_progress: Callable) -> Callable[[str, int, int], None]:
    """Adapt the pipeline's ``progress(stage, done, total)`` to a Dash progress bar (value, label)."""
    def progress(stage: str, done: int, total: int) -> None:
        set_progress((str(int(100 * done / max(total, 1))), f"{stage}: {done}/{total}"))
    return progress


def panel_state(cancelled: bool, cancelled_words: str) -> tuple:
    """(message, progress label) of a job panel the moment Start (``cancelled`` False) or Cancel
    is pressed: the previous job's words go (a cancelled job returns nothing, a starting one has
    not reported yet)."""
    from dash import html

    if cancelled:
        return html.Span(cancelled_words, className="fx-muted"), ""
    return "", "starting…"
