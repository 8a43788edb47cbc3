"""Bilinear upsampling in numpy, equal to ``torch.nn.functional.interpolate(mode="bilinear",
align_corners=False)`` (``pipeline.explain.relevance.upsample``), for the torch-free readers."""
from __future__ import annotations

import functools

import numpy as np


@functools.lru_cache(maxsize=32)
def _weights(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) interpolation matrix of one axis (half-pixel centres, edges clamped)."""
    src = np.maximum((np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5, 0.0)
    lo = np.minimum(np.floor(src).astype(int), n_in - 1)
    hi = np.minimum(lo + 1, n_in - 1)
    frac = src - lo
    m = np.zeros((n_out, n_in))
    np.add.at(m, (np.arange(n_out), lo), 1 - frac)
    np.add.at(m, (np.arange(n_out), hi), frac)
    return m


def upsample(maps: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(..., gh, gw) -> (..., H, W) float64."""
    rows, cols = _weights(maps.shape[-2], int(size[0])), _weights(maps.shape[-1], int(size[1]))
    return np.einsum("hi,...ij,wj->...hw", rows, np.asarray(maps, dtype=np.float64), cols, optimize=True)
