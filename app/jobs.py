"""Background jobs: Dash's two background-callback managers and the adapters that show progress.

As Dash keeps its managers apart from the work they run, this module only says *where* jobs run;
the work itself is in :mod:`app.work`, and a view's job panel in :mod:`app.jobpanel`.

* Local mode: two ``DiskcacheManager`` s under ``<cache>/dash-jobs/``, one for the views (a cell's
  grid, relevance maps, concepts) and one for new runs. The jobs run in a separate process (the app
  stays usable); "cancel" ends that process.
* Shared mode (``server.mode: shared``): ``CeleryManager`` s on the Redis of ``server.redis_url``,
  sending view jobs and runs to their own Celery queues (:mod:`app.celery_app`), so that a long run
  never holds up the views.

No result is memoised by Dash (no ``cache_by``): each view request carries a nonce, and the files
on disk (``app.artifacts``, ``pipeline.explain_cache``) are the cache, so a deleted or damaged
artifact is computed again instead of being reported ready from a remembered answer, and Dash's
result store only holds a result until its page has read it. Heavy imports (torch, the
explainability stack) happen inside the jobs, never in the web process.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable

from pipeline.config import Config


@dataclasses.dataclass(frozen=True)
class Managers:
    views: object  # manager of the view jobs (grids, maps, concepts)
    runs: object  # manager of new runs


def make_managers(cfg: Config) -> Managers:
    """The managers of ``cfg``'s mode (module docstring)."""
    if cfg.server.mode == "shared":
        from .celery_app import RUNS_QUEUE, VIEWS_QUEUE, celery_for

        celery = celery_for(cfg)
        return Managers(views=queued_manager(celery, VIEWS_QUEUE), runs=queued_manager(celery, RUNS_QUEUE))
    import diskcache
    from dash import DiskcacheManager

    root = Path(cfg.cache_path) / "dash-jobs"
    return Managers(views=DiskcacheManager(diskcache.Cache(str(root / "views"))),
                    runs=DiskcacheManager(diskcache.Cache(str(root / "runs"))))


def queued_manager(celery, queue: str):
    """A ``dash.CeleryManager`` that sends its jobs to the Celery queue ``queue``."""
    from dash import CeleryManager

    class QueuedCeleryManager(CeleryManager):
        def call_job_fn(self, key, job_fn, args, context):
            task = job_fn.apply_async((key, self._make_progress_key(key), args, context),
                                      queue=queue)
            return task.task_id

    manager = QueuedCeleryManager(celery)
    manager.queue = queue
    return manager


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
