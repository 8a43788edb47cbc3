"""DINOv2 patch tokens of model inputs, for the subject mask (:mod:`pipeline.explain.subject_mask`).

The tokens come from the stand-in's DINOv2 ViT-S/14 (:mod:`pipeline.model.encoders.dinov2_standin`,
whose weights every machine has), in fp32 whatever the run's encoder is, so that a mask does not
depend on the detector: the last block's patch tokens after the final LayerNorm, the features
whose first principal component the DINOv2 paper thresholds.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np


def patch_tokens(rgbs: np.ndarray, cache_dir: str | Path, batch_size: int = 16) -> np.ndarray:
    """(B, H, W, 3) uint8 model inputs -> (B, gh, gw, D) float32 DINOv2 patch tokens (each image
    resized to 224 px, ImageNet-normalised)."""
    raise NotImplementedError


def subject_masks_of(rgbs: np.ndarray, cache_dir: str | Path) -> list[tuple[np.ndarray, np.ndarray]]:
    """``(score, mask)`` per image (:func:`pipeline.explain.subject_mask.foreground_from_tokens`)."""
    raise NotImplementedError


__all__ = ["patch_tokens", "subject_masks_of"]
