"""Cells of the representation view and their 2-D placement.

Images are grouped into cells by Euclidean distance in the 16-d distilled space (k-means; the
mini-batch variant beyond 20k images so a million points fit in minutes). Cells are placed so that
the decision is readable: ``x`` is the cell's mean logit squashed by ``asinh`` (the boundary is the
line ``x = 0``, real on the left, fake on the right); ``y`` is the cell centroid's coordinate on the
main axis of variation *orthogonal* to the classifier direction, so vertical distance shows how
differently cells on the same side look to the head. Glyph radii grow with the square root of the
count (area ~ count) and a few relaxation steps push overlapping glyphs apart without moving any
cell across the boundary.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree
from sklearn.cluster import KMeans, MiniBatchKMeans

from pipeline.model.head import sigmoid


def default_n_cells(n_images: int) -> int:
    """About 2*sqrt(N): ~60 cells for 1k images, ~630 for 100k, 2k for 1M."""
    return int(np.clip(round(2 * np.sqrt(n_images)), min(8, n_images), 5000))


def cluster(z: np.ndarray, n_cells: int, seed: int = 0) -> np.ndarray:
    """Cell index per image (cells numbered by size, largest first, none empty)."""
    n_cells = max(1, min(n_cells, len(z)))
    z = np.ascontiguousarray(z, dtype=np.float32)
    if len(z) <= 20_000:
        labels = KMeans(n_clusters=n_cells, n_init=3, random_state=seed).fit_predict(z)
    else:
        km = MiniBatchKMeans(n_clusters=n_cells, batch_size=8192, n_init=1, max_iter=50,
                             random_state=seed, reassignment_ratio=0.001)
        km.fit(z[np.random.default_rng(seed).permutation(len(z))[:min(len(z), 300_000)]])
        labels = km.predict(z)
    counts = np.bincount(labels, minlength=n_cells)
    order = np.argsort(-counts, kind="stable")
    remap = np.full(n_cells, -1)
    kept = order[counts[order] > 0]
    remap[kept] = np.arange(len(kept))
    return remap[labels]


def _relax(xy: np.ndarray, r: np.ndarray, iterations: int = 40) -> np.ndarray:
    """Push overlapping discs apart; a disc never crosses x = 0 (its side of the boundary)."""
    xy = xy.copy()
    side = np.sign(xy[:, 0])
    rmax = float(r.max()) if len(r) else 0.0
    for _ in range(iterations):
        pairs = cKDTree(xy).query_pairs(2 * rmax, output_type="ndarray")
        if len(pairs) == 0:
            break
        i, j = pairs[:, 0], pairs[:, 1]
        d = xy[j] - xy[i]
        dist = np.linalg.norm(d, axis=1)
        overlap = r[i] + r[j] - dist
        hit = overlap > 0
        if not hit.any():
            break
        i, j, d, dist, overlap = i[hit], j[hit], d[hit], dist[hit], overlap[hit]
        direction = np.where(dist[:, None] > 1e-9, d / np.maximum(dist, 1e-9)[:, None],
                             np.array([0.0, 1.0]))
        shift = np.zeros_like(xy)
        np.add.at(shift, i, -0.5 * overlap[:, None] * direction)
        np.add.at(shift, j, 0.5 * overlap[:, None] * direction)
        xy += shift
        crossed = (np.sign(xy[:, 0]) != side) & (side != 0)
        xy[crossed, 0] = side[crossed] * 1e-3
    return xy


def build_cells(z: np.ndarray, logit: np.ndarray, label: np.ndarray, classifier_weight: np.ndarray,
                n_cells: int | None = None, seed: int = 0) -> tuple[np.ndarray, dict]:
    """Group images into cells and describe each cell for the representation view.

    Returns ``(cell_of_image, cells)`` where ``cells`` is the JSON-able ``cells.json`` content:
    ``{"n_cells", "boundary_x", "x_label", "y_label", "cells": [{"id", "x", "y", "r", "n",
    "real_correct", "real_wrong", "fake_correct", "fake_wrong", "mean_confidence", "accuracy",
    "mean_prob_fake"}]}``.
    """
    z = np.asarray(z, dtype=np.float32)
    logit = np.asarray(logit, dtype=np.float64)
    label = np.asarray(label).astype(int)
    cell_of = cluster(z, n_cells or default_n_cells(len(z)), seed)
    c = int(cell_of.max()) + 1
    t = cell_tallies(cell_of, c, logit, label)
    count = t["n"]
    centroids = cell_centroids(z, cell_of, c)
    frame = LayoutFrame.fit(centroids, t["mean_logit"], classifier_weight)
    xy0 = frame.place(centroids, t["mean_logit"])
    # glyph radius: area ~ count; the largest glyph takes ~1/12 of the x spread
    r = np.sqrt(count / count.max()) * frame.x_spread / 24.0
    xy = _relax(xy0, r) if c <= 20_000 else xy0

    cells = [{"id": k, "x": float(xy[k, 0]), "y": float(xy[k, 1]), "r": float(r[k]), "n": int(count[k]),
              "real_correct": int(t["real_correct"][k]), "real_wrong": int(t["real_wrong"][k]),
              "fake_correct": int(t["fake_correct"][k]), "fake_wrong": int(t["fake_wrong"][k]),
              "mean_confidence": float(t["mean_confidence"][k]),
              "accuracy": float((t["real_correct"][k] + t["fake_correct"][k]) / count[k]),
              "mean_prob_fake": float(t["mean_prob_fake"][k])} for k in range(c)]
    return cell_of, {"n_cells": c, "boundary_x": 0.0,
                     "x_label": "asinh(mean logit): real <- 0 -> fake",
                     "y_label": "main axis of the 16-d space orthogonal to the classifier",
                     "cells": cells}


def cell_tallies(cell_of: np.ndarray, n_cells: int, logit: np.ndarray, label: np.ndarray) -> dict:
    """Per-cell counts and means (arrays of length ``n_cells``; means are NaN in empty cells).

    ``label`` may hold ``pipeline.data.scan.UNLABELLED`` (-1, images scored by ``pipeline.generalise.apply``):
    those count in ``n`` and in ``unlabelled_pred_real`` / ``unlabelled_pred_fake`` (their
    predictions), never as right or wrong.
    """
    cell_of = np.asarray(cell_of)
    logit = np.asarray(logit, dtype=np.float64)
    label = np.asarray(label).astype(int)
    prob = sigmoid(logit)
    pred = (logit > 0).astype(int)
    correct = pred == label

    def per_cell(mask_or_values):
        return np.bincount(cell_of, weights=np.asarray(mask_or_values, dtype=np.float64), minlength=n_cells)

    count = np.bincount(cell_of, minlength=n_cells).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return {"n": count,
                "real_correct": per_cell((label == 0) & correct), "real_wrong": per_cell((label == 0) & ~correct),
                "fake_correct": per_cell((label == 1) & correct), "fake_wrong": per_cell((label == 1) & ~correct),
                "unlabelled_pred_real": per_cell((label < 0) & (pred == 0)),
                "unlabelled_pred_fake": per_cell((label < 0) & (pred == 1)),
                "mean_confidence": per_cell(np.maximum(prob, 1 - prob)) / count,
                "mean_prob_fake": per_cell(prob) / count,
                "mean_logit": per_cell(logit) / count}


def cell_centroids(z: np.ndarray, cell_of: np.ndarray, n_cells: int) -> np.ndarray:
    """(n_cells, K) mean 16-d point of each cell's images (NaN rows for empty cells)."""
    centroids = np.zeros((n_cells, z.shape[1]))
    np.add.at(centroids, cell_of, z)
    with np.errstate(invalid="ignore", divide="ignore"):
        return centroids / np.bincount(cell_of, minlength=n_cells)[:, None]


