"""Deletion check of relevance maps (the perturbation test of Chefer, Gur & Wolf, CVPR 2021).

A faithful map names the patches the target depends on, so hiding them must change the target
more than hiding as many patches chosen at random. For every image and dimension k, the top
``fraction`` of patches by ``patch_maps[k]`` are masked (and, separately, ``n_random`` random sets
of the same size); the change ``|z_k(masked) - z_k(image)|`` is compared. Masked pixels are set to
0 in the encoder's normalised input space, i.e. to the dataset mean colour (``fill="zero"``), or
to the image's own mean colour (``fill="mean"``).

The summary per dimension is the mean over images of (relevant-drop - random-drop) (``gain``,
in units of z) and the fraction of images where the relevant drop is larger (``win_rate``).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from pipeline.explain.relevance import Progress, RelevanceResult
from pipeline.explain.results import passes_deletion_check  # noqa: F401  (torch-free: the app reads it)

FILLS = ("zero", "mean")


@dataclass(frozen=True, eq=False)
class DeletionReport:
    """Changes of every dimension under relevant and random masking.

    Attributes
    ----------
    fraction : share of patches masked.
    relevant_drop : (N, K) ``|dz_k|`` when the k-th map's top patches are masked.
    random_drop : (N, K) ``|dz_k|`` under random masks of the same size (mean over draws).
    """

    fraction: float
    relevant_drop: np.ndarray
    random_drop: np.ndarray

    @property
    def gain(self) -> np.ndarray:
        """(K,) mean over images of relevant_drop - random_drop."""
        return (self.relevant_drop - self.random_drop).mean(axis=0)

    @property
    def win_rate(self) -> np.ndarray:
        """(K,) fraction of images whose relevant drop exceeds the random one."""
        return (self.relevant_drop > self.random_drop).mean(axis=0)

    def summary(self) -> dict:
        """JSON-able per-dimension figures for the app and the CLI."""
        gain, win = self.gain, self.win_rate
        rel, rnd = self.relevant_drop.mean(axis=0), self.random_drop.mean(axis=0)
        return {
            "fraction": float(self.fraction),
            "n_images": int(self.relevant_drop.shape[0]),
            "mean_gain": float(gain.mean()),
            "mean_win_rate": float(win.mean()),
            "per_dimension": [
                {"dim": k, "relevant_drop": float(rel[k]), "random_drop": float(rnd[k]),
                 "gain": float(gain[k]), "win_rate": float(win[k])} for k in range(len(gain))],
        }


def patch_masks_to_pixels(masks: np.ndarray, input_size: tuple[int, int]) -> torch.Tensor:
    """(..., gh, gw) boolean patch masks -> (..., H, W) pixel masks (nearest, patch-aligned)."""
    t = torch.from_numpy(np.ascontiguousarray(masks)).float()
    lead = t.shape[:-2]
    up = torch.nn.functional.interpolate(t.reshape(-1, 1, *t.shape[-2:]), size=tuple(input_size),
                                         mode="nearest")
    return up.reshape(*lead, *input_size) > 0.5


def top_patch_masks(patch_maps: np.ndarray, n_masked: int) -> np.ndarray:
    """(..., gh, gw) maps -> boolean masks of the ``n_masked`` highest patches of each map."""
    flat = patch_maps.reshape(-1, patch_maps.shape[-2] * patch_maps.shape[-1])
    order = np.argsort(-flat, axis=1, kind="stable")[:, :n_masked]
    masks = np.zeros_like(flat, dtype=bool)
    np.put_along_axis(masks, order, True, axis=1)
    return masks.reshape(patch_maps.shape)


def deletion_check(encoder, projection: nn.Module, head: nn.Module, batch: torch.Tensor,
                   result: RelevanceResult, fraction: float = 0.2, n_random: int = 3,
                   fill: str = "zero", seed: int = 0, batch_size: int = 32,
                   progress: Progress | None = None) -> DeletionReport:
    """Mask the most relevant vs random patches of each image and measure each dimension's change.

    Parameters
    ----------
    encoder, projection, head : the models the maps were computed with (see ``relevance_maps``).
    batch : (N, 3, H, W) preprocessed images; ``result`` must hold their maps (same order).
    fraction : share of patches masked (Chefer et al. sweep 10-90 %; 20 % is an early step).
    n_random : random masks per image (their drops are averaged).
    fill : "zero" (dataset mean colour) or "mean" (the image's mean colour).
    seed : seed of the random masks.
    batch_size : masked images per forward pass.
    progress : callable(done, total) per image.
    """
    if fill not in FILLS:
        raise ValueError(f"fill must be one of {FILLS}, not {fill!r}")
    if not 0 < fraction < 1:
        raise ValueError(f"fraction must lie in (0, 1), got {fraction}")
    n, k = result.z.shape
    if len(batch) != n:
        raise ValueError(f"{len(batch)} images but relevance for {n}")
    gh, gw = result.patch_maps.shape[-2:]
    n_masked = max(1, int(round(fraction * gh * gw)))
    rng = np.random.default_rng(seed)
    relevant = np.zeros((n, k), dtype=np.float32)
    random = np.zeros((n, k), dtype=np.float32)
    size = tuple(batch.shape[-2:])
    for i in range(n):
        top = top_patch_masks(result.patch_maps[i], n_masked)  # (K, gh, gw)
        rand = np.zeros((n_random, gh * gw), dtype=bool)
        for r in range(n_random):
            rand[r, rng.choice(gh * gw, n_masked, replace=False)] = True
        masks = patch_masks_to_pixels(np.concatenate([top, rand.reshape(n_random, gh, gw)]), size)
        x = batch[i].detach().float().cpu()
        value = x.mean(dim=(1, 2), keepdim=True) if fill == "mean" else torch.zeros(3, 1, 1)
        variants = torch.where(masks.unsqueeze(1), value.unsqueeze(0), x.unsqueeze(0))
        # The unmasked image goes through the same (no-grad) path as its variants.
        z = _z_of(encoder, projection, head, torch.cat([x.unsqueeze(0), variants]), batch_size)
        base, z = z[0], z[1:]
        relevant[i] = np.abs(np.diagonal(z[:k]) - base)
        random[i] = np.abs(z[k:] - base[None]).mean(axis=0)
        if progress is not None:
            progress(i + 1, n)
    return DeletionReport(float(n_masked / (gh * gw)), relevant, random)


def _z_of(encoder, projection, head, images: torch.Tensor, batch_size: int) -> np.ndarray:
    out = []
    with torch.inference_mode():
        for s in range(0, len(images), batch_size):
            z, _ = head(projection(encoder.embed(images[s:s + batch_size].to(encoder.device))))
            out.append(z.float().cpu().numpy())
    return np.concatenate(out)
