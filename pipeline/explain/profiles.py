"""What each dimension's map looks at, in numbers: a profile per dimension and image, and its
summary over a selection, a cell or a sample of the run. Torch-free (the web process reads them).

For one image and dimension k, the relevance map (the raw rollout ``R[cls, patches]`` >= 0 of
:mod:`pipeline.explain.relevance`, bilinearly upsampled to the model input's pixels, where the
subject mask is too) is read as a distribution of mass:

* ``subject``: share of the mass on the subject mask (:mod:`pipeline.explain.subject_mask`);
* ``border``: share on the outer band of the image (``BORDER_FRACTION`` of each side);
* ``textured``: share on textured pixels: local variance of the grey image (``TEXTURE_WINDOW``
  pixels) above that image's median, so "textured" is relative to the image itself;
* ``concentration``: share held by the top ``TOP_FRACTION`` of patches (of the map's own grid):
  0.1 for a flat map, 1 for a map on a few patches;
* ``contribution``: the dimension's part of the logit, ``classifier.weight[k] * z_k`` (> 0: fake;
  :mod:`pipeline.explain.contributions`).

Where the map is is not always where the evidence is (the rollout follows the attention), so a
profile may also carry the blur test (:mod:`pipeline.explain.region_evidence`): how far each
dimension moves when the subject, or the background, is blurred. Its summary is the subject's
share of those moves (``evidence_share``), judged against the subject's area like the map's share
(``evidence_verdict``), or "none" when neither blur moves the dimension by ``NO_EVIDENCE`` of its
spread over the images (it does not read fine detail).

The areas (``subject_area``...) are what a flat map would give: the chance level of each share.
A dimension's verdict over images compares its mean subject share with the subject's mean area, so
that a map spread evenly is "mixed" however large the subject is: "subject" when its relevance per
pixel is at least ``VERDICT_ODDS`` times denser on the subject than on the background (the odds
ratio ``share / (1 - share)`` over ``area / (1 - area)``), "background" when it is that much
denser on the background, else "mixed". With a subject covering half of the image that is a share
of 56% (subject) or 44% (background).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Sequence

import numpy as np
from scipy.ndimage import uniform_filter

from pipeline.explain._bilinear import upsample
from pipeline.explain.subject_mask import read_maps_and_masks

BORDER_FRACTION = 0.125  # the border band: 1/8 of the side on each edge (44% of the area)
TOP_FRACTION = 0.10  # concentration: share of the mass on the top 10% of patches
TEXTURE_WINDOW = 7  # pixels of the local variance window (at 224 px: half a stand-in patch)
VERDICT_ODDS = 1.25  # relevance this much denser on one side than on the other: that side's verdict
VERDICTS = ("subject", "background", "mixed")
EVIDENCE_VERDICTS = (*VERDICTS, "none")
NO_EVIDENCE = 0.05  # blur test: a dimension moved by less than this share of its spread reads no fine detail


@dataclass(frozen=True, eq=False)
class ImageProfile:
    """The 16 dimensions' profiles on one image: each array is (K,), one value per dimension."""

    index: int
    subject: np.ndarray
    border: np.ndarray
    textured: np.ndarray
    concentration: np.ndarray
    contributions: np.ndarray
    z: np.ndarray
    subject_area: float
    border_area: float
    textured_area: float
    evidence_subject: np.ndarray | None = None  # (K,) blur test: |dz_k| with the subject blurred
    evidence_background: np.ndarray | None = None  # (K,) ... with the background blurred

    @property
    def n_dims(self) -> int:
        return len(self.subject)


@dataclass(frozen=True)
class DimensionSummary:
    """One dimension over a set of images: mean shares, mean contribution, verdict.

    ``towards_fake``: fraction of the images on which the dimension's contribution is > 0.
    """

    dim: int
    n_images: int
    subject_share: float
    border_share: float
    textured_share: float
    concentration: float
    subject_area: float
    mean_contribution: float
    towards_fake: float
    verdict: str
    evidence_share: float | None = None  # blur test: the subject's share of the dimension's moves
    evidence_subject: float | None = None  # mean |dz_k| with the subject blurred
    evidence_background: float | None = None  # ... with the background blurred
    evidence_verdict: str | None = None  # EVIDENCE_VERDICTS; None: no blur test

    @property
    def label(self) -> str:
        return f"d{self.dim}"

    def to_dict(self) -> dict:
        return {**asdict(self), "label": self.label}


