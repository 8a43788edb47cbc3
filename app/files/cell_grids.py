"""Every cell's image grid of a run, made with the run, so that a cell click is a file read.

A cell's grid (thumbnails, similarity arrangement, sprite: :func:`app.files.artifacts.prepare_grid`) is
otherwise made the first time someone opens the cell, by a job on the grid queue. Measured
(``bench/grids.py``, README "Scale"): all grids of the 800-image demo run cost about 21 s on a
loaded 2-core machine, a few percent of making the run, while a 100,000-image run's would cost
longer than the run itself and fill hundreds of MB with grids of cells nobody opens. So runs up to
``server.grids_with_run_max_images`` images get all their grids when the app makes them (the
new-run job, after the pipeline: :func:`grids_with_run`); larger runs, and runs made elsewhere,
get a cell's grid when it is first opened (or all of them with ``python -m app.files.cell_grids RUN``).

Cells go largest first (the slowest to make on demand); each under the cell's lock, so a click on
a cell being made waits for it and reads it instead of making it twice; a cell that fails is
logged and left to be made on demand.
"""
from __future__ import annotations

import argparse
import logging
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from pipeline.config import Config, load_config
from pipeline.store.locks import run_locks

from app.files import artifacts
from app.state.context import AppContext
from app.state.imagesets import slug

log = logging.getLogger("faxplainer.app")

Progress = Callable[[str, int, int], None]


@contextmanager
def cell_lock(view_path: str | Path, cell) -> Iterator[None]:
    """Hold the lock of a cell's (or an image set's) image grid for the ``with`` block (in
    ``<run>/.locks/``)."""
    with run_locks(view_path).hold(f"grid-{slug(cell)}"):
        yield


def prepare_every_grid(ctx: AppContext, run_id: str, progress: Progress | None = None) -> dict:
    """Make the grid of every cell of ``run_id`` not made yet; returns ``{"cells", "made",
    "failed", "seconds"}``.

    Raises
    ------
    ValueError
        ``run_id`` is not a run that can be opened.
    """
    view = ctx.run(run_id)
    if view is None:
        raise ValueError(ctx.run_error(run_id) or f"run {run_id} cannot be opened")
    cache = ctx.app_cache(view)
    cells = sorted(view.cell_ids(), key=lambda c: -len(view.cell_members(c)))
    t0, made, failed = time.perf_counter(), 0, 0
    for done, cell in enumerate(cells):
        if progress:
            progress("grids", done, len(cells))
        if artifacts.read_grid(cache, cell) is not None:
            continue
        try:
            with cell_lock(view.path, cell):
                if artifacts.read_grid(cache, cell) is None:
                    artifacts.prepare_grid(view, cache, cell)
                    made += 1
        except Exception as e:  # this cell's grid is made when it is opened; the others go on
            failed += 1
            log.warning("grid of cell %s of run %s not made: %s: %s", cell, run_id, type(e).__name__, e)
    if progress:
        progress("grids", len(cells), len(cells))
    return {"cells": len(cells), "made": made, "failed": failed,
            "seconds": round(time.perf_counter() - t0, 2)}


def grids_with_run(cfg: Config, run_id: str, progress: Progress | None = None) -> dict | None:
    """:func:`prepare_every_grid` for a run just made, when it has at most
    ``cfg.server.grids_with_run_max_images`` images; None (nothing done) for a larger run."""
    ctx = AppContext(cfg)
    view = ctx.run(run_id)
    if view is None or view.n_images > int(cfg.server.grids_with_run_max_images):
        return None
    return prepare_every_grid(ctx, run_id, progress)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app.files.cell_grids",
                                     description="make every cell's image grid of a run now")
    parser.add_argument("run", help="run id (a folder of the runs folder)")
    parser.add_argument("--config", default=None)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        summary = prepare_every_grid(AppContext(load_config(args.config, args.set)), args.run,
                                     lambda _s, done, total: print(f"\rgrids {done}/{total}", end=""))
    except ValueError as e:
        print(f"error: {e}")
        return 2
    print(f"\n{summary['made']} of {summary['cells']} grids made in {summary['seconds']} s"
          + (f", {summary['failed']} failed (see the log)" if summary["failed"] else ""))
    return 1 if summary["failed"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
