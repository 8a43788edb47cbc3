"""DINOv2 patch tokens of model inputs, for the subject mask (:mod:`pipeline.explain.subject_mask`).

The tokens come from the stand-in's DINOv2 ViT-S/14 (:mod:`pipeline.model.encoders.dinov2_standin`,
whose weights every machine has), in fp32 whatever the run's encoder is, so that a mask does not
depend on the detector: the last block's patch tokens after the final LayerNorm, the features
whose first principal component the DINOv2 paper thresholds.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from pipeline.config import Config, EncoderConfig
from pipeline.explain.subject_mask import foreground_from_tokens
from pipeline.model.encoders import shared_encoder
from pipeline.model.encoders.dinov2_standin import (IMAGE_SIZE, IMAGENET_MEAN, IMAGENET_STD, SAFETENSORS_NAME,
                                                   WHEEL_NAME)

# fp32: the mask must not change with the machine's precision choice (``precision: auto``)
MASK_ENCODER = EncoderConfig(name="dinov2_standin", device="auto", precision="fp32")


def weights_cache(cache_dir: Path) -> Path:
    """``cache_dir``, or the configured cache when only that one holds the stand-in's weights (a
    run made with a fresh cache, e.g. a test's, still finds them without a download)."""
    for candidate in (cache_dir, Config().cache_path):
        weights = candidate / "weights"
        if (weights / SAFETENSORS_NAME).is_file() or (weights / WHEEL_NAME).is_file():
            return candidate
    return cache_dir


def patch_tokens(rgbs: np.ndarray, cache_dir: str | Path, batch_size: int = 16) -> np.ndarray:
    """(B, H, W, 3) uint8 model inputs -> (B, gh, gw, D) float32 DINOv2 patch tokens (each image
    resized to 224 px, ImageNet-normalised)."""
    encoder = shared_encoder(MASK_ENCODER, weights_cache(Path(cache_dir)))
    model = encoder.model
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    rows, cols = encoder.patch_grid
    out = []
    for s in range(0, len(rgbs), batch_size):
        x = torch.from_numpy(np.ascontiguousarray(rgbs[s:s + batch_size])).permute(0, 3, 1, 2).float() / 255
        if tuple(x.shape[-2:]) != (IMAGE_SIZE, IMAGE_SIZE):
            x = F.interpolate(x, size=(IMAGE_SIZE, IMAGE_SIZE), mode="bicubic", align_corners=False).clamp(0, 1)
        x = ((x - mean) / std).to(encoder.device)
        with encoder.lock, torch.inference_mode():
            tokens = model.forward_features(x)[:, model.num_prefix_tokens:]
        out.append(tokens.float().cpu().numpy().reshape(len(x), rows, cols, -1))
    return np.concatenate(out) if out else np.zeros((0, rows, cols, model.embed_dim), np.float32)


def subject_masks_of(rgbs: np.ndarray, cache_dir: str | Path) -> list[tuple[np.ndarray, np.ndarray]]:
    """``(score, mask)`` per image (:func:`pipeline.explain.subject_mask.foreground_from_tokens`)."""
    return [foreground_from_tokens(t) for t in patch_tokens(rgbs, cache_dir)]


__all__ = ["MASK_ENCODER", "patch_tokens", "subject_masks_of", "weights_cache"]
