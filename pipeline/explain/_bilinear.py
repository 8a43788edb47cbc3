"""Bilinear upsampling in numpy, equal to ``torch.nn.functional.interpolate(mode="bilinear",
align_corners=False)`` (``pipeline.explain.relevance.upsample``), for the torch-free readers (the
profiles and subject masks of a click, the findings sheet's overlays).

Gathers and weighted sums only: no matrix product, so no BLAS call in the web process, whose
request threads run this while it forks jobs (``app.jobs.fork_safety``)."""
from __future__ import annotations

import functools

import numpy as np


@functools.lru_cache(maxsize=64)
def _axis(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(lo, hi, frac) of one axis: each output pixel between two input cells (half-pixel centres,
    edges clamped)."""
    src = np.maximum((np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5, 0.0)
    lo = np.minimum(np.floor(src).astype(int), n_in - 1)
    return lo, np.minimum(lo + 1, n_in - 1), src - lo


def upsample(maps: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(..., gh, gw) -> (..., H, W) float64."""
    maps = np.asarray(maps, dtype=np.float64)
    (y0, y1, wy), (x0, x1, wx) = _axis(maps.shape[-2], int(size[0])), _axis(maps.shape[-1], int(size[1]))
    rows = maps[..., y0, :] * (1 - wy)[:, None] + maps[..., y1, :] * wy[:, None]
    return rows[..., x0] * (1 - wx) + rows[..., x1] * wx