def profile_image(index: int, patch_maps: np.ndarray, rgb: np.ndarray, subject: np.ndarray,
                  contributions: np.ndarray, z: np.ndarray) -> ImageProfile:
    """The profiles of one image's K maps.

    Parameters
    ----------
    patch_maps : (K, gh, gw) raw relevance (>= 0) on the detector's patch grid.
    rgb : (H, W, 3) uint8 model input the maps are aligned with.
    subject : (H, W) bool subject mask at ``rgb``'s size (``SubjectMask.at``).
    contributions, z : (K,).
    """
    size = rgb.shape[:2]
    mass = np.clip(upsample(patch_maps, size), 0, None)  # (K, H, W); bilinear keeps >= 0 anyway
    total = mass.sum(axis=(1, 2))
    total = np.where(total > 0, total, 1.0)  # an all-zero map: every share 0

    def share(region: np.ndarray) -> np.ndarray:
        return (mass * region).sum(axis=(1, 2)) / total

    border = border_band(size)
    textured = textured_pixels(rgb)
    flat = patch_maps.reshape(len(patch_maps), -1).astype(np.float64)
    top = max(1, int(round(TOP_FRACTION * flat.shape[1])))
    flat_total = np.where(flat.sum(axis=1) > 0, flat.sum(axis=1), 1.0)
    concentration = np.sort(flat, axis=1)[:, -top:].sum(axis=1) / flat_total
    return ImageProfile(int(index), share(subject), share(border), share(textured), concentration,
                        np.asarray(contributions, dtype=np.float64), np.asarray(z, dtype=np.float64),
                        float(subject.mean()), float(border.mean()), float(textured.mean()))


def border_band(size: tuple[int, int]) -> np.ndarray:
    """(H, W) bool: the outer ``BORDER_FRACTION`` of each side."""
    h, w = size
    bh, bw = int(round(BORDER_FRACTION * h)), int(round(BORDER_FRACTION * w))
    band = np.ones((h, w), bool)
    band[bh:h - bh, bw:w - bw] = False
    return band


def textured_pixels(rgb: np.ndarray) -> np.ndarray:
    """(H, W) bool: local variance of the grey image above the image's median local variance."""
    grey = np.asarray(rgb, dtype=np.float64).mean(axis=2)
    mean = uniform_filter(grey, TEXTURE_WINDOW, mode="reflect")
    var = np.clip(uniform_filter(grey * grey, TEXTURE_WINDOW, mode="reflect") - mean * mean, 0, None)
    return var > np.median(var)


def profile_kept(maps, mask, evidence=None) -> ImageProfile:
    """:func:`profile_image` of a ``KeptMaps`` and its ``SubjectMask`` (and its blur test, a
    ``RegionEvidence``, when there is one)."""
    profile = profile_image(maps.index, maps.patch_maps, maps.rgb, mask.at(maps.rgb.shape[:2]),
                            maps.contributions, maps.z)
    if evidence is None:
        return profile
    return replace(profile, evidence_subject=np.asarray(evidence.subject, np.float64),
                   evidence_background=np.asarray(evidence.background, np.float64))


def verdict_of(subject_share: float, subject_area: float) -> str:
    """"subject", "background" or "mixed": where the relevance is denser than a flat map's."""
    share = min(max(subject_share, 1e-6), 1 - 1e-6)
    area = min(max(subject_area, 1e-6), 1 - 1e-6)
    odds = (share / (1 - share)) / (area / (1 - area))
    if odds >= VERDICT_ODDS:
        return "subject"
    if odds <= 1 / VERDICT_ODDS:
        return "background"
    return "mixed"


def summarise(profiles: Sequence[ImageProfile]) -> list[DimensionSummary]:
    """Per dimension (in order), the means over ``profiles`` (an empty list: no summary)."""
    if not profiles:
        return []

    def mean(field: str) -> np.ndarray:
        return np.mean([getattr(p, field) for p in profiles], axis=0)

    subject, c = mean("subject"), np.stack([p.contributions for p in profiles])
    border, textured, concentration = mean("border"), mean("textured"), mean("concentration")
    area = float(np.mean([p.subject_area for p in profiles]))
    evidence = _evidence(profiles, area)
    return [DimensionSummary(k, len(profiles), float(subject[k]), float(border[k]), float(textured[k]),
                             float(concentration[k]), area, float(c[:, k].mean()),
                             float((c[:, k] > 0).mean()), verdict_of(float(subject[k]), area), **evidence[k])
            for k in range(len(subject))]


