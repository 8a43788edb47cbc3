"""Train / held-out split of a data set's images, seeded and stratified.

* A manifest that names a split for every row (the demo set does, by source photo) is obeyed.
* Records with a ``source`` (several crops of one photo) are split by source, so that no scene is
  on both sides of the split; sources are shuffled within each (label, generator) stratum.
* Otherwise rows are split stratified by (label, generator).

The head's early stopping uses a validation part carved out of the training split, so the held-out
metrics are never used to choose the model.
"""
from __future__ import annotations

from collections import defaultdict

import numpy as np

TRAIN, HELDOUT = "train", "heldout"
_SPLIT_WORDS = {"train": TRAIN, "training": TRAIN, "heldout": HELDOUT, "held-out": HELDOUT,
                "test": HELDOUT, "val": HELDOUT, "validation": HELDOUT}


def assign_splits(labels: np.ndarray, generators: list[str], sources: list[str], preset: list[str],
                  holdout_fraction: float, seed: int) -> np.ndarray:
    """Return an array of ``"train"`` / ``"heldout"`` per row."""
    n = len(labels)
    mapped = [_SPLIT_WORDS.get(p.strip().lower(), "") for p in preset]
    if n and all(mapped) and {TRAIN, HELDOUT} <= set(mapped):
        return np.array(mapped)
    rng = np.random.default_rng(seed)
    groups = [s if s else f"#row{i}" for i, s in enumerate(sources)]
    # stratum of a group = the (label, generator) of its first row
    strata: dict[tuple, list[str]] = defaultdict(list)
    seen = set()
    for i, g in enumerate(groups):
        if g not in seen:
            seen.add(g)
            strata[(int(labels[i]), generators[i])].append(g)
    held = set()
    for key in sorted(strata):
        gs = strata[key]
        order = rng.permutation(len(gs))
        k = int(round(len(gs) * holdout_fraction))
        k = min(max(k, 1 if len(gs) >= 2 else 0), len(gs) - 1) if len(gs) >= 2 else 0
        held.update(gs[j] for j in order[:k])
    return np.array([HELDOUT if g in held else TRAIN for g in groups])


def validation_mask(labels: np.ndarray, train_rows: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Boolean mask over ``train_rows`` selecting a stratified validation part for early stopping."""
    rng = np.random.default_rng(seed + 1)
    mask = np.zeros(len(train_rows), dtype=bool)
    for label in np.unique(labels[train_rows]):
        where = np.flatnonzero(labels[train_rows] == label)
        k = max(1, int(round(len(where) * fraction)))
        mask[rng.choice(where, size=min(k, len(where) - 1) if len(where) > 1 else 0, replace=False)] = True
    return mask
