"""Cost of the cross-generator matrix (issue 13: 10 generators x 10,000 cached images < 60 s, 2 cores).

Data: synthetic 256-d features standing in for a run's cached vision-only features (L2-normalised
rows, like the projection's output): ``--images`` images over ``--generators`` generators, half
real and half fake in each generator's folder (CNNDetection layout, each generator with its own
reals); a generator's fakes move along its own direction, which mixes a direction shared by its
family (two families) with one of its own, so the matrix has carry-over within a family and little
across. Splits: ``pipeline.data.splits.assign_splits`` (the default ``HeadConfig.holdout_fraction``
held out, stratified). The head settings are the default ``HeadConfig`` (what a run uses).

Timed, in one process:

* ``matrix``: ``pipeline.generalise.crossgen.cross_generator_matrix`` (2 x generators heads, fitted together
  by ``pipeline.generalise.stacked_heads.fit_stacked``, then scored on every generator's held-out images);
* ``baseline``: the straightforward implementation of the same matrix, on the same rows: one
  ``DistilledHead.fit`` per head, one after another (same settings, same validation parts), then
  the same scoring. Both run with 1 torch thread (the baseline's best setting on this 2-core
  machine; 2 threads made it several times slower under load);
* ``run head``: one ``DistilledHead.fit`` on all training rows, what a run does once, for scale.

It prints wall and CPU seconds, the ratio baseline / matrix, how far the two matrices differ (they
should agree: the stacked fit follows each head's own fit), and the load average (other jobs on a
shared machine inflate wall times; CPU seconds are steadier).

Usage: python bench/crossgen.py [--quick] [--generators 10] [--images 10000] [--no-baseline] [--workers 1]
       python -m bench.crossgen ...
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

if not __package__:  # started as `python bench/NAME.py`: the repository root on sys.path
    import _path  # noqa: F401

import numpy as np  # noqa: E402


def synthetic_run(n_generators: int, n_images: int, dim: int = 256, seed: int = 0):
    """(features, labels, generators, splits) of a synthetic run; see the module docstring."""
    from pipeline.config import HeadConfig
    from pipeline.data.splits import assign_splits
    rng = np.random.default_rng(seed)
    family = np.linalg.qr(rng.normal(size=(dim, 2)))[0].T  # two orthonormal family directions
    per = n_images // n_generators
    xs, ys, gens = [], [], []
    for g in range(n_generators):
        own = rng.normal(size=dim)
        direction = family[g % 2] + 0.7 * own / np.linalg.norm(own)
        y = (np.arange(per) >= per // 2).astype(int)
        xs.append(rng.normal(size=(per, dim)) + 2.5 * np.outer(y, direction / np.linalg.norm(direction)))
        ys.append(y)
        gens += [f"gen{g:02d}"] * per
    x = np.concatenate(xs)
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    y = np.concatenate(ys)
    splits = assign_splits(y, gens, [""] * len(y), [""] * len(y),
                           holdout_fraction=HeadConfig.holdout_fraction, seed=seed)
    return x, y, gens, splits


def timed(fn):
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - wall, time.process_time() - cpu


def baseline_matrix(x, y, gens, splits, head_config, seed=0):
    """The same matrix with one DistilledHead.fit per head, one after another."""
    from pipeline.generalise.crossgen import matrix_tables, plan_matrix
    from pipeline.model.head import DistilledHead
    plan = plan_matrix(y, gens, splits, seed)
    heads = [DistilledHead.from_config(head_config, seed=seed).fit(x[j.fit_rows], y[j.fit_rows],
                                                                   x[j.val_rows], y[j.val_rows])
             for j in plan.jobs]
    return matrix_tables(plan, heads, x)


def run_head(x, y, splits, head_config, seed=0):
    """One head on all training rows, as a run fits it."""
    from pipeline.data.splits import TRAIN, validation_mask
    from pipeline.model.head import DistilledHead
    train = np.flatnonzero(np.asarray(splits) == TRAIN)
    val = validation_mask(y, train, head_config.validation_fraction, seed)
    fit, held = train[~val], train[val]
    return DistilledHead.from_config(head_config, seed=seed).fit(x[fit], y[fit], x[held], y[held])


def differences(a: dict, b: dict) -> dict:
    """Largest |AUC| and |accuracy| difference over all cells, and cells whose misclassified lists differ."""
    auc = acc = 0.0
    lists = cells = 0
    for table in ("one", "all_but_one"):
        for g, row in a[table].items():
            for t, cell in row.items():
                other = b[table][g][t]
                cells += 1
                auc = max(auc, abs(cell["auc"] - other["auc"]))
                acc = max(acc, abs(cell["accuracy"] - other["accuracy"]))
                lists += cell["misclassified"] != other["misclassified"]
    return {"max_abs_auc": auc, "max_abs_accuracy": acc, "cells_with_other_misclassified": lists,
            "cells": cells}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--generators", type=int, default=10)
    parser.add_argument("--images", type=int, default=10_000, help="images in all (not per generator)")
    parser.add_argument("--quick", action="store_true", help="3 generators x 1,500 images (CI speed)")
    parser.add_argument("--no-baseline", action="store_true", help="skip the one-head-at-a-time loop")
    parser.add_argument("--workers", type=int, default=1, help="threads training the matrix's heads")
    args = parser.parse_args(argv)
    if args.quick:
        args.generators, args.images = 3, 1500

    from pipeline.config import HeadConfig
    from pipeline.generalise.crossgen import cross_generator_matrix
    from pipeline.model.torch_threads import torch_threads
    head_config = HeadConfig()
    print(f"load average before: {os.getloadavg()}")
    x, y, gens, splits = synthetic_run(args.generators, args.images)
    print(f"synthetic run: {len(y)} images, {args.generators} generators, {x.shape[1]}-d features, "
          f"{int((np.asarray(splits) == 'heldout').sum())} held out; head: {head_config}")

    matrix, wall, cpu = timed(lambda: cross_generator_matrix(x, y, gens, splits, head_config,
                                                             workers=args.workers))
    epochs = [h["epochs"] for table in matrix["heads"].values() for h in table.values()]
    print(f"matrix   : {wall:7.1f} s wall, {cpu:7.1f} s CPU  ({len(epochs)} heads, {args.workers} worker(s), epochs "
          f"{min(epochs)}-{max(epochs)}, target < 60 s wall)")
    diag = [matrix["one"][g][g]["auc"] for g in matrix["generators"]]
    unseen = [matrix["all_but_one"][g][g]["auc"] for g in matrix["generators"]]
    print(f"           in-distribution AUC {np.mean(diag):.3f}, left-out generator AUC {np.mean(unseen):.3f}")
    with torch_threads(1):
        _, head_wall, head_cpu = timed(lambda: run_head(x, y, splits, head_config))
    print(f"run head : {head_wall:7.1f} s wall, {head_cpu:7.1f} s CPU  (one head on all training rows); "
          f"matrix / run head = {wall / head_wall:.1f}x")
    if not args.no_baseline:
        with torch_threads(1):
            base, base_wall, base_cpu = timed(lambda: baseline_matrix(x, y, gens, splits, head_config))
        print(f"baseline : {base_wall:7.1f} s wall, {base_cpu:7.1f} s CPU  (one DistilledHead.fit per head)")
        print(f"ratio baseline / matrix: {base_wall / wall:.2f}x wall, {base_cpu / cpu:.2f}x CPU")
        print(f"agreement with the baseline: {differences(matrix, base)}")
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
