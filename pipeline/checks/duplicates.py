"""Duplicates and leakage between the labels and across the train / held-out split.

* **Exact duplicates** by content hash (the sha256 of the file's bytes that ``pipeline.model.embed`` already
  computes as its cache key, ``EmbedResult.keys``):
  the same bytes under both labels is a *conflict*: every copy is excluded from training and
  metrics by default, and listed; the same bytes (one label) in train and held-out is *leakage*:
  the held-out copies move to the training side, so the held-out figures are about unseen files.
* **Near-duplicates** by cosine similarity of the embeddings between each held-out image and every
  training image (a re-save, a resize, a slight crop of a training image). They are not removed;
  held-out metrics are reported with and without them (:func:`metrics_with_and_without`).

The similarity search runs in blocks of held-out rows against the normalised training matrix, so
its memory is O(block x n_train), never N^2; a bfloat16 pass finds the candidates and float32
decides them (see :func:`near_duplicates`).
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from pipeline.model.metrics import binary_metrics

TRAIN, HELDOUT = "train", "heldout"
DEFAULT_NEAR_THRESHOLD = 0.97


def _key_text(key: str | bytes | None) -> str:
    return key.decode("ascii") if isinstance(key, bytes) else (key or "")


# ---------------------------------------------------------------------------------------------
# Exact duplicates
# ---------------------------------------------------------------------------------------------
@dataclass
class ExactDuplicates:
    """Groups of identical files and what to do about them (row masks over the inputs)."""

    conflicts: list[dict]  # {"key", "rows", "labels"}: one file under both labels
    cross_split: list[dict]  # {"key", "train_rows", "heldout_rows"}: one file (one label) on both sides
    exclude: np.ndarray  # bool (N,): every copy of a conflict, left out of training and metrics
    move_to_train: np.ndarray  # bool (N,): held-out copies of a file that is also in training
    n_groups: int  # groups of two or more identical files
    n_copies: int  # rows beyond the first of each group

    def apply(self, splits: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """(new splits with the leaked held-out copies moved to ``"train"``, keep mask without the
        conflicts)."""
        new = np.asarray(splits, dtype=object).copy()
        new[self.move_to_train] = TRAIN
        return new, ~self.exclude

    def to_dict(self, paths: Sequence[str] | None = None, max_listed: int = 200) -> dict:
        """JSON-able summary; ``paths`` (one per row) are listed beside the rows when given."""
        def named(rows):
            return [{"row": int(r), "path": paths[r]} if paths is not None else {"row": int(r)} for r in rows]

        return {"n_groups": self.n_groups, "n_copies": self.n_copies,
                "n_conflicts": len(self.conflicts), "n_excluded": int(self.exclude.sum()),
                "n_cross_split": len(self.cross_split), "n_moved_to_train": int(self.move_to_train.sum()),
                "conflicts": [{"key": c["key"], "labels": c["labels"], "files": named(c["rows"])}
                              for c in self.conflicts[:max_listed]],
                "cross_split": [{"key": c["key"], "train": named(c["train_rows"]), "heldout": named(c["heldout_rows"])}
                                for c in self.cross_split[:max_listed]]}


def exact_duplicates(keys: Sequence[str | bytes | None], labels: Sequence[int],
                     splits: Sequence[str] | None = None, *, exclude_conflicts: bool = True) -> ExactDuplicates:
    """Find identical files by content hash.

    Parameters
    ----------
    keys : content hash per row (hex ``str`` or ASCII ``bytes``); "" / None = unknown, never a duplicate.
    labels : 0 real / 1 fake per row.
    splits : ``"train"`` / ``"heldout"`` per row; None = no leakage check.
    exclude_conflicts : mark every copy of a file found under both labels in ``exclude``.
    """
    y = np.asarray(labels, dtype=int)
    n = len(y)
    if len(keys) != n or (splits is not None and len(splits) != n):
        raise ValueError(f"keys ({len(keys)}), labels ({n}) and splits must have one entry per row")
    rows_of: dict[str, list[int]] = defaultdict(list)
    for i, k in enumerate(keys):
        k = _key_text(k)
        if k:
            rows_of[k].append(i)
    exclude = np.zeros(n, dtype=bool)
    move = np.zeros(n, dtype=bool)
    conflicts, cross = [], []
    groups = [(k, rows) for k, rows in rows_of.items() if len(rows) > 1]
    for key, rows in groups:
        labels_here = sorted({int(y[r]) for r in rows})
        if len(labels_here) == 2:
            conflicts.append({"key": key, "rows": rows, "labels": [int(y[r]) for r in rows]})
            if exclude_conflicts:
                exclude[rows] = True
            continue
        if splits is not None:
            train = [r for r in rows if splits[r] == TRAIN]
            held = [r for r in rows if splits[r] == HELDOUT]
            if train and held:
                cross.append({"key": key, "train_rows": train, "heldout_rows": held})
                move[held] = True
    return ExactDuplicates(conflicts=conflicts, cross_split=cross, exclude=exclude, move_to_train=move,
                           n_groups=len(groups), n_copies=sum(len(r) - 1 for _, r in groups))


# ---------------------------------------------------------------------------------------------
# Near-duplicates
# ---------------------------------------------------------------------------------------------
@dataclass
class NearDuplicates:
    """Held-out images whose embedding is at least ``threshold`` cosine-similar to a training image."""

    threshold: float
    mask: np.ndarray  # bool (N,): held-out rows with a training near-duplicate
    nearest_row: np.ndarray  # int (N,): most similar training row of each held-out row (-1 elsewhere)
    nearest_similarity: np.ndarray  # float32 (N,): its cosine similarity (NaN elsewhere)
    n_neighbours: np.ndarray  # int (N,): training rows at or above the threshold

    @property
    def pairs(self) -> list[tuple[int, int, float]]:
        """(held-out row, nearest training row, similarity) per flagged row, most similar first."""
        rows = np.flatnonzero(self.mask)
        rows = rows[np.argsort(-self.nearest_similarity[rows], kind="stable")]
        return [(int(r), int(self.nearest_row[r]), float(self.nearest_similarity[r])) for r in rows]

    def to_dict(self, labels: Sequence[int] | None = None, paths: Sequence[str] | None = None,
                max_listed: int = 200) -> dict:
        """JSON-able summary: counts and the most similar pairs (with labels / paths when given)."""
        listed = []
        for h, t, sim in self.pairs[:max_listed]:
            item = {"heldout_row": h, "train_row": t, "similarity": round(sim, 5)}
            if labels is not None:
                item.update(heldout_label=int(labels[h]), train_label=int(labels[t]))
            if paths is not None:
                item.update(heldout_path=paths[h], train_path=paths[t])
            listed.append(item)
        out = {"threshold": self.threshold, "n_heldout_with_near_duplicate": int(self.mask.sum()), "pairs": listed}
        if labels is not None:
            y = np.asarray(labels)
            rows = np.flatnonzero(self.mask)
            out["n_other_label"] = int((y[rows] != y[self.nearest_row[rows]]).sum())
        return out


def near_duplicates(embeddings: np.ndarray, splits: Sequence[str], *, threshold: float = DEFAULT_NEAR_THRESHOLD,
                    block_bytes: int = 64 << 20) -> NearDuplicates:
    """For each held-out row, its most similar training row by cosine similarity.

    The search multiplies blocks of held-out rows with the training matrix in bfloat16 (about 4x
    faster than float32 on CPUs with bf16 units), keeps every pair within ``_BF16_MARGIN`` of the
    threshold as a candidate and recomputes the candidates in float32. For unit vectors the bf16
    error of a dot product is below 2 * 2**-8 < ``_BF16_MARGIN``, so the mask, the neighbour counts
    and the nearest row of every flagged row are exact; ``nearest_similarity`` of a row below the
    threshold may be off by up to that error.

    Parameters
    ----------
    embeddings : (N, D) array; rows that are not finite (failed images) take no part.
    splits : ``"train"`` / ``"heldout"`` per row.
    threshold : cosine similarity at or above which a pair counts as a near-duplicate.
    block_bytes : memory of one block of similarities (held-out rows x training rows, float32).
    """
    emb = np.asarray(embeddings)
    split_arr = np.asarray(splits, dtype=object)
    n = len(emb)
    if len(split_arr) != n:
        raise ValueError(f"embeddings ({n}) and splits ({len(split_arr)}) must have one entry per row")
    finite = np.isfinite(emb).all(axis=1) if n else np.zeros(0, dtype=bool)
    train = np.flatnonzero((split_arr == TRAIN) & finite)
    held = np.flatnonzero((split_arr == HELDOUT) & finite)
    nearest_row = np.full(n, -1, dtype=np.int64)
    nearest_sim = np.full(n, np.nan, dtype=np.float32)
    count = np.zeros(n, dtype=np.int64)
    if len(train) and len(held):
        t32 = _unit_rows(emb[train])
        t16 = torch.from_numpy(t32).to(torch.bfloat16)
        block = max(1, block_bytes // (4 * len(train)))
        with torch.inference_mode():
            for start in range(0, len(held), block):
                rows = held[start:start + block]
                q32 = _unit_rows(emb[rows])
                approx = (torch.from_numpy(q32).to(torch.bfloat16) @ t16.T).float()
                best_sim, best = approx.max(dim=1)
                nearest_row[rows] = train[best.numpy()]
                nearest_sim[rows] = best_sim.numpy()
                cand = torch.nonzero(approx >= threshold - _BF16_MARGIN).numpy()
                if len(cand):
                    exact = np.einsum("ij,ij->i", q32[cand[:, 0]], t32[cand[:, 1]])
                    _exact_update(rows, cand, exact, train, threshold, nearest_row, nearest_sim, count)
    mask = count > 0
    return NearDuplicates(threshold=threshold, mask=mask, nearest_row=nearest_row,
                          nearest_similarity=nearest_sim, n_neighbours=count)


_BF16_MARGIN = 0.01


def _exact_update(rows, cand, exact, train, threshold, nearest_row, nearest_sim, count) -> None:
    """Counts and nearest rows from the float32 similarities of the candidate pairs of one block."""
    local = cand[:, 0]
    np.add.at(count, rows[local[exact >= threshold]], 1)
    order = np.lexsort((-exact, local))  # per held-out row, the most similar candidate first
    first = order[np.r_[True, local[order][1:] != local[order][:-1]]]
    nearest_row[rows[local[first]]] = train[cand[first, 1]]
    nearest_sim[rows[local[first]]] = exact[first]


def _unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length, float32 (torch: threaded, several times numpy's norm here)."""
    t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    return torch.nn.functional.normalize(t, dim=1, eps=1e-12).numpy()


def metrics_with_and_without(labels: Sequence[int], prob: Sequence[float], heldout: np.ndarray,
                             near_mask: np.ndarray, all_metrics: dict | None = None) -> dict:
    """Held-out metrics on every held-out image and without the near-duplicates of training images.

    ``all_metrics``: ``binary_metrics`` of every held-out image when the caller has them (the run's
    head metrics: the same figures and intervals), so their bootstrap is not drawn twice; with no
    near-duplicate the two sets are one and share their figures."""
    y, p = np.asarray(labels), np.asarray(prob, dtype=np.float64)
    heldout, near_mask = np.asarray(heldout, dtype=bool), np.asarray(near_mask, dtype=bool)
    clean = heldout & ~near_mask
    every = all_metrics if all_metrics is not None else binary_metrics(y[heldout], p[heldout])
    n_removed = int((heldout & near_mask).sum())
    return {"all": every,
            "without_near_duplicates": binary_metrics(y[clean], p[clean]) if n_removed else every,
            "n_removed": n_removed}
