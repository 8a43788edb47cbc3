"""Visual concepts of a cell: relevant superpixels -> 16-d -> clusters (seed paper, section 2).

After ACE (Ghorbani, Wexler, Zou & Kim, "Towards Automatic Concept-based Explanations", NeurIPS
2019): each image is segmented at three resolutions with SLIC superpixels (Achanta et al. 2012;
ACE's ``n_segments`` 15 / 50 / 80, compactness 20, sigma 1). Unlike ACE, a relevance map selects
segments *before* clustering (method.md section 5): per resolution, the segments whose mean
relevance is in the top ``keep_fraction`` (and above the image's mean) are kept, at most
``max_segments_per_image`` per image (best first, alternating resolutions), so the work per
image is bounded (``pipeline.explain.cache`` also bounds the images per cell). The relevance map is
Chefer's rollout for the decision itself (target ``sign(logit) * logit``, one backward pass per
batch; ``pipeline.explain.relevance.decision_relevance``).

Each kept segment is cut out as ACE does (pixels outside the segment set to the mean colour, i.e.
0 in the encoder's normalised input, then the bounding box cropped and resized to the model input)
and embedded through encoder -> projection -> 16-d head. The cell's segments are clustered with
k-means (fixed seed) in that 16-d space; a concept is a cluster, shown by its most central
patches, with its size and its mean profile over the 16 dimensions.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pipeline.explain.relevance import decision_relevance, input_rgb, upsample

StageProgress = Callable[[str, int, int], None]

MAX_SEGMENTS_PER_IMAGE = 3  # default cap; keeps a 200-image cell to ~600 encoder passes
MIN_SEGMENT_AREA = 0.002  # share of the image below which a segment is noise (ACE: 0.001)


@dataclass(frozen=True)
class Segment:
    """One kept superpixel of one image."""

    image: int  # position of the image in the cell's list
    resolution: int  # SLIC n_segments it came from
    score: float  # mean relevance inside the segment
    bbox: tuple[int, int, int, int]  # (top, left, bottom, right), pixels of the model input
    area: float  # share of the image


@dataclass(eq=False)
class Concept:
    """A cluster of segments."""

    members: np.ndarray  # segment indices, closest to the centroid first
    profile: np.ndarray  # (16,) mean z of the members
    central: list[int]  # segment indices shown for the concept (distinct images first)

    @property
    def size(self) -> int:
        return int(len(self.members))


@dataclass(eq=False)
class ConceptResult:
    """Concepts of one cell, largest first, and everything needed to show them."""

    concepts: list[Concept]
    segments: list[Segment]
    z: np.ndarray  # (M, 16) embedding of every kept segment
    labels: np.ndarray  # (M,) concept of every segment
    patches: dict[int, np.ndarray] = field(default_factory=dict)  # segment -> (H, W, 3) uint8

    def n_images(self, concept: Concept) -> int:
        return len({self.segments[m].image for m in concept.members})


def segment_image(rgb: np.ndarray, importance: np.ndarray, resolutions: Sequence[int],
                  keep_fraction: float, max_segments: int,
                  compactness: float = 20.0, sigma: float = 1.0) -> list[tuple[np.ndarray, int, float]]:
    """Superpixels of one image that the relevance map marks important.

    Parameters
    ----------
    rgb : (H, W, 3) uint8 image (the model input).
    importance : (H, W) non-negative relevance.
    resolutions : SLIC ``n_segments`` per resolution (coarse to fine).
    keep_fraction : share of each resolution's segments kept (highest mean relevance, and only
        those above the image's mean relevance).
    max_segments : most segments returned, taken best first from each resolution in turn.

    Returns
    -------
    list of (mask (H, W) bool, resolution, score), best first within each resolution.
    """
    from skimage.segmentation import slic  # here, not at the top: a maps job never needs it

    per_resolution = []
    mean_importance = float(importance.mean())
    for n_segments in resolutions:
        labels = slic(rgb, n_segments=n_segments, compactness=compactness, sigma=sigma,
                      start_label=0)
        n_labels = int(labels.max()) + 1
        area = np.bincount(labels.ravel(), minlength=n_labels)
        score = np.bincount(labels.ravel(), weights=importance.ravel(), minlength=n_labels) / \
            np.maximum(area, 1)
        # Important = among the top ``keep_fraction`` *and* above the image's mean relevance, so a
        # small relevant region does not pull in background segments to fill the quota.
        valid = np.flatnonzero((area >= MIN_SEGMENT_AREA * labels.size) & (score > mean_importance))
        n_keep = int(np.ceil(keep_fraction * n_labels))
        best = valid[np.argsort(-score[valid], kind="stable")][:n_keep]
        per_resolution.append([(labels == s, n_segments, float(score[s])) for s in best])
    kept = []
    for rank in range(max(map(len, per_resolution), default=0)):
        for res in per_resolution:
            if rank < len(res) and len(kept) < max_segments:
                kept.append(res[rank])
    return kept


def cut_out(image: torch.Tensor, mask: np.ndarray) -> tuple[torch.Tensor, tuple[int, int, int, int]]:
    """ACE patch: (3, H, W) normalised image, (H, W) mask -> (3, H, W) patch and its bounding box.

    Outside the mask the input is set to 0 (the dataset mean colour in normalised space); the
    bounding box is cropped and resized back to (H, W).
    """
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    top, bottom, left, right = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    m = torch.from_numpy(mask).to(image.device)
    masked = torch.where(m.unsqueeze(0), image, torch.zeros((), dtype=image.dtype, device=image.device))
    crop = masked[:, top:bottom, left:right].unsqueeze(0)
    patch = F.interpolate(crop, size=tuple(image.shape[-2:]), mode="bilinear", align_corners=False,
                          antialias=True)[0]
    return patch, (int(top), int(left), int(bottom), int(right))


def extract_concepts(encoder, projection: nn.Module, head: nn.Module, images: torch.Tensor,
                     k: int = 3, resolutions: Sequence[int] = (15, 50, 80),
                     keep_fraction: float = 0.3, patches_per_concept: int = 8,
                     max_segments_per_image: int = MAX_SEGMENTS_PER_IMAGE, start_block: int = 0,
                     seed: int = 0, batch_size: int = 32, importance: np.ndarray | None = None,
                     progress: StageProgress | None = None) -> ConceptResult:
    """Concepts of one cell.

    Parameters
    ----------
    encoder, projection, head : the run's models (see ``pipeline.explain.relevance.relevance_maps``).
    images : (N, 3, H, W) preprocessed images of the cell.
    k : number of concepts (fewer when there are fewer segments).
    resolutions, keep_fraction, patches_per_concept : see ``pipeline.config.ConceptsConfig``.
    max_segments_per_image : cap on kept segments per image (bounds the encoder passes).
    start_block : first block of the relevance rollout that selects segments.
    seed : k-means seed.
    batch_size : patches per embedding pass (a quarter of it: images per relevance pass).
    importance : (N, H, W) relevance to select segments with; default: the decision map.
    progress : callable(stage, done, total); stages "relevance", "segments" (cut and
        embedded), "cluster".
    """
    n = len(images)
    if n == 0:
        raise ValueError("the cell has no images")
    report = progress or (lambda stage, done, total: None)
    rgb = input_rgb(encoder, images)
    size = tuple(images.shape[-2:])

    if importance is None:
        importance = _decision_maps(encoder, projection, head, images, start_block,
                                    max(1, batch_size // 4), report)
    elif importance.shape != (n, *size):
        raise ValueError(f"importance of shape {importance.shape} does not fit {n} images of {size}")
    report("relevance", n, n)

    # Segments are embedded as they are cut (a buffer of ``batch_size`` patches), so memory does
    # not grow with the cell; masks are kept to cut the few patches that are shown again.
    segments: list[Segment] = []
    masks: list[np.ndarray] = []
    z_parts: list[np.ndarray] = []
    buffer: list[torch.Tensor] = []

    def flush():
        if buffer:
            z_parts.append(_embed(encoder, projection, head, torch.stack(buffer)))
            buffer.clear()

    for i in range(n):
        for mask, resolution, score in segment_image(rgb[i], importance[i], resolutions,
                                                     keep_fraction, max_segments_per_image):
            patch, bbox = cut_out(images[i].float().cpu(), mask)
            buffer.append(patch)
            masks.append(mask)
            segments.append(Segment(i, resolution, score, bbox, float(mask.mean())))
            if len(buffer) == batch_size:
                flush()
        report("segments", i + 1, n)
    flush()
    if not segments:
        raise ValueError("no segment was kept in any image of the cell")
    z = np.concatenate(z_parts)

    from sklearn.cluster import KMeans  # here, not at the top: importing it costs a maps job ~1.5 s

    report("cluster", 0, 1)
    n_clusters = min(k, len(segments))
    km = KMeans(n_clusters=n_clusters, n_init=10, random_state=seed).fit(z)
    concepts = []
    for c in range(n_clusters):
        idx = np.flatnonzero(km.labels_ == c)
        dist = np.linalg.norm(z[idx] - km.cluster_centers_[c], axis=1)
        members = idx[np.argsort(dist, kind="stable")]
        concepts.append(Concept(members, z[members].mean(axis=0),
                                _central(members, segments, patches_per_concept)))
    order = sorted(range(n_clusters), key=lambda c: -concepts[c].size)
    concepts = [concepts[c] for c in order]
    relabel = {old: new for new, old in enumerate(order)}
    labels = np.array([relabel[int(l)] for l in km.labels_], dtype=np.int64)
    shown = sorted({m for c in concepts for m in c.central})
    shown_rgb = input_rgb(encoder, torch.stack(
        [cut_out(images[segments[m].image].float().cpu(), masks[m])[0] for m in shown]))
    report("cluster", 1, 1)
    return ConceptResult(concepts, segments, z, labels, dict(zip(shown, shown_rgb)))


def _decision_maps(encoder, projection, head, images, start_block, group, report) -> np.ndarray:
    """(N, H, W) decision relevance, ``group`` images per pass (the backward pass holds the
    attention of every block)."""
    maps = []
    for s in range(0, len(images), group):
        maps.append(decision_relevance(encoder, projection, head, images[s:s + group],
                                       start_block=start_block))
        report("relevance", min(s + group, len(images)), len(images))
    return upsample(np.concatenate(maps), tuple(images.shape[-2:]))


def _central(members: np.ndarray, segments: list[Segment], count: int) -> list[int]:
    """The ``count`` members closest to the centroid, one per image first, then the rest."""
    chosen, seen = [], set()
    for m in members:
        if segments[m].image not in seen:
            chosen.append(int(m))
            seen.add(segments[m].image)
        if len(chosen) == count:
            return chosen
    rest = [int(m) for m in members if int(m) not in chosen]
    return chosen + rest[:count - len(chosen)]


def _embed(encoder, projection, head, patches: torch.Tensor) -> np.ndarray:
    with torch.inference_mode():
        z, _ = head(projection(encoder.embed(patches.to(encoder.device))))
    return z.float().cpu().numpy().astype(np.float32)
