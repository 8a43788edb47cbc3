"""A tiny random CLIP (open_clip architecture) for fast tests.

Two transformer blocks of width 64 on 32-pixel patches of a 224 image (a 7x7 grid like
ViT-B/32, so relevance code sees the same geometry), a 32-d embedding and a one-block text tower.
The weights are a seeded random initialisation, so every process builds the same model. The
architecture is registered with open_clip at run time under ``TINY_MODEL_NAME``, so it goes
through ``open_clip.create_model_and_transforms`` like any real model (and its checkpoints load
the same way).
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

import open_clip
import torch

from pipeline.model.encoders.open_clip_encoder import ClipWeights, OpenClipEncoder

TINY_MODEL_NAME = "faxplainer-tiny-vit"
TINY_CONFIG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 224, "layers": 2, "width": 64, "head_width": 32, "patch_size": 32},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


def register_tiny_config() -> str:
    """Add the tiny architecture to open_clip's registry (idempotent); returns its name."""
    if TINY_MODEL_NAME not in open_clip.list_models():
        # open_clip reads architectures from JSON files; the registry keeps the entry after the
        # temporary file is gone.
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / f"{TINY_MODEL_NAME}.json"
            path.write_text(json.dumps(TINY_CONFIG))
            open_clip.add_model_config(path)
    return TINY_MODEL_NAME


class TinyEncoder(OpenClipEncoder):
    """Seeded random tiny CLIP; ``checkpoint`` loads saved weights of the same architecture."""

    def __init__(self, seed: int = 0, *, device: str | torch.device = "cpu",
                 precision: str = "fp32", checkpoint: str | Path | None = None,
                 cache_dir: Path | None = None):
        register_tiny_config()
        weights = ClipWeights(str(checkpoint), None, str(checkpoint)) if checkpoint else None
        super().__init__(TINY_MODEL_NAME, weights, device=device, precision=precision,
                         cache_dir=cache_dir, seed=seed, name="tiny")
