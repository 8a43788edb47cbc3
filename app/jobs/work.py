"""The work the app's jobs do, whichever manager runs them (``app.jobs.managers``): new runs and
explanations, each computed once when several jobs ask for the same thing at once.

Two analysts on one shared server (or two browser tabs) asking for the same maps, the same cell's
concepts or grid, or the same run start two jobs (each request carries a nonce, ``app.jobs.panel``).
The expensive part runs once: a run is computed under its lock (:func:`run_lock`), and the
explanations are derived results of the run (:mod:`pipeline.store.derived`) that hold their own
locks, so the second job waits and then reads what the first one wrote.
"""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from pipeline.config import Config, with_data
from pipeline.store.locks import Locks

from app.files.cell_grids import grids_with_run


def split_names(text: str | None) -> tuple[str, ...] | None:
    """``"bird, cat"`` -> ``("bird", "cat")``; empty -> None (= all)."""
    items = tuple(t.strip() for t in (text or "").replace(";", ",").split(",") if t.strip())
    return items or None


def new_run_config(cfg: Config, path_text: str | None, categories: str | None,
                   generators: str | None) -> Config:
    """``cfg`` for the data the "new run" panel names (``pipeline.config.with_data``): a folder
    or a CSV manifest typed by the user (empty keeps the configured data, or the demo set);
    ``categories`` / ``generators`` are comma-separated names to keep (empty = all).

    Raises
    ------
    ValueError
        The path does not exist or is neither a folder nor a ``.csv`` manifest.
    """
    return with_data(cfg, path_text, split_names(categories), split_names(generators))


def run_new(cfg: Config, progress: Callable[[str, int, int], None],
            started_by: str | None = None) -> str:
    """Run the whole pipeline on ``cfg`` (demo set when no data is configured); returns the run id.

    Two requests for the same run at once compute it once: the second waits for the first
    (:func:`run_lock`) and then reuses the finished run. ``started_by`` (the analyst who asked)
    is recorded in a new run's ``meta.json``; a reused run keeps its author. A run of at most
    ``server.grids_with_run_max_images`` images then gets every cell's grid (app.files.cell_grids).
    """
    from pipeline.runner import run_pipeline

    with run_lock(cfg):
        if not cfg.data.root and not cfg.data.manifest:
            from pipeline.data.demo.builtin import ensure_demo_config

            cfg = ensure_demo_config(cfg, log=lambda *_: None, progress=progress)
        run_id = run_pipeline(cfg, progress=progress, started_by=started_by).run_id
    grids_with_run(cfg, run_id, progress)  # a cell click is then a file read (app.files.cell_grids)
    return run_id


def score_folder(cfg: Config, run_dir: str | Path, path_text: str | None, name: str | None,
                 progress: Callable[[str, int, int], None]):
    """Score the folder or manifest ``path_text`` with the run in ``run_dir`` ("score a folder with
    this run"): ``pipeline.generalise.apply.apply_run``; returns the applied set (``AppliedStore``).

    In shared mode the path must lie under the server's data roots
    (``pipeline.data.roots.allowed_data_path``), checked here, in the job, since the browser can
    send anything. Two requests for the same set compute it once (``apply_run`` holds its lock).

    Raises
    ------
    ValueError
        No path, a path outside the data roots (``DataRootError``), a bad name, no usable image.
    """
    from pipeline.generalise.apply import apply_run
    from pipeline.data.roots import allowed_data_path

    path = allowed_data_path(cfg, path_text)
    if not path:
        raise ValueError("name the folder or CSV manifest to score")
    if not Path(path).exists():
        raise ValueError(f"{path} does not exist")
    return apply_run(run_dir, path, (name or "").strip() or None, progress)


def explain_functions() -> tuple[Callable, Callable, Callable]:
    """``(get_maps, get_concepts, get_faithfulness)`` of ``pipeline.explain.cache``.

    Each computes a thing once even when several jobs ask at once (each result holds its own lock:
    :mod:`pipeline.store.derived`). Looked up at call time (inside the job process), so the torch
    stack is never imported by the web process, and tests can substitute the functions.
    """
    from pipeline.explain import cache as explain_cache

    return explain_cache.get_maps, explain_cache.get_concepts, explain_cache.get_faithfulness


def atlas_functions() -> tuple[Callable, Callable, Callable]:
    """``(get_atlas, get_profiles, get_subject_masks)`` of ``pipeline.explain.atlas_jobs``, looked up
    in the job process (as :func:`explain_functions`): the dimension atlas, per-image profiles and
    subject masks, each kept in the run folder and computed once across jobs."""
    from pipeline.explain import atlas_jobs

    return atlas_jobs.get_atlas, atlas_jobs.get_profiles, atlas_jobs.get_subject_masks


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


def reencoded_run_config(cfg: Config, run_cfg: Config, spec: str) -> Config:
    """The configuration of a run's re-run with both classes re-encoded (``data.reencode`` =
    ``spec``, e.g. ``"jpeg:90:256"``): the run's own data and settings (``run_cfg``, from its
    meta.json), the app's folders and server settings (``cfg``). Run it with :func:`run_new`.

    Raises
    ------
    ValueError
        A bad spec (``pipeline.reencode_spec.ReencodeSpec.parse`` says why), or a run that names
        no data.
    """
    import dataclasses

    if not run_cfg.data.root and not run_cfg.data.manifest:
        raise ValueError("the run names no data (data.root / data.manifest): cannot re-run it")
    return dataclasses.replace(run_cfg, data=dataclasses.replace(run_cfg.data, reencode=spec),
                               server=cfg.server, runs_dir=cfg.runs_dir, cache_dir=cfg.cache_dir)
