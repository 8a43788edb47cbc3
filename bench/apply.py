"""Cost of generalisation checks (issue 13): scoring new images with a run, and the run's matrix.

**apply** (target: 1,000 images whose embeddings are cached in under 5 s). ``--images`` generated
256-px JPEGs (real: smooth blobs; fake: a 4-px grid, the test suite's images) in the CNNDetection
layout over two generators, with the tiny encoder (``configs/test.yaml``). Timed, in one process:

* ``run``: ``pipeline.runner.run_pipeline`` on the folder: the baseline, a full run on the same
  images (it embeds them, which fills the embedding cache, then fits the projection and head);
* ``apply``: ``pipeline.generalise.apply.apply_run`` of that run on the same folder, every embedding cached
  (scan, file hashes and cache lookup, scoring, cells and positions, metrics, writing the set),
  with the run's models not yet loaded in the process (``pipeline.model.run_models.clear_cache``); it must
  not load the encoder at all;
* ``reapply``: the same call again (unchanged data: the existing set is returned).

The tiny encoder's embeddings are 32-d, the stand-in's 1536-d: the cache lookup then reads 6 MB
more per 1,000 images and the projection is larger; both stay well under a second (the README
gives a measured stand-in figure, hardfaces on the faces run).

**matrix** (target: 10 generators x 10,000 cached images in under 60 s). A run folder whose
``features.npy`` and ``records.csv`` hold ``bench.crossgen.synthetic_run``'s features (written by
``pipeline.store.run_store.write_run``), then ``pipeline.generalise.run_matrix.run_matrix`` timed: reading the run,
the matrix (``pipeline.generalise.crossgen``), sealing it into the run; then again (kept: read back).
Baseline in the same run: ``bench.crossgen.baseline_matrix`` (one head fitted after another) on
the same rows (``--no-baseline`` skips it; ``python bench/crossgen.py`` times the matrix function
alone).

Wall times on a machine shared with other jobs are noisy: the load average is printed with them.

Usage: python bench/apply.py [--quick] [--images 1000] [--generators 10] [--matrix-images 10000]
                             [--skip-apply] [--skip-matrix] [--no-baseline] [--work DIR]
       python -m bench.apply ...
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

if not __package__:  # started as `python bench/NAME.py`: the repository root on sys.path
    import _path  # noqa: F401

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402


def load() -> str:
    return "load average " + ", ".join(f"{v:.1f}" for v in os.getloadavg())


def write_images(root: Path, n: int, seed: int = 0) -> Path:
    """``n`` 256-px JPEGs, half real and half fake, over generators ``gan_a`` / ``gan_b``."""
    from tests.integration.test_pipeline_tiny import _image  # the suite's separable images
    rng = np.random.default_rng(seed)
    for i in range(n):
        label = i % 2
        folder = root / ("gan_a" if (i // 2) % 2 else "gan_b") / ("1_fake" if label else "0_real")
        folder.mkdir(parents=True, exist_ok=True)
        _image(rng, bool(label), size=256).save(folder / f"{i:05d}.jpg", quality=92)
    return root


class StageClock:
    """``progress(stage, done, total)`` that remembers when each stage first reported."""

    def __init__(self):
        self.first: dict[str, float] = {}
        self.t0 = time.perf_counter()

    def __call__(self, stage, done, total):
        self.first.setdefault(stage, time.perf_counter())

    def stages(self, end: float) -> dict[str, float]:
        marks = sorted((t, s) for s, t in self.first.items())
        ends = [t for t, _ in marks[1:]] + [end]
        return {s: e - t for (t, s), e in zip(marks, ends)}


def bench_apply(work: Path, n_images: int) -> None:
    from pipeline.generalise.apply import apply_run
    from pipeline.config import REPO_ROOT, load_config
    from pipeline.model.run_models import clear_cache, load_run_models
    from pipeline.runner import run_pipeline
    from pipeline.model.torch_threads import torch_threads

    data = write_images(work / "data", n_images)
    cfg = load_config(REPO_ROOT / "configs" / "test.yaml",
                      [f"data.root={data}", f"runs_dir={work / 'runs'}", f"cache_dir={work / 'cache'}"])
    print(f"apply: {n_images} generated 256-px JPEGs, tiny encoder; {load()}")
    with torch_threads(1):  # the tiny models: more threads only add barrier waits on 2 cores
        t0 = time.perf_counter()
        run = run_pipeline(cfg)
        t_run = time.perf_counter() - t0
        clear_cache()
        clock = StageClock()
        t0 = time.perf_counter()
        applied = apply_run(run.path, data, name="bench", progress=clock)
        t_apply = time.perf_counter() - t0
        stages = clock.stages(t0 + t_apply)
        t0 = time.perf_counter()
        again = apply_run(run.path, data, name="bench")
        t_again = time.perf_counter() - t0
    meta = applied.read_meta()
    assert meta["data"]["n_images"] == n_images and again.read_meta()["created"] == meta["created"]
    assert not load_run_models(run.path, lazy_encoder=True).encoder.is_loaded, "apply loaded the encoder"
    print(f"  run (baseline) : {t_run:7.2f} s  (embeds every image, fits projection and head)")
    print(f"  apply, cached  : {t_apply:7.2f} s  target < 5 s for 1,000 images; images embedded: "
          f"{meta['data']['n_embedded']}")
    print("                   " + ", ".join(f"{s} {t:.2f} s" for s, t in stages.items()))
    print(f"  reapply        : {t_again:7.2f} s  (unchanged data: the existing set)")
    print(f"  ratio run / apply: {t_run / t_apply:.1f}x; apply accuracy {meta['metrics']['accuracy']:.3f} "
          f"(run held-out {run.read_meta()['metrics']['head']['accuracy']:.3f}); {load()}")


def matrix_run(folder: Path, n_generators: int, n_images: int):
    """A run folder holding ``bench.crossgen.synthetic_run``'s features, labels, generators, splits."""
    from bench.crossgen import synthetic_run
    from pipeline.config import Config, to_dict
    from pipeline.store.run_store import write_run

    x, y, gens, splits = synthetic_run(n_generators, n_images)
    records = [{"id": f"{i:06d}", "path": f"{g}/{'1_fake' if label else '0_real'}/{i:06d}.png",
                "label": int(label), "generator": g, "split": str(s)}
               for i, (label, g, s) in enumerate(zip(y, gens, splits))]
    meta = {"run_id": folder.name, "status": "complete", "config": to_dict(Config()),
            "data": {"root": str(folder.parent), "n_images": len(y)}}
    return write_run(folder, meta=meta, records=records, cells={"n_cells": 0, "cells": []},
                     arrays={"features": x}), (x, y, gens, splits)


