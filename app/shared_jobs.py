"""Background jobs of the shared server (Celery on Redis), and computations that run once.

Shared mode (``cfg.server.mode == "shared"``) replaces the two ``DiskcacheManager`` s of
:mod:`app.jobs` with Dash's ``CeleryManager`` bound to the Redis of ``cfg.server.redis_url``:

* ``views`` jobs (a cell's grid, relevance maps, concepts) go to the Celery queue
  :data:`VIEWS_QUEUE`, served by ``cfg.server.job_workers`` worker processes;
* ``runs`` (a whole pipeline run) go to :data:`RUNS_QUEUE`, served by one process, so that a long
  run never holds up the views of the other analysts.

Two analysts asking for the same thing at once would start two jobs (each request carries a
nonce, see :mod:`app.jobs`). The wrappers here make the expensive part run once: they hold a lock
(:mod:`pipeline.locks`, files beside the artifacts) around the cached getters of
``pipeline.explain_cache`` and around a run, so the second job waits and then reads what the first
one wrote. They work in local mode too (several browser tabs).
"""
from __future__ import annotations

import functools
import logging
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from pipeline.config import Config
from pipeline.locks import Locks, each_once, once, run_locks

log = logging.getLogger("faxplainer.jobs")

VIEWS_QUEUE = "faxplainer-views"
RUNS_QUEUE = "faxplainer-runs"
EMBED_QUEUE = "faxplainer-embed"  # shards of a data set's embedding (app.celery_app embed)
JOB_EXPIRE_S = 24 * 3600


# -- Celery managers ------------------------------------------------------------------------------
def make_shared_managers(cfg: Config):
    """``app.jobs.Managers`` whose jobs run in Celery workers (``views`` memoised and salted)."""
    from .celery_app import celery_for
    from .jobs import Managers

    celery = celery_for(cfg)
    salt = cfg.fingerprint()
    views = queued_manager(celery, VIEWS_QUEUE, cache_by=[lambda: salt], expire=JOB_EXPIRE_S)
    runs = queued_manager(celery, RUNS_QUEUE)
    return Managers(views=views, runs=runs)


def queued_manager(celery, queue: str, cache_by=None, expire=None):
    """A ``dash.CeleryManager`` that sends its jobs to the Celery queue ``queue``."""
    from dash import CeleryManager

    class QueuedCeleryManager(CeleryManager):
        def call_job_fn(self, key, job_fn, args, context):
            task = job_fn.apply_async((key, self._make_progress_key(key), args, context),
                                      queue=queue)
            return task.task_id

    manager = QueuedCeleryManager(celery, cache_by=cache_by, expire=expire)
    manager.queue = queue
    return manager


# -- computations that run once ---------------------------------------------------------------------
def explain_once(get_maps: Callable, get_concepts: Callable, get_faithfulness: Callable
                 ) -> tuple[Callable, Callable, Callable]:
    """The three cached getters of ``pipeline.explain_cache``, each computing a thing only once.

    Same signatures as the originals. An image's maps, a cell's concepts and a run's deletion
    check are each computed under their own lock in ``<run>/.locks/``; a caller that finds the lock
    taken waits and then reads the cached answer.
    """

    @functools.wraps(get_maps)
    def maps_once(run_dir, image_indices, progress=None, **kwargs):
        locks = run_locks(run_dir)
        total = len(set(int(i) for i in image_indices))
        done_before = [0]

        def compute(subset):
            def step(done, _total, *rest):
                if progress is not None:
                    progress(done_before[0] + done, total)

            result = get_maps(run_dir, subset, progress=step, **kwargs)
            done_before[0] += len(subset)
            return result

        return each_once(locks, (int(i) for i in image_indices), compute, name=lambda i: f"maps-{i}")

    @functools.wraps(get_concepts)
    def concepts_once(run_dir, cell, progress=None, **kwargs):
        return once(run_locks(run_dir), f"concepts-{int(cell)}",
                    lambda: get_concepts(run_dir, cell, progress=progress, **kwargs))

    @functools.wraps(get_faithfulness)
    def faithfulness_once(run_dir, progress=None, **kwargs):
        return once(run_locks(run_dir), "faithfulness",
                    lambda: get_faithfulness(run_dir, progress=progress, **kwargs))

    return maps_once, concepts_once, faithfulness_once


def run_request_key(cfg: Config) -> str:
    """Identity of a request for a run: the data asked for and every setting the run depends on."""
    return "run-" + cfg.fingerprint("data", "encoder", "projection", "head", "cells")


@contextmanager
def run_lock(cfg: Config) -> Iterator[None]:
    """Hold the lock of ``cfg``'s run (under ``<cache>/locks``) for the ``with`` block.

    A second request for the same run waits here, then finds the finished run (the runner reuses
    an unchanged run at once) instead of computing it again.
    """
    with Locks(Path(cfg.cache_path) / "locks").hold(run_request_key(cfg)):
        yield


@contextmanager
def cell_lock(view_path: str | Path, cell: int) -> Iterator[None]:
    """Hold the lock of a cell's image grid (app side) for the ``with`` block."""
    with run_locks(view_path).hold(f"grid-{int(cell)}"):
        yield
