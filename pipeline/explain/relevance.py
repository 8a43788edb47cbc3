"""Per-dimension relevance maps: Chefer et al.'s gradient x attention rollout, batched over targets.

Method (Chefer, Gur & Wolf, "Generic Attention-model Explainability for Interpreting Bi-Modal and
Encoder-Decoder Transformers", ICCV 2021): for one scalar target y and every block b from
``start_block`` on, ``cam_b = mean_heads(clamp(dy/dA_b * A_b, min=0))`` and ``R = I``,
``R <- R + cam_b @ R`` in block order; the map is ``R[cls, patch tokens]`` on the patch grid.

Here the targets are the 16 dimensions of the distilled representation, each oriented by its sign
(``y_k = sign(z_k) * z_k``), so every map shows what gives dimension k its value, whichever side of
zero it lies on. All 16 targets come from one forward pass: ``torch.autograd.grad(...,
is_grads_batched=True)`` pushes 16 one-hot cotangents through the backward graph at once
(``relevance_maps``); ``relevance_maps_sequential`` is the one-backward-per-dimension reference.

The aggregate map spreads each dimension's contribution to the real/fake logit,
``c_k = classifier.weight[0, k] * z_k``, over the image by that dimension's map (normalised to unit
mass): ``aggregate = sum_k c_k * M_k / sum(M_k)``. It is signed, positive where the evidence is
for *fake*, and its sum over patches is ``logit - classifier.bias``.

Functions return arrays; drawing lives in ``pipeline.explain.overlays``.
"""
from __future__ import annotations

import functools
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pipeline.explain.taps import tap_attention

Progress = Callable[[int, int], None]


@dataclass(frozen=True, eq=False)
class RelevanceResult:
    """Relevance of B images for K dimensions (arrays, float32).

    Attributes
    ----------
    patch_maps : (B, K, gh, gw) raw rollout values ``R[cls, patches]`` (>= 0).
    aggregate_patch : (B, gh, gw) signed logit contribution per patch (> 0: evidence for fake).
    contributions : (B, K) ``classifier.weight[0, k] * z_k``.
    z : (B, K) the distilled representation.
    logit : (B,) real/fake logit (> 0 means fake).
    input_size : (H, W) of the model input the maps are aligned with.
    """

    patch_maps: np.ndarray
    aggregate_patch: np.ndarray
    contributions: np.ndarray
    z: np.ndarray
    logit: np.ndarray
    input_size: tuple[int, int]

    def __len__(self) -> int:
        return len(self.z)

    @functools.cached_property
    def maps(self) -> np.ndarray:
        """(B, K, H, W) bilinear upsampling of ``patch_maps``, min-max normalised per map to [0, 1]."""
        return minmax_normalise(upsample(self.patch_maps, self.input_size))

    @functools.cached_property
    def aggregate(self) -> np.ndarray:
        """(B, H, W) bilinear upsampling of ``aggregate_patch`` (same units: logit per patch)."""
        return upsample(self.aggregate_patch, self.input_size)

    def image(self, i: int) -> "RelevanceResult":
        """The result of image ``i`` alone (B = 1)."""
        s = slice(i, i + 1)
        return RelevanceResult(self.patch_maps[s], self.aggregate_patch[s], self.contributions[s],
                               self.z[s], self.logit[s], self.input_size)

    @staticmethod
    def concatenate(parts: Sequence["RelevanceResult"]) -> "RelevanceResult":
        if not parts:
            raise ValueError("nothing to concatenate")
        return RelevanceResult(*(np.concatenate([getattr(p, f) for p in parts]) for f in
                                 ("patch_maps", "aggregate_patch", "contributions", "z", "logit")),
                               input_size=parts[0].input_size)


# -- public entry points -------------------------------------------------------------------------