def _evidence(profiles: Sequence[ImageProfile], area: float) -> list[dict]:
    """Per dimension, the blur test's summary fields (empty dicts unless every profile has one)."""
    k = profiles[0].n_dims
    if any(p.evidence_subject is None for p in profiles):
        return [{} for _ in range(k)]
    on_subject = np.mean([p.evidence_subject for p in profiles], axis=0)
    on_background = np.mean([p.evidence_background for p in profiles], axis=0)
    spread = np.std([p.z for p in profiles], axis=0) if len(profiles) > 1 else np.abs(profiles[0].z)
    out = []
    for j in range(k):
        moved = on_subject[j] + on_background[j]
        share = float(on_subject[j] / moved) if moved > 0 else 0.5
        verdict = "none" if moved < NO_EVIDENCE * spread[j] else verdict_of(share, area)
        out.append({"evidence_share": share, "evidence_subject": float(on_subject[j]),
                    "evidence_background": float(on_background[j]), "evidence_verdict": verdict})
    return out


def selection_shares(profiles: Sequence[ImageProfile]) -> np.ndarray:
    """(K,) mean subject share per dimension over ``profiles`` (the matrix's column headers)."""
    return np.array([s.subject_share for s in summarise(profiles)])


def count_sentence(summaries: Sequence[DimensionSummary], what: str) -> str:
    """"of 16 dimensions, 6 look mostly at the background of {what}: d2, d5, ..." (and how many
    at the subject), ``what`` e.g. "these 3 images" or "cell 4"."""
    if not summaries:
        return f"no dimension profiled on {what} yet"
    by = {v: [s for s in summaries if s.verdict == v] for v in VERDICTS}
    background = sorted(by["background"], key=lambda s: s.subject_share)  # most background first
    subject = sorted(by["subject"], key=lambda s: -s.subject_share)

    def names(group):
        return ", ".join(s.label for s in group)

    text = f"of {len(summaries)} dimensions, {len(background)} look mostly at the background of {what}"
    text += f": {names(background)}" if background else ""
    text += f"; {len(subject)} at the subject" + (f": {names(subject)}" if subject else "")
    return text + f"; {len(by['mixed'])} at both"


def evidence_count_sentence(summaries: Sequence[DimensionSummary], what: str) -> str | None:
    """"blur test on {what}: 5 dimensions read their evidence mostly in the background's fine
    detail: d4, ...; 3 in the subject's: ...; 6 in both; 2 in neither: ..." (None unless every
    summary has a blur test)."""
    if not summaries or any(s.evidence_verdict is None for s in summaries):
        return None
    by = {v: [s for s in summaries if s.evidence_verdict == v] for v in EVIDENCE_VERDICTS}
    background = sorted(by["background"], key=lambda s: s.evidence_share)
    subject = sorted(by["subject"], key=lambda s: -s.evidence_share)

    def names(group):
        return ": " + ", ".join(s.label for s in group) if group else ""

    return (f"blur test on {what}: {len(background)} dimensions read their evidence mostly in the background's "
            f"fine detail{names(background)}; {len(subject)} in the subject's{names(subject)}; "
            f"{len(by['mixed'])} in both; {len(by['none'])} in neither{names(by['none'])}")


def read_profiles(run_dir: str | Path, indices: Sequence[int]) -> dict[int, ImageProfile]:
    """Profiles of the images of ``indices`` whose maps and subject masks are kept; never computes
    (torch-free, fast enough for a click: reading two small files per image)."""
    return {i: profile_kept(maps, mask) for i, (maps, mask) in read_maps_and_masks(run_dir, indices).items()}


__all__ = ["BORDER_FRACTION", "DimensionSummary", "EVIDENCE_VERDICTS", "NO_EVIDENCE", "evidence_count_sentence", "ImageProfile", "TEXTURE_WINDOW", "TOP_FRACTION",
           "VERDICTS", "VERDICT_ODDS", "border_band", "count_sentence", "profile_image", "profile_kept", "read_profiles",
           "selection_shares", "summarise", "textured_pixels", "verdict_of"]
