"""A tiny detector trained for a test: the tiny CLIP's image tower (``TinyEncoder``) with a linear
classifier on its embedding, trained end to end with Adam on labelled images, so that the encoder
truly uses the evidence that separates them (a random tiny encoder is at chance on subtle
textures). The weights are saved as a checkpoint of the tiny architecture, which a run loads with
:func:`trained_tiny_encoder`'s settings (open_clip's checkpoint path, as for any CLIP file). Deterministic on one thread for a given seed.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image

from pipeline.model.encoders.tiny import TinyEncoder, register_tiny_config


def train_tiny_detector(images: Sequence[Image.Image], labels: np.ndarray, path: Path, *, seed: int = 0,
                        target_accuracy: float = 0.99, max_epochs: int = 25, batch_size: int = 32,
                        lr: float = 1e-3) -> float:
    """Train until the training accuracy reaches ``target_accuracy`` (or ``max_epochs``), save the
    whole CLIP's state to ``path`` and return the final training accuracy."""
    encoder = TinyEncoder(seed=seed, device="cpu", precision="fp32")
    x = torch.stack([encoder.preprocess(im) for im in images])  # the run's own preprocessing
    y = torch.as_tensor(np.asarray(labels), dtype=torch.float32)
    visual = encoder.model.visual.train()
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        classifier = torch.nn.Linear(visual.output_dim, 1)
    optimiser = torch.optim.Adam([*visual.parameters(), *classifier.parameters()], lr=lr)

    def accuracy() -> float:
        with torch.no_grad():
            return float(((classifier(visual(x)).squeeze(1) > 0).float() == y).float().mean())

    for _ in range(max_epochs):
        order = torch.randperm(len(x), generator=generator)
        for s in range(0, len(x), batch_size):
            rows = order[s:s + batch_size]
            loss = torch.nn.functional.binary_cross_entropy_with_logits(classifier(visual(x[rows])).squeeze(1), y[rows])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
        if (reached := accuracy()) >= target_accuracy:
            break
    encoder.model.eval()
    torch.save(encoder.model.state_dict(), path)
    return reached


def trained_tiny_encoder(checkpoint: Path) -> list[str]:
    """Config overrides that make a run's encoder the saved tiny detector. fp32: the CPU precision
    choice (``precision: auto``) would treat these weights as real ones and might pick bf16."""
    # registered with open_clip in this process, so the run finds the architecture by name
    return ["encoder.name=open_clip", f"encoder.model={register_tiny_config()}", "encoder.pretrained=none",
            f"encoder.checkpoint={checkpoint}", "encoder.precision=fp32"]
