"""Celery worker entry of the shared server: ``celery -A app.shared.worker:celery worker -Q QUEUE``.

A worker builds the Dash app of ``$FAXPLAINER_CONFIG`` (default ``configs/shared.yaml``) so that
its background callbacks are registered as Celery tasks, plus the app's own tasks
(:func:`app.jobs.celery_app.register_tasks`). ``scripts/serve_shared.sh`` / ``python -m app.shared.stack``
start the workers with the right queues and concurrency.

The worker's main process only imports Dash and the app: torch, CUDA and the encoders are first
touched inside the forked pool processes, when a job needs them, and ``pipeline.model.run_models`` keeps the
loaded models per process, so each worker process loads an encoder once, not per request.
"""
from __future__ import annotations

import logging
import os
import threading

from pipeline.config import Config

from app.jobs.celery_app import celery_for, config_from_environment, register_tasks
from app.main import create_app

log = logging.getLogger("faxplainer.celery")


def worker_app(cfg: Config):
    """Build the Dash app for ``cfg`` (registering its jobs as tasks); return its Celery app."""
    if cfg.server.mode != "shared":
        raise ValueError(f"the Celery worker needs a shared-mode config (server.mode: shared), "
                         f"got server.mode={cfg.server.mode!r}")
    create_app(cfg, os.environ.get("FAXPLAINER_RUN") or None, serve_http=False)
    _connect_signals()
    celery = celery_for(cfg)
    register_tasks(celery)
    return celery


def _import_explain_stack() -> None:
    try:
        import pipeline.explain.cache  # noqa: F401  (torch, the encoders, the relevance code)
        import pipeline.runner  # noqa: F401
    except Exception as e:  # the job that needs them will report the problem
        log.warning("could not pre-import the explain stack: %s", e)


def warm_up_pool_process(**_kwargs) -> None:
    """In each new pool process (after the fork): import torch and the explain code in the
    background, so the first job does not wait for it. Models are loaded by the first job that
    needs them and then kept (``pipeline.model.run_models``). Not in a worker started with
    ``FAXPLAINER_WARM_UP=0`` (the grids worker, whose jobs never touch torch)."""
    if os.environ.get("FAXPLAINER_WARM_UP", "1") == "0":
        return
    threading.Thread(target=_import_explain_stack, name="faxplainer-warm-up", daemon=True).start()


def _connect_signals() -> None:
    from celery.signals import worker_process_init

    worker_process_init.connect(warm_up_pool_process, weak=False)


def __getattr__(name: str):
    # ``celery -A app.shared.worker:celery`` builds the worker's app on first access, not at import.
    if name == "celery":
        return worker_app(config_from_environment())
    raise AttributeError(name)
