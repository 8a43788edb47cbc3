"""Background jobs: the Dash background-callback managers and the wrappers around pipeline stages.

Two ``DiskcacheManager`` s under ``<cache>/dash-jobs/``:

* ``views``: preparing a cell's grid, relevance maps, concepts. Results are memoised by Dash, keyed
  by the callback's arguments and ``cache_by`` = the config fingerprint, so a config change never
  reuses an old answer. Each request carries a nonce: the files on disk, not the memo, say what is
  ready, and a deleted cache is recomputed instead of being reported ready from memory.
* ``runs``: starting a new run. Not memoised: the data under a path may have changed since the last
  run (the runner itself reuses an unchanged run).

The jobs run in a separate process (the app stays usable); "cancel" ends that process. Heavy
imports (torch, the explainability stack) happen inside the jobs, never in the web process.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable

from pipeline.config import Config

JOB_EXPIRE_S = 24 * 3600


@dataclasses.dataclass(frozen=True)
class Managers:
    views: object  # DiskcacheManager for the view preparations (memoised, salted)
    runs: object  # DiskcacheManager for new runs (not memoised)


def make_managers(cfg: Config) -> Managers:
    """Background-callback managers storing their state under ``cfg.cache_path / 'dash-jobs'``.

    In shared mode (``cfg.server.mode == "shared"``) Celery managers on Redis instead
    (:func:`app.shared_jobs.make_shared_managers`).
    """
    if cfg.server.mode == "shared":
        from .shared_jobs import make_shared_managers

        return make_shared_managers(cfg)
    import diskcache
    from dash import DiskcacheManager

    root = Path(cfg.cache_path) / "dash-jobs"
    salt = cfg.fingerprint()
    views = DiskcacheManager(diskcache.Cache(str(root / "views")), cache_by=[lambda: salt],
                             expire=JOB_EXPIRE_S)
    runs = DiskcacheManager(diskcache.Cache(str(root / "runs")))
    return Managers(views=views, runs=runs)


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


def run_unavailable(request: dict):
    """The message a view job shows when the run it was asked about cannot be opened."""
    from dash import html

    return html.Span(f"Run {request['run']} cannot be opened.", className="fx-error")


def stage_progress(set_progress: Callable) -> Callable[[str, int, int], None]:
    """Adapt the pipeline's ``progress(stage, done, total)`` to a Dash progress bar (value, label)."""
    def progress(stage: str, done: int, total: int) -> None:
        set_progress((str(int(100 * done / max(total, 1))), f"{stage}: {done}/{total}"))
    return progress


def explain_functions() -> tuple[Callable, Callable, Callable]:
    """``(get_maps, get_concepts, get_faithfulness)`` of ``pipeline.explain_cache``.

    Looked up at call time (inside the job process), so the torch stack is never imported by the
    web process, and tests can substitute the functions. Each computes a thing once even when
    several jobs ask for it at the same time (:func:`app.shared_jobs.explain_once`).
    """
    from pipeline import explain_cache

    from .shared_jobs import explain_once

    return explain_once(explain_cache.get_maps, explain_cache.get_concepts,
                        explain_cache.get_faithfulness)


def _split_list(text: str | None) -> tuple[str, ...] | None:
    items = tuple(t.strip() for t in (text or "").replace(";", ",").split(",") if t.strip())
    return items or None


def new_run_config(cfg: Config, path_text: str | None, categories: str | None,
                   generators: str | None) -> Config:
    """``cfg`` with its data section pointed at a folder or a CSV manifest typed by the user.

    An empty path keeps the configured data (or the demo set when none is configured).
    ``categories`` / ``generators``: comma-separated names to keep (empty = all).

    Raises
    ------
    ValueError
        The path does not exist or is neither a folder nor a ``.csv`` manifest.
    """
    data = cfg.data
    text = (path_text or "").strip()
    if text:
        path = Path(text).expanduser()
        if not path.exists():
            raise ValueError(f"{path} does not exist")
        if path.is_dir():
            data = dataclasses.replace(data, root=str(path.resolve()), manifest=None)
        elif path.suffix.lower() == ".csv":
            data = dataclasses.replace(data, root=None, manifest=str(path.resolve()))
        else:
            raise ValueError(f"{path} is neither a folder (0_real/1_fake layout) nor a .csv manifest")
    data = dataclasses.replace(data, categories=_split_list(categories),
                               generators=_split_list(generators))
    return dataclasses.replace(cfg, data=data)


def run_new(cfg: Config, progress: Callable[[str, int, int], None]) -> str:
    """Run the whole pipeline on ``cfg`` (demo set when no data is configured); returns the run id.

    Two requests for the same run at once compute it once: the second waits for the first
    (:func:`app.shared_jobs.run_lock`) and then reuses the finished run.
    """
    from pipeline.runner import run_pipeline

    from .shared_jobs import run_lock

    with run_lock(cfg):
        if not cfg.data.root and not cfg.data.manifest:
            from pipeline.demo import ensure_demo_config

            cfg = ensure_demo_config(cfg, log=lambda *_: None, progress=progress)
        return run_pipeline(cfg, progress=progress).run_id