def bench_matrix(work: Path, n_generators: int, n_images: int, baseline: bool) -> None:
    from bench.crossgen import baseline_matrix, differences
    from pipeline.config import Config
    from pipeline.generalise.run_matrix import run_matrix
    from pipeline.model.torch_threads import torch_threads

    run, (x, y, gens, splits) = matrix_run(work / "runs" / "matrix-bench", n_generators, n_images)
    print(f"matrix: run folder of {n_images} images x {x.shape[1]}-d features, {n_generators} generators; "
          f"{load()}")
    t0, c0 = time.perf_counter(), time.process_time()
    matrix = run_matrix(run.path)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    t0 = time.perf_counter()
    kept = run_matrix(run.path)
    t_kept = time.perf_counter() - t0
    assert kept == matrix
    print(f"  run_matrix     : {wall:7.1f} s wall, {cpu:6.1f} s CPU  ({2 * n_generators} heads; target < 60 s)")
    print(f"  kept, read back: {t_kept:7.3f} s")
    if baseline:
        with torch_threads(1):
            t0 = time.perf_counter()
            base = baseline_matrix(x, y, gens, splits, Config().head)
            t_base = time.perf_counter() - t0
        print(f"  baseline       : {t_base:7.1f} s wall  (one DistilledHead.fit per head)")
        print(f"  ratio baseline / run_matrix: {t_base / wall:.1f}x; agreement: {differences(matrix, base)}")
    print(f"  {load()}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=1000, help="images to apply")
    parser.add_argument("--generators", type=int, default=10)
    parser.add_argument("--matrix-images", type=int, default=10_000)
    parser.add_argument("--quick", action="store_true", help="200 images to apply; matrix of 3 x 1,500")
    parser.add_argument("--skip-apply", action="store_true")
    parser.add_argument("--skip-matrix", action="store_true")
    parser.add_argument("--no-baseline", action="store_true", help="skip the one-head-at-a-time matrix")
    parser.add_argument("--work", type=Path, help="work folder (default: a temporary one, removed)")
    args = parser.parse_args(argv)
    if args.quick:
        args.images, args.generators, args.matrix_images = 200, 3, 1500
    import logging
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="bench-apply-") as tmp:
        work = args.work or Path(tmp)
        if not args.skip_apply:
            bench_apply(work / "apply", args.images)
        if not args.skip_matrix:
            bench_matrix(work / "matrix", args.generators, args.matrix_images, not args.no_baseline)


if __name__ == "__main__":
    main()
