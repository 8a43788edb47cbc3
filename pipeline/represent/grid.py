"""Arrange a cell's images on a grid so that similar images sit next to each other.

The paper's image view embeds a cell's 16-d vectors in 2-D (t-SNE) and assigns the 2-D points to
grid slots with IsoMatch (Fried et al., "IsoMatch: Creating Informative Grid Layouts", 2015),
which is a linear assignment between points and slots. We keep that recipe for small cells and
switch to FLAS (Barthel et al., "Improved Evaluation and Generation of Grid Layouts using
Distance Preservation Quality and Linear Assignment Sorting", 2023; PyPI ``vc-flas``) for large
ones, because an exact assignment grows cubically (method.md section 6, *measured*: 1k slots
0.3-0.7 s, 4k 27 s) while FLAS sorts 10k features in 0.15 s.

The 2-D embedding is PCA rather than t-SNE: it is deterministic, takes microseconds and the 16
dimensions are nearly orthogonal by construction, so their leading principal axes already carry
the main structure of a cell.

The result of :func:`arrange` is an int array of shape ``(rows, cols)`` whose entry is the index
(into the input rows) of the item shown in that slot, or ``-1`` for an empty slot, in reading
order (row 0 is the top row).
"""
from __future__ import annotations

import math

import numpy as np
from scipy.optimize import linear_sum_assignment

# Above this many items FLAS replaces the exact assignment. *Measured* on a 2-core EPYC with 16-d
# clustered features: exact 400 items 0.03 s, 700 items 0.3 s, 1000 items 0.7 s; FLAS 1000 items
# 0.013 s with a lower mean neighbour distance, so the exact path is kept only where it is cheap.
EXACT_LIMIT = 500


def grid_shape(n: int, aspect: float = 1.0) -> tuple[int, int]:
    """Smallest ``(rows, cols)`` with ``cols / rows`` close to ``aspect`` that holds ``n`` items.

    Parameters
    ----------
    n : int
        Number of items (>= 0).
    aspect : float
        Wanted width / height ratio of the grid.
    """
    if n <= 0:
        return 0, 0
    cols = max(1, math.ceil(math.sqrt(n * aspect)))
    rows = math.ceil(n / cols)
    return rows, cols


def embed_2d(features: np.ndarray) -> np.ndarray:
    """Project ``(n, d)`` features on their two leading principal axes -> ``(n, 2)``.

    Axes with no variance (e.g. a single item, identical items) give zeros.
    """
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"features must be (n, d), got shape {x.shape}")
    n = x.shape[0]
    out = np.zeros((n, 2))
    if n < 2:
        return out
    x = x - x.mean(axis=0)
    # SVD of the centred data: the right singular vectors are the principal axes.
    _, s, vt = np.linalg.svd(x, full_matrices=False)
    k = min(2, vt.shape[0])
    out[:, :k] = x @ vt[:k].T
    # Fix the sign of each axis so that the layout does not flip between identical calls.
    for j in range(k):
        if out[np.argmax(np.abs(out[:, j])), j] < 0:
            out[:, j] = -out[:, j]
    return out


def assign_points_to_slots(points: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """Exact IsoMatch-style assignment of 2-D points to the slots of a ``rows x cols`` grid.

    The points are scaled to the grid's extent (the first axis along the longer side) and matched
    to slot centres minimising the total squared distance (Hungarian algorithm).

    Returns
    -------
    np.ndarray
        ``(rows, cols)`` int array of point indices, ``-1`` where a slot stays empty.
    """
    n = len(points)
    if n > rows * cols:
        raise ValueError(f"{n} points do not fit a {rows}x{cols} grid")
    order = np.full((rows, cols), -1, dtype=np.int64)
    if n == 0:
        return order
    p = np.asarray(points, dtype=np.float64)
    # Put the direction of largest spread along the longer side of the grid.
    long_len, short_len = max(rows, cols), min(rows, cols)
    lo, hi = p.min(axis=0), p.max(axis=0)
    span = np.where(hi - lo > 0, hi - lo, 1.0)
    unit = (p - lo) / span  # each axis in [0, 1]
    along = unit[:, 0] * long_len
    across = unit[:, 1] * short_len
    if cols >= rows:
        px, py = along, across
    else:
        px, py = across, along
    sy, sx = np.mgrid[0:rows, 0:cols]
    slot_x = sx.ravel() + 0.5
    slot_y = sy.ravel() + 0.5
    cost = (px[:, None] - slot_x[None, :]) ** 2 + (py[:, None] - slot_y[None, :]) ** 2
    point_idx, slot_idx = linear_sum_assignment(cost)
    order.ravel()[slot_idx] = point_idx
    return order


def _flas_order(features: np.ndarray, rows: int, cols: int, seed: int) -> np.ndarray:
    import vc_flas  # imported here: only large cells need it

    feats = np.ascontiguousarray(features, dtype=np.float32)
    grid = vc_flas.Grid.from_features(feats, size=(rows, cols))
    arrangement = vc_flas.flas(grid, wrap=False, seed=seed)
    # get_sorted_labels: label (= row index into features, by default) per slot; -1 = hole
    return np.asarray(arrangement.get_sorted_labels(), dtype=np.int64)


def arrange(features: np.ndarray, aspect: float = 1.0, exact_limit: int = EXACT_LIMIT,
            seed: int = 0) -> np.ndarray:
    """Grid layout of ``(n, d)`` features, similar items in neighbouring slots.

    Parameters
    ----------
    features : np.ndarray
        ``(n, d)`` vectors (the 16-d representation of a cell's images).
    aspect : float
        Wanted width / height ratio of the grid.
    exact_limit : int
        Up to this many items: PCA to 2-D + exact assignment; above: FLAS on the raw features.
    seed : int
        Seed of FLAS's random swaps (the exact path is deterministic).

    Returns
    -------
    np.ndarray
        ``(rows, cols)`` int array; entry = index of the item in that slot, ``-1`` = empty.
    """
    features = np.asarray(features)
    if features.ndim != 2:
        raise ValueError(f"features must be (n, d), got shape {features.shape}")
    n = features.shape[0]
    rows, cols = grid_shape(n, aspect)
    if n == 0:
        return np.full((0, 0), -1, dtype=np.int64)
    if n <= exact_limit or rows < 2 or cols < 2:  # FLAS needs at least a 2x2 grid
        return assign_points_to_slots(embed_2d(features), rows, cols)
    return _flas_order(features, rows, cols, seed)


def mean_neighbour_distance(features: np.ndarray, order: np.ndarray) -> float:
    """Mean Euclidean distance between the features of horizontally/vertically adjacent slots.

    A quality measure of a layout (lower = smoother); empty slots are skipped.
    """
    f = np.asarray(features, dtype=np.float64)
    total, count = 0.0, 0
    for a, b in ((order[:, :-1], order[:, 1:]), (order[:-1, :], order[1:, :])):
        mask = (a >= 0) & (b >= 0)
        if mask.any():
            d = np.linalg.norm(f[a[mask]] - f[b[mask]], axis=1)
            total += float(d.sum())
            count += int(mask.sum())
    return total / count if count else 0.0
