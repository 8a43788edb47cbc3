"""What it costs to prepare every cell's image grid of a run at once (issue 14: precompute the
grids with the run, or make them on demand on a queue and worker of their own?).

For each cell of the run, from a cold cache folder (no thumbnail, no grid): the thumbnails of its
images, the similarity arrangement and the sprite, exactly as the app's grid job makes them
(``app.files.artifacts.prepare_grid``), timed per step; then the disk they take. Against that baseline,
measured in the same run: reading a prepared grid (what a cell click costs once it exists) and a
cell's on-demand job (the largest cell, and the median one).

Usage::

    python bench/grids.py                         # the demo run (stand-in encoder; built if missing)
    python bench/grids.py --run /path/runs/RUN    # any run, e.g. bench/run_100k.py's
    python bench/grids.py --run ... --cells 200   # a sample of cells (times scale to all of them)
    python bench/grids.py --quick                 # 12 cells of the demo run

The figures depend on the machine's load (print ``uptime`` beside them): on a shared 2-core machine
they are pessimistic.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

if not __package__:  # started as `python bench/grids.py`: the repository root on sys.path
    import _path  # noqa: F401

from bench._options import parse_args  # noqa: E402


def demo_run_dir() -> Path:
    """The demo run with the stand-in encoder (built and run when missing)."""
    from pipeline.config import load_config
    from pipeline.data.demo.builtin import ensure_demo_config
    from pipeline.runner import run_pipeline

    cfg = ensure_demo_config(load_config("configs/standin.yaml"))
    return run_pipeline(cfg).path


def folder_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e6 if path.exists() else 0.0


def prepare_all(view, cache: Path, cells: list[int]) -> tuple[dict[str, float], list[tuple[int, int, float]]]:
    """Prepare the grids of ``cells``: (seconds per step, [(cell, images, seconds)])."""
    from app.files import artifacts

    steps: dict[str, float] = defaultdict(float)
    per_cell = []
    for cell in cells:
        marks: list[tuple[str, float]] = []

        def progress(stage, done, total):
            if not marks or marks[-1][0] != stage:
                marks.append((stage, time.perf_counter()))

        t0 = time.perf_counter()
        artifacts.prepare_grid(view, cache, cell, progress)
        t1 = time.perf_counter()
        ends = [t for _, t in marks[1:]] + [t1]
        for (stage, start), end in zip(marks, ends):
            steps[stage] += end - start
        per_cell.append((cell, len(view.cell_members(cell)), t1 - t0))
    return dict(steps), per_cell


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", type=Path, default=None, help="run folder (default: the demo run)")
    ap.add_argument("--cells", type=int, default=0, help="time this many cells (0 = all), "
                    "spread over all sizes; totals are scaled to every cell")
    ap.add_argument("--work", type=Path, default=None, help="cold cache folder (default: a temporary one)")
    args = parse_args(ap, quick={"cells": 12}, argv=argv)

    import numpy as np

    from app.files import artifacts
    from app.state.context import AppContext
    from pipeline.config import from_dict

    run_dir = (args.run or demo_run_dir()).resolve()
    work = args.work or Path(tempfile.mkdtemp(prefix="faxplainer-grids-"))
    cfg = from_dict({"runs_dir": str(run_dir.parent), "cache_dir": str(work)})
    ctx = AppContext(cfg)
    view = ctx.run(run_dir.name)
    if view is None:
        raise SystemExit(f"{run_dir} cannot be opened: {ctx.run_error(run_dir.name)}")
    cache = ctx.app_cache(view)
    all_cells = sorted(view.cell_ids(), key=lambda c: len(view.cell_members(c)))
    cells = all_cells
    if args.cells and args.cells < len(all_cells):  # evenly over the sizes, largest included
        picks = np.unique(np.linspace(0, len(all_cells) - 1, args.cells).round().astype(int))
        cells = [all_cells[i] for i in picks]
    n_images = sum(len(view.cell_members(c)) for c in cells)
    load = os.getloadavg()
    try:
        t0 = time.perf_counter()
        steps, per_cell = prepare_all(view, cache, cells)
        total = time.perf_counter() - t0
        # the baseline: a click on a prepared cell reads its grid file
        t0 = time.perf_counter()
        for cell in cells:
            assert artifacts.read_grid(cache, cell) is not None
        read_ms = 1000 * (time.perf_counter() - t0) / len(cells)
        thumbs_mb = folder_mb(Path(work) / "thumbnails")
        app_mb = folder_mb(cache)
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    scale = view.n_images / max(n_images, 1)
    sizes = [n for _, n, _ in per_cell]
    seconds = [s for _, _, s in per_cell]
    largest = max(per_cell, key=lambda c: c[1])
    median_cell = sorted(per_cell, key=lambda c: c[1])[len(per_cell) // 2]
    print(f"run {view.run_id}: {view.n_images:,} images in {len(all_cells):,} cells "
          f"(cell sizes {min(sizes)}-{max(sizes)}, median {int(statistics.median(sizes))}); "
          f"timed {len(cells):,} cells, {n_images:,} images; {os.cpu_count()} CPU cores, load "
          f"average {load[0]:.1f} at the start, {os.getloadavg()[0]:.1f} at the end")
    print(f"prepare the timed cells' grids: {total:.1f} s = " +
          ", ".join(f"{k} {v:.1f} s" for k, v in sorted(steps.items(), key=lambda kv: -kv[1])))
    print(f"  per 1,000 images {1000 * total / max(n_images, 1):.1f} s; for every cell of the run "
          f"(scaled by images) about {total * scale:.0f} s; disk: thumbnails {thumbs_mb * scale:.0f} MB, "
          f"grids + sprites {app_mb * scale:.0f} MB")
    print(f"  one cell on demand: median cell ({median_cell[1]} images) {median_cell[2]:.2f} s, "
          f"largest ({largest[1]} images) {largest[2]:.2f} s, slowest {max(seconds):.2f} s")
    print(f"baseline, a prepared cell's grid read: {read_ms:.2f} ms -> on-demand median cell "
          f"{1000 * median_cell[2] / read_ms:.0f}x, all grids at once {1000 * total * scale / read_ms:.0f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