@dataclass(frozen=True)
class LayoutFrame:
    """The map from (16-d point, logit) to the view's 2-D coordinates before relaxation.

    ``x = asinh(logit)`` (the boundary at 0); ``y`` = the point's coordinate on the main axis of
    the cell centroids orthogonal to the classifier direction, scaled to the spread of the cells'
    x. Fitted on the cells of a run (:meth:`fit`), it also places any other point in that frame:
    ``pipeline.generalise.apply`` uses it to put a newly scored image inside its cell's glyph.
    """

    direction: np.ndarray  # (K,) unit classifier direction
    mean_residual: np.ndarray  # (K,) mean of the centroids' parts orthogonal to it
    axis: np.ndarray  # (K,) main axis of those parts (zeros for a single cell)
    y_range: float  # spread of the centroids' raw y (divides it)
    x_spread: float  # spread of the cells' x, at least 1 (multiplies it)

    @classmethod
    def fit(cls, centroids: np.ndarray, mean_logit: np.ndarray, classifier_weight: np.ndarray) -> "LayoutFrame":
        w = np.asarray(classifier_weight, dtype=np.float64).ravel()
        w = w / (np.linalg.norm(w) + 1e-12)
        resid = centroids - np.outer(centroids @ w, w)
        mean = resid.mean(0)
        resid = resid - mean
        if len(centroids) > 1:
            _, _, vt = np.linalg.svd(resid, full_matrices=False)
            axis = vt[0]
        else:
            axis = np.zeros(centroids.shape[1])
        y = resid @ axis
        return cls(direction=w, mean_residual=mean, axis=axis, y_range=float(np.ptp(y)) or 1.0,
                   x_spread=max(float(np.ptp(np.arcsinh(mean_logit))), 1.0))

    def place(self, z: np.ndarray, logit: np.ndarray) -> np.ndarray:
        """(N, 2) unrelaxed view coordinates of 16-d points ``z`` with logits ``logit``."""
        z = np.asarray(z, dtype=np.float64)
        resid = z - np.outer(z @ self.direction, self.direction) - self.mean_residual
        y = (resid @ self.axis) / self.y_range * self.x_spread
        return np.column_stack([np.arcsinh(np.asarray(logit, dtype=np.float64)), y])