def relevance_maps(encoder, projection: nn.Module, head: nn.Module, batch: torch.Tensor,
                   start_block: int = 0, images_per_pass: int = 2,
                   progress: Progress | None = None) -> RelevanceResult:
    """Relevance maps of all 16 dimensions for each image, from one forward pass per image group.

    Parameters
    ----------
    encoder : pipeline.model.encoders.base.Encoder
        Provides ``embed``, ``family``, ``blocks`` and ``patch_grid``.
    projection : nn.Module
        (B, D) embeddings -> (B, 256) features (``VisionOnlyProjection.torch_module()``).
    head : nn.Module
        features -> (z (B, 16), logit (B,)), with ``classifier: nn.Linear(16, 1)``
        (``DistilledHead.torch_module()``).
    batch : (B, 3, H, W) tensor
        Preprocessed images (``encoder.preprocess``).
    start_block : int
        First block of the rollout; negative counts from the end (-1 = last block only, as in
        Chefer's CLIP notebook; 0 = all blocks, as in their ViT notebook).
    images_per_pass : int
        Images per forward/backward (memory: the stand-in needs ~300 MB of gradients per image).
    progress : callable(done, total), optional
        Called after each group of images.
    """
    return _run_in_groups(lambda x: _maps_batched(encoder, projection, head, x, start_block),
                          batch, images_per_pass, progress)


def relevance_maps_sequential(encoder, projection: nn.Module, head: nn.Module, batch: torch.Tensor,
                              start_block: int = 0, images_per_pass: int = 2,
                              progress: Progress | None = None) -> RelevanceResult:
    """Reference for ``relevance_maps``: one forward, then one backward pass per dimension."""
    return _run_in_groups(lambda x: _maps_sequential(encoder, projection, head, x, start_block),
                          batch, images_per_pass, progress)


def decision_relevance(encoder, projection: nn.Module, head: nn.Module, batch: torch.Tensor,
                       start_block: int = 0) -> np.ndarray:
    """(B, gh, gw) rollout map for the decision itself (target: ``sign(logit) * logit``).

    One backward pass for the whole batch; used where a single "what mattered" mask is enough
    (concept extraction).
    """
    with _grad_mode():
        x, tap_ctx = _prepare(encoder, batch)
        with tap_ctx as tap:
            _, logit = head(projection(encoder.embed_for_maps(x)))
            probs = tap.probs
            first = _first_block(start_block, len(probs))
            target = (torch.where(logit >= 0, 1.0, -1.0).detach() * logit).sum()
            grads = torch.autograd.grad(target, probs[first:])
        cls_rows = rollout_cls_rows(probs[first:], [g.unsqueeze(0) for g in grads],
                                    consume_grads=True)[0]
    return _to_grid(cls_rows, encoder.patch_grid).detach().cpu().numpy().astype(np.float32)


# -- rollout ---------------------------------------------------------------------------------------

def rollout_cls_rows(probs: Sequence[torch.Tensor], grads: Sequence[torch.Tensor],
                     consume_grads: bool = False) -> torch.Tensor:
    """Row ``cls`` (token 0) of Chefer's rollout ``R`` over the given blocks.

    Parameters
    ----------
    probs : list of (B, H, T, T)
        Attention probabilities of the blocks in the rollout, in block order.
    grads : list of (K, B, H, T, T)
        d target_k / d A for each block (K targets).
    consume_grads : bool
        Overwrite ``grads`` in place (saves the largest temporary; for callers that own them).

    Returns
    -------
    (K, B, T) tensor, ``R[0, :]`` for every target and image.

    Notes
    -----
    ``R = (I + cam_L) ... (I + cam_s)``, so its first row is obtained with vector-matrix products
    from the last block backwards (``r <- r + r @ cam_b``): O(T^2) per block instead of the
    O(T^3) of forming R, with the same result.
    """
    k, b, _, t, _ = grads[0].shape
    # The rollout runs in fp32 whatever the forward's precision: under bf16 autocast A and dA
    # arrive in bf16, and a product of 12 bf16 matrices would lose the maps' fine ranking.
    r = torch.zeros(k, b, 1, t, dtype=torch.float32, device=probs[0].device)
    r[..., 0, 0] = 1.0
    for a, g in zip(reversed(list(probs)), reversed(list(grads))):
        cam = _cam(g.float(), a.detach().float(), consume_grads)  # (K, B, T, T)
        r = r + r @ cam
    return r[:, :, 0, :]


