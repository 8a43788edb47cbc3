"""A subject mask per image, independent of the detector's encoder; torch-free.

Method (Oquab et al. 2023, DINOv2, section "PCA of patch features"; Caron et al. 2021 for DINO):
the first principal component of one image's DINOv2 patch tokens separates the foreground from
the background; thresholding it gives the foreground. The stand-in's DINOv2 ViT-S/14 weights are
on every machine, so the mask is the same whether the run's detector is CLIP, the stand-in or the
tiny test encoder (the tokens come from :mod:`pipeline.explain.subject_features`).

The sign of a principal component is arbitrary: the subject is taken to be the side that holds
fewer border patches (photographers centre subjects; backgrounds touch the frame). The threshold
is 0 on the centred projection (the split PCA itself proposes), so an image without a clear
subject gets an arbitrary but stable split rather than a tuned one.

A mask is computed on the model input the maps are aligned with (``KeptMaps.rgb``), so mask and
maps cover the same pixels; it is kept per image as a derived result
(``<run>/subject/<image id>.npz``) whose key is the hash of that input, not of the run's models:
a new head does not recompute the masks.
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from pipeline.explain._bilinear import upsample
from pipeline.explain.results import KeptMaps, arrays_digest, per_image_name, read_kept_maps
from pipeline.store.derived import Derived
from pipeline.store.run_store import open_store

MASK_VERSION = 1  # bump when the masks' meaning changes
TOKENS = "dinov2-vits14-imgfocus/last-block-norm/224"  # what the tokens are (subject_features)
BORDER_PATCHES = 1  # rows/columns of patches counted as "the border" when choosing the PC's sign


@dataclass(frozen=True, eq=False)
class SubjectMask:
    """One image's subject mask on the DINOv2 patch grid.

    Attributes
    ----------
    index : the image's row in ``records.csv``.
    score : (gh, gw) float32, the first principal component, oriented so that > 0 is the subject.
    mask : (gh, gw) bool, ``score > 0``.
    """

    index: int
    score: np.ndarray
    mask: np.ndarray

    @property
    def area(self) -> float:
        """Fraction of the image the subject covers."""
        return float(self.mask.mean())

    def at(self, size: tuple[int, int]) -> np.ndarray:
        """(H, W) bool: the mask at pixel size ``size`` (bilinear upsampling of ``score``, > 0), the
        resolution of the maps' ``rgb`` for the viewer's outline and for profiles."""
        return upsample(self.score, size) > 0


def foreground_from_tokens(tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(gh, gw, D) patch tokens of one image -> (score (gh, gw) float32, mask (gh, gw) bool).

    ``score`` is the projection on the first principal component, centred, signed so that the
    subject (``mask``, score > 0) holds fewer border patches than the background.
    """
    gh, gw, dim = tokens.shape
    x = tokens.reshape(-1, dim).astype(np.float64)
    x -= x.mean(axis=0)
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    score = (x @ vt[0]).reshape(gh, gw)
    border = np.ones((gh, gw), bool)
    b = BORDER_PATCHES
    border[b:gh - b, b:gw - b] = False
    if score[border].mean() > score[~border].mean():  # the background is what touches the frame
        score = -score
    return score.astype(np.float32), score > 0


# -- kept masks ---------------------------------------------------------------------------------------

def mask_name(image_id: str) -> str:
    return per_image_name("subject", image_id)


def rgb_digest(rgb: np.ndarray) -> str:
    """What a mask depends on: the exact model input it was computed from."""
    return arrays_digest(rgb)


def mask_derived(run_dir: str | Path, index: int, image_id: str, rgb: np.ndarray) -> Derived:
    """Image ``index``'s subject mask as a derived result (``<run>/subject/<id>.npz``, sealed)."""
    def load(data: bytes, key: str) -> SubjectMask | None:
        with np.load(io.BytesIO(data), allow_pickle=False) as f:
            if str(f["key"]) != key:
                return None
            score = f["score"].astype(np.float32)
            return SubjectMask(int(index), score, score > 0)

    return Derived(run_dir, mask_name(image_id), {"v": MASK_VERSION, "tokens": TOKENS, "rgb": rgb_digest(rgb)},
                   model=False, dump=_dump_mask, load=load)


def _dump_mask(mask: SubjectMask, key: str) -> bytes:
    buf = io.BytesIO()
    np.savez_compressed(buf, key=np.array(key), score=mask.score.astype(np.float32))
    return buf.getvalue()


def read_subject_masks(run_dir: str | Path, indices: Sequence[int]) -> dict[int, SubjectMask]:
    """The kept masks of ``indices`` whose maps are kept too (the mask is keyed by the maps' model
    input); never computes. Torch-free, for the web process. Missing or stale ones are left out."""
    return {i: mask for i, (_, mask) in read_maps_and_masks(run_dir, indices).items()}


def read_maps_and_masks(run_dir: str | Path, indices: Sequence[int]) -> dict[int, tuple[KeptMaps, SubjectMask]]:
    """``(maps, mask)`` of the images of ``indices`` for which both are kept and current."""
    store = open_store(run_dir)
    records = store.read_records()
    out = {}
    for i, maps in read_kept_maps(run_dir, indices, records=records).items():
        mask = mask_derived(run_dir, i, records[i]["id"], maps.rgb).read()
        if mask is not None:
            out[i] = (maps, mask)
    return out


def read_subject_mask(run_dir: str | Path, index: int) -> SubjectMask | None:
    """One image's kept mask, or None (see :func:`read_subject_masks`)."""
    return read_subject_masks(run_dir, [index]).get(int(index))


__all__ = ["MASK_VERSION", "SubjectMask", "foreground_from_tokens", "mask_derived", "mask_name", "read_maps_and_masks",
           "read_subject_mask", "read_subject_masks", "rgb_digest"]
