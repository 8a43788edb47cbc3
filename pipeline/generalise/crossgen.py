"""Cross-generator matrix: does what a head learned on some generators carry over to the others?

The usual generalisation tables of fake-image detection (UniversalFakeDetect, Ojha et al., CVPR
2023: a probe trained on ProGAN fakes only, tested on every other generator; leave-one-generator-out
tables in the same literature), computed from a run's cached vision-only features:

* ``"one"``: for every generator G, a head trained on G's training images, tested on every
  generator's held-out images (the diagonal is G's in-distribution figure);
* ``"all_but_one"``: for every generator G, a head trained on all the other generators' training
  images, tested on every generator's held-out images (column G of row G is the unseen case).

Every head is the run's kind of head (``pipeline.model.head.DistilledHead``, 256 -> 16 orthogonal ->
logit) with the run's head configuration and its early stopping on a validation part of the
training rows (``HeadConfig.validation_fraction``, stratified, as the run's head); they are trained
together by ``pipeline.generalise.stacked_heads.fit_stacked``, which follows each head's own
``DistilledHead.fit``.

Reals, as in ``pipeline.model.metrics.per_generator_metrics``: a generator's images are its fakes together
with the reals of its own folder (CNNDetection layout ``<gen>/0_real``) or, where it has none in a
split, the reals that carry no generator (e.g. a manifest naming generators for fakes only) of that
split. A train set over several generators takes the union. The result says which was used.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

import numpy as np

from pipeline.config import HeadConfig
from pipeline.model.head import DistilledHead
from pipeline.model.metrics import binary_metrics
from pipeline.data.splits import HELDOUT, TRAIN, validation_mask
from pipeline.generalise.stacked_heads import fit_stacked
from pipeline.model.torch_threads import torch_threads

TABLES = ("one", "all_but_one")


def cross_generator_matrix(features: np.ndarray, labels, generators, splits, head_config: HeadConfig,
                           progress=None, seed: int | None = None, workers: int = 1) -> dict:
    """Train-on-one and leave-one-out matrices of held-out AUC and accuracy.

    Parameters
    ----------
    features : (N, D) cached vision-only features of a run (``features.npy``).
    labels : (N,) 0 real / 1 fake.  generators : (N,) generator name per row ("" = none).
    splits : (N,) ``"train"`` / ``"heldout"`` per row (``records.csv``'s ``split``).
    head_config : the run's head settings (``dim``, ``ortho_weight``, ``lr``, ``weight_decay``,
        ``batch_size``, ``max_epochs``, ``patience``; ``holdout_fraction`` is not used, the splits
        are given).
    progress : optional ``callable(done, total)``.
    seed : seeds the validation parts, the heads' initialisation and shuffles; None = the head
        config's seed (what the run used).
    workers : threads training the heads (``fit_stacked``); the figures do not depend on it. 1 by
        default: a second one gained nothing on the loaded 2-core development machine.

    Returns
    -------
    dict, JSON-able: ``generators``; ``one`` and ``all_but_one``, each ``{train: {test: cell}}``
    where a cell is ``{auc, ap, accuracy, real_accuracy, fake_accuracy, n_test, n_real, n_fake,
    n_misclassified, misclassified}`` (``misclassified``: row indices of the held-out rows the head
    gets wrong; undefined figures are None), a row is None when its head could not be trained and a
    cell None when its generator has no held-out image; ``heads`` (per table and row: rows used,
    epochs, best validation loss); ``skipped`` (why a row is None); ``reals`` and ``real_source``
    (which reals each generator's sets use); ``notes``; ``head`` (its kind and settings);
    ``seconds``.

    Raises
    ------
    ValueError
        Inputs of different lengths, labels other than 0/1, splits other than train/heldout, fewer
        than two generators with fakes, or no head that can be trained.
    """
    start = time.perf_counter()
    x = np.asarray(features)
    if x.ndim != 2 or len(x) != len(labels):
        raise ValueError(f"features must be a 2-D array with one row per image ({len(labels)}); "
                         f"got shape {x.shape}")
    seed = head_config.seed if seed is None else seed
    plan = plan_matrix(labels, generators, splits, seed)
    # 1 thread: the steps are small ops, and OpenMP barriers made 2 threads ~8x slower on a busy
    # 2-core machine (20 heads on 10,000 images: 50.7 s against 6.6 s, load average ~6)
    with torch_threads(1):
        heads = fit_stacked(DistilledHead.from_config(head_config, seed=seed), x, plan.labels,
                            [(job.fit_rows, job.val_rows) for job in plan.jobs], progress, workers)
    return {**matrix_tables(plan, heads, x), "skipped": plan.skipped, "reals": plan.reals,
            "real_source": plan.real_source, "notes": plan.notes,
            "head": {"kind": "DistilledHead", "trainer": "pipeline.generalise.stacked_heads.fit_stacked",
                     "config": {**dataclasses.asdict(head_config), "seed": seed},
                     "validation_fraction": HeadConfig.validation_fraction},
            "seconds": time.perf_counter() - start}


@dataclass(frozen=True)
class HeadJob:
    """One head of the matrix: its table, its row's generator, and the rows it is fitted on and
    stops early on."""
    table: str
    generator: str
    fit_rows: np.ndarray
    val_rows: np.ndarray


@dataclass
class MatrixPlan:
    """Which rows train and which test every head of the matrix (see ``plan_matrix``)."""
    generators: list[str]
    labels: np.ndarray
    jobs: list[HeadJob]
    tests: dict[str, np.ndarray]  # generator -> its held-out rows (fakes and their reals)
    skipped: dict[str, dict[str, str]]  # table -> generator -> why its head cannot be trained
    real_source: dict[str, dict[str, str]]  # generator -> split -> "own" | "shared" | "none"
    reals: str
    notes: list[str]


def plan_matrix(labels, generators, splits, seed: int = 0) -> MatrixPlan:
    """Train sets (with their validation parts) and test sets of both tables.

    Raises
    ------
    ValueError
        Inputs of different lengths, labels other than 0/1, splits other than train/heldout, fewer
        than two generators with fakes, or no head that can be trained.
    """
    y, gens, split = _checked_inputs(labels, generators, splits)
    names = sorted({g for g, label in zip(gens, y) if label == 1 and g})
    if len(names) < 2:
        raise ValueError(f"a cross-generator matrix needs fakes of at least 2 generators; found "
                         f"{len(names)} ({', '.join(names) or 'no generator names'})")
    pools = {s: {g: _real_pool(g, y, gens, split == s) for g in names} for s in (TRAIN, HELDOUT)}
    jobs, skipped = [], {table: {} for table in TABLES}
    for table in TABLES:
        for g in names:
            members = [g] if table == "one" else [m for m in names if m != g]
            rows = _rows(members, y, gens, split == TRAIN, pools[TRAIN])
            problem = _untrainable(rows, y, members, table)
            if problem:
                skipped[table][g] = problem
            else:
                val = validation_mask(y, rows, HeadConfig.validation_fraction, seed)
                jobs.append(HeadJob(table, g, rows[~val], rows[val]))
    if not jobs:
        raise ValueError("no head of the cross-generator matrix can be trained: "
                         + "; ".join(skipped["one"].values()))
    tests = {g: _rows([g], y, gens, split == HELDOUT, pools[HELDOUT]) for g in names}
    return MatrixPlan(names, y, jobs, tests, skipped,
                      {g: {s: pools[s][g][1] for s in (TRAIN, HELDOUT)} for g in names},
                      _reals_summary(pools),
                      _unused_reals_note(y, gens, names) + _test_set_notes(tests, y))


def matrix_tables(plan: MatrixPlan, heads: list[DistilledHead], features: np.ndarray) -> dict:
    """``generators``, the two tables and ``heads`` (rows used, epochs) from the fitted heads of
    ``plan.jobs`` (in that order)."""
    y = plan.labels
    held = np.unique(np.concatenate(list(plan.tests.values())))
    tables = {table: {g: None for g in plan.generators} for table in TABLES}
    info = {table: {} for table in TABLES}
    for job, head in zip(plan.jobs, heads):
        prob = np.zeros(len(y))
        prob[held] = head.predict_proba(features[held])
        tables[job.table][job.generator] = {t: score_cell(y, prob, rows) if len(rows) else None
                                            for t, rows in plan.tests.items()}
        info[job.table][job.generator] = {"n_fit": int(len(job.fit_rows)), "n_val": int(len(job.val_rows)),
                                          "epochs": head.epochs_, "best_val_loss": head.best_val_loss_}
    return {"generators": plan.generators, **tables, "heads": info}


def score_cell(y: np.ndarray, prob: np.ndarray, rows: np.ndarray) -> dict:
    """Figures of one (train, test) pair on the test ``rows``; ``misclassified`` lists the rows whose
    prediction (``prob > 0.5`` = fake) differs from the label."""
    m = binary_metrics(y[rows], prob[rows])
    wrong = rows[(prob[rows] > 0.5).astype(int) != y[rows]]
    cell = {k: (None if np.isnan(m[k]) else m[k]) for k in ("auc", "ap", "accuracy", "real_accuracy",
                                                              "fake_accuracy")}
    return {**cell, "ci95": m.get("ci95"), "n_test": m["n"], "n_real": m["n_real"], "n_fake": m["n_fake"],
            "n_misclassified": int(len(wrong)), "misclassified": [int(i) for i in wrong]}


def _checked_inputs(labels, generators, splits):
    y = np.asarray(labels)
    gens = np.array(["" if g is None else str(g) for g in generators], dtype=object)
    split = np.array([str(s) for s in splits], dtype=object)
    lengths = {"labels": len(y), "generators": len(gens), "splits": len(split)}
    if len(set(lengths.values())) != 1:
        raise ValueError(f"labels, generators and splits must have one entry per image; "
                         f"got {lengths}")
    if not np.isin(y, (0, 1)).all():
        raise ValueError(f"labels must be 0 (real) or 1 (fake); found {sorted(set(y.tolist()) - {0, 1})[:5]}")
    odd = sorted(set(split.tolist()) - {TRAIN, HELDOUT})
    if odd:
        raise ValueError(f"splits must be '{TRAIN}' or '{HELDOUT}'; found {odd[:5]}")
    return y.astype(int), gens, split


def _real_pool(g: str, y, gens, in_split) -> tuple[np.ndarray, str]:
    """Reals that go with generator ``g`` in one split: its own, else those without a generator."""
    own = (y == 0) & (gens == g) & in_split
    if own.any():
        return own, "own"
    shared = (y == 0) & (gens == "") & in_split
    return shared, "shared" if shared.any() else "none"


def _rows(members, y, gens, in_split, pools) -> np.ndarray:
    """Row indices of the fakes of ``members`` in a split together with their reals."""
    mask = np.zeros(len(y), dtype=bool)
    for g in members:
        mask |= ((y == 1) & (gens == g) & in_split) | pools[g][0]
    return np.flatnonzero(mask)


def _untrainable(rows, y, members, table) -> str:
    """Why a head cannot be trained on ``rows`` ("" when it can). Early stopping needs a fit and a
    validation row of each class."""
    what = f"'{members[0]}'" if table == "one" else f"all generators but the one left out ({', '.join(members)})"
    n_fake, n_real = int((y[rows] == 1).sum()), int((y[rows] == 0).sum())
    if n_fake == 0:
        return f"{what}: no training fakes (all held out)"
    if n_real == 0:
        return (f"{what}: no training reals (neither reals in the generator's own folder nor reals "
                f"without a generator are in the training split)")
    if min(n_fake, n_real) < 2:
        return (f"{what}: {n_fake} training fake(s) and {n_real} training real(s); at least 2 of each "
                f"are needed to hold out a validation part for early stopping")
    return ""


def _test_set_notes(tests: dict, y) -> list[str]:
    notes = []
    for g, rows in tests.items():
        if not len(rows):
            notes.append(f"'{g}' has no held-out images: its column is empty")
        elif len(np.unique(y[rows])) < 2:
            only = "fakes" if y[rows][0] == 1 else "reals"
            notes.append(f"the held-out images of '{g}' are all {only}: AUC and AP are undefined (None) "
                         f"in its column, accuracy is the {only[:-1]} accuracy")
    return notes


def _unused_reals_note(y, gens, names) -> list[str]:
    """Reals that belong to no generator's set (a generator name that has no fakes)."""
    unused = (y == 0) & (gens != "") & ~np.isin(gens, names)
    if not unused.any():
        return []
    return [f"{int(unused.sum())} real image(s) carry a generator without fakes "
            f"({', '.join(sorted(set(gens[unused].tolist()))[:5])}) and are in no set"]


def _reals_summary(pools: dict) -> str:
    kinds = {kind for split in pools.values() for _, kind in split.values()}
    if kinds == {"own"}:
        return "own: each generator's sets use the reals of its own folder"
    if kinds == {"shared"}:
        return "shared: every set uses all reals of its split (reals carry no generator)"
    return "mixed: see real_source (own = the generator's folder, shared = reals without a generator)"