def _cam(grad: torch.Tensor, probs: torch.Tensor, in_place: bool) -> torch.Tensor:
    """``mean_heads(clamp(grad * A, min=0))``."""
    # (contiguity rules out expanded tensors, whose elements share memory)
    if in_place and grad.is_contiguous():
        product = grad.mul_(probs.unsqueeze(0))
    else:
        product = grad * probs.unsqueeze(0)
    return product.clamp_(min=0).mean(dim=2)


# -- image helpers -------------------------------------------------------------------------------

def upsample(maps: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of (..., gh, gw) maps to (..., H, W)."""
    lead = maps.shape[:-2]
    t = torch.from_numpy(np.ascontiguousarray(maps, dtype=np.float32)).reshape(-1, 1, *maps.shape[-2:])
    up = F.interpolate(t, size=tuple(size), mode="bilinear", align_corners=False)
    return up.reshape(*lead, *size).numpy()


def minmax_normalise(maps: np.ndarray) -> np.ndarray:
    """Scale each (..., H, W) map to [0, 1]; a constant map becomes all zeros."""
    lo = maps.min(axis=(-2, -1), keepdims=True)
    span = maps.max(axis=(-2, -1), keepdims=True) - lo
    return np.where(span > 0, (maps - lo) / np.where(span > 0, span, 1), 0).astype(np.float32)


def input_rgb(encoder, batch: torch.Tensor) -> np.ndarray:
    """(B, 3, H, W) preprocessed tensors -> (B, H, W, 3) uint8: the image the model actually saw.

    The per-channel normalisation is read off ``encoder.preprocess`` by passing it a black and a
    white image (both stay uniform through resizing and cropping), so any encoder's affine
    normalisation is undone without knowing its constants.
    """
    lo, hi = _normalisation_of(encoder.preprocess)
    x = batch.detach().float().cpu()
    rgb = (x - lo.view(1, 3, 1, 1)) / (hi - lo).view(1, 3, 1, 1)
    return (rgb.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


def model_input(encoder, rgb: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) float RGB in [0, 1] at the model's input size -> the encoder's normalised input:
    the inverse of :func:`input_rgb`, for images changed after preprocessing (the blur test)."""
    lo, hi = _normalisation_of(encoder.preprocess)
    return lo.view(1, 3, 1, 1) + rgb.float() * (hi - lo).view(1, 3, 1, 1)


def _normalisation_of(preprocess) -> tuple[torch.Tensor, torch.Tensor]:
    from PIL import Image
    black = preprocess(Image.new("RGB", (64, 64), (0, 0, 0))).float()
    white = preprocess(Image.new("RGB", (64, 64), (255, 255, 255))).float()
    lo, hi = black.mean(dim=(1, 2)), white.mean(dim=(1, 2))
    if torch.any((hi - lo).abs() < 1e-6):
        raise ValueError("encoder.preprocess maps black and white to the same value; cannot invert it")
    return lo, hi


# -- internals -----------------------------------------------------------------------------------

@contextmanager
def _grad_mode():
    """Gradients on, even when the caller sits inside ``torch.inference_mode()``/``no_grad()``."""
    with torch.inference_mode(False), torch.enable_grad():
        yield


def _prepare(encoder, batch: torch.Tensor):
    if batch.dim() != 4 or batch.shape[1] != 3:
        raise ValueError(f"expected a (B, 3, H, W) batch, got shape {tuple(batch.shape)}")
    # A fresh leaf that requires grad makes autograd record the graph even when every weight is
    # frozen; clone() also lifts tensors created under inference_mode into normal ones.
    x = batch.detach().clone().to(device=encoder.device, dtype=torch.float32).requires_grad_(True)
    return x, tap_attention(encoder.family, encoder.blocks)


def _first_block(start_block: int, n_blocks: int) -> int:
    first = start_block + n_blocks if start_block < 0 else start_block
    if not 0 <= first < n_blocks:
        raise ValueError(f"start_block {start_block} is out of range for {n_blocks} blocks")
    return first


def _forward(encoder, projection, head, x, tap):
    z, logit = head(projection(encoder.embed_for_maps(x)))
    if z.dim() != 2:
        raise ValueError(f"head must return z of shape (B, K), got {tuple(z.shape)}")
    return z, logit.reshape(-1), tap.probs


def _target_signs(z: torch.Tensor) -> torch.Tensor:
    return torch.where(z >= 0, 1.0, -1.0).to(z.dtype).detach()


def _maps_batched(encoder, projection, head, batch, start_block) -> RelevanceResult:
    with _grad_mode():
        x, tap_ctx = _prepare(encoder, batch)
        with tap_ctx as tap:
            z, logit, probs = _forward(encoder, projection, head, x, tap)
            first = _first_block(start_block, len(probs))
            k = z.shape[1]
            # Cotangent j selects dimension j of every image, oriented by the sign of its value;
            # images do not interact, so one batched backward serves all images and targets.
            eye = torch.eye(k, dtype=z.dtype, device=z.device)
            cotangents = eye.unsqueeze(1) * _target_signs(z).unsqueeze(0)  # (K, B, K)
            grads = torch.autograd.grad(z, probs[first:], grad_outputs=cotangents,
                                        is_grads_batched=True)
        cls_rows = rollout_cls_rows(probs[first:], grads, consume_grads=True)
    return _assemble(encoder, head, cls_rows, z, logit, x.shape[-2:])


def _maps_sequential(encoder, projection, head, batch, start_block) -> RelevanceResult:
    with _grad_mode():
        x, tap_ctx = _prepare(encoder, batch)
        with tap_ctx as tap:
            z, logit, probs = _forward(encoder, projection, head, x, tap)
            first = _first_block(start_block, len(probs))
            signs = _target_signs(z)
            rows = []
            for j in range(z.shape[1]):
                grads = torch.autograd.grad((z[:, j] * signs[:, j]).sum(), probs[first:],
                                            retain_graph=j + 1 < z.shape[1])
                rows.append(rollout_cls_rows(probs[first:], [g.unsqueeze(0) for g in grads],
                                             consume_grads=True)[0])
        cls_rows = torch.stack(rows)
    return _assemble(encoder, head, cls_rows, z, logit, x.shape[-2:])


def _to_grid(cls_rows: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """(..., T) rows -> (..., gh, gw) patch maps; the prefix tokens (cls, registers) come first."""
    gh, gw = grid
    n_prefix = cls_rows.shape[-1] - gh * gw
    if n_prefix < 1:
        raise ValueError(f"{cls_rows.shape[-1]} tokens cannot hold a class token and a {gh}x{gw} grid")
    return cls_rows[..., n_prefix:].reshape(*cls_rows.shape[:-1], gh, gw)


def _assemble(encoder, head, cls_rows, z, logit, input_size) -> RelevanceResult:
    patch = _to_grid(cls_rows, encoder.patch_grid).permute(1, 0, 2, 3)  # (B, K, gh, gw)
    weight = head.classifier.weight.reshape(-1).detach()
    contributions = z.detach() * weight.unsqueeze(0)
    mass = patch.sum(dim=(-2, -1), keepdim=True)
    unit = torch.where(mass > 0, patch / torch.where(mass > 0, mass, 1), torch.zeros_like(patch))
    aggregate = (contributions[:, :, None, None] * unit).sum(dim=1)

    def arr(t):
        return t.detach().cpu().numpy().astype(np.float32)
    return RelevanceResult(arr(patch), arr(aggregate), arr(contributions), arr(z), arr(logit),
                           (int(input_size[0]), int(input_size[1])))


def _run_in_groups(fn, batch: torch.Tensor, group: int, progress: Progress | None) -> RelevanceResult:
    if group < 1:
        raise ValueError("images_per_pass must be >= 1")
    parts = []
    for start in range(0, len(batch), group):
        parts.append(fn(batch[start:start + group]))
        if progress is not None:
            progress(min(start + group, len(batch)), len(batch))
    return RelevanceResult.concatenate(parts)
