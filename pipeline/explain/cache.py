"""Relevance maps, their deletion check and cell concepts for a run, computed once and kept.

The app's background jobs and the CLI call these getters with a run folder; each is a derived
result of the run (:mod:`pipeline.store.derived`, described in :mod:`pipeline.explain.results`):
read when kept and current, else computed once across processes, with the run's models loaded
through :func:`pipeline.model.run_models.load_run_models` (once per process), and kept inside the
run (or inside an applied set's folder, ``<run>/applied/<name>``: its images, explained with its
run's models; ``pipeline.store.run_store.open_store``).

Every kept result carries a key: the run's model fingerprint (encoder fingerprint + sha256 of
``projection.pt`` and ``head.pt``), the relevant config section and, for images, the file's path,
size and mtime. A different key, or a damaged file, means the result is computed again.
"""
from __future__ import annotations

import functools
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from PIL import Image

from pipeline.data.as_run import load_as_run
from pipeline.data.scan import BadImageError, PathRefused
from pipeline.explain.concepts import extract_concepts
from pipeline.explain.faithfulness import deletion_check
from pipeline.explain.overlays import png_bytes
from pipeline.explain.relevance import RelevanceResult, input_rgb, minmax_normalise, relevance_maps, upsample
from pipeline.explain.results import (CACHE_VERSION, CONCEPTS_VERSION, FAITHFULNESS_IMAGES,  # noqa: F401
                                      concepts_cache_path, concepts_plan, faithfulness_result, image_paths,
                                      KeptMaps, maps_derived, relevance_cache_path)
from pipeline.model.run_models import RunModels, load_run_models, model_fingerprint
from pipeline.store.derived import Derived, get_each
from pipeline.store.run_store import open_store
from pipeline.store.sealed import write_sealed

Progress = Callable[[int, int], None]
OnError = Callable[[int, str], None]
Cancel = Callable[[], bool]


@dataclass(frozen=True, eq=False)
class ImageMaps(KeptMaps):
    """Relevance of one image, as the app shows it: the kept arrays (:class:`KeptMaps`, on the patch
    grid) plus ``maps`` (K, H, W) in [0, 1] and ``aggregate`` (H, W) signed logit per patch
    (> 0: fake), upsampled to ``rgb`` (H, W, 3), the model input the maps are aligned with.
    """

    @functools.cached_property
    def maps(self) -> np.ndarray:
        return minmax_normalise(upsample(self.patch_maps, self.rgb.shape[:2]))

    @functools.cached_property
    def aggregate(self) -> np.ndarray:
        return upsample(self.aggregate_patch, self.rgb.shape[:2])


# -- models and images ---------------------------------------------------------------------------

def _models(run_dir, models: RunModels | None) -> RunModels:
    return models if models is not None else load_run_models(run_dir)


def _load_inputs(encoder, paths: Sequence[Path | PathRefused], cfg, indices: Sequence[int],
                 on_error: OnError | None) -> tuple[list[int], torch.Tensor | None]:
    """Preprocessed images, loaded as the run saw them (:func:`pipeline.data.as_run.load_as_run`);
    bad files (and refused paths) go to ``on_error`` (or raise) and are left out."""
    good, tensors = [], []
    for index, path in zip(indices, paths):
        try:
            tensors.append(encoder.preprocess(load_as_run(path, cfg, min_side=encoder.decode_min_side)))
            good.append(index)
        except (BadImageError, PathRefused) as e:
            if on_error is None:
                raise
            on_error(index, str(e))
    return good, (torch.stack(tensors) if tensors else None)


def _checked_indices(indices: Sequence[int], n: int) -> list[int]:
    out = [int(i) for i in indices]
    bad = [i for i in out if not 0 <= i < n]
    if bad:
        raise IndexError(f"image indices {bad} are out of range for a run of {n} images")
    return out


# -- relevance maps --------------------------------------------------------------------------------

def maps_images_per_pass(device) -> int:
    """Images per relevance pass: 1 on a CPU, where two in one pass cost as much per image as one
    (bench/relevance.py; the 16 backward passes already run at the CPU's matrix-product peak), so
    each image's maps are ready as early as possible; 8 on a GPU, where a pass is bound by kernel
    launches and memory (~300 MB per image) allows it."""
    return 8 if torch.device(device).type == "cuda" else 1


def _dump_maps(m: ImageMaps, key: str) -> bytes:
    buf = io.BytesIO()
    np.savez_compressed(buf, key=np.array(key), patch_maps=m.patch_maps,
                        aggregate_patch=m.aggregate_patch, z=m.z, contributions=m.contributions,
                        logit=np.float32(m.logit), rgb=m.rgb)
    return buf.getvalue()


def maps_result(run_dir: str | Path, index: int, image_id: str, cfg, path: Path | PathRefused,
                fingerprint: str) -> Derived:
    """Image ``index``'s maps as a derived result (``<run>/relevance/<image_id>.npz``, sealed)."""
    return maps_derived(run_dir, index, image_id, cfg, path, fingerprint, make=ImageMaps, dump=_dump_maps)


def get_maps(run_dir: str | Path, image_indices: Sequence[int], progress: Progress | None = None,
             *, models: RunModels | None = None, on_error: OnError | None = None,
             should_cancel: Cancel | None = None) -> dict[int, ImageMaps]:
    """Relevance maps of the run's images ``image_indices`` (rows of ``records.csv``).

    Each image's maps are computed once, even when several processes ask for them at once
    (:func:`pipeline.store.derived.get_each`).

    Parameters
    ----------
    run_dir : run folder.
    image_indices : image indices; kept maps are read, the others computed and kept.
    progress : callable(done, total), per image.
    models : the run's models (default: ``pipeline.model.run_models.load_run_models(run_dir)``).
    on_error : callable(index, message) for unreadable images, which are then left out;
        without it a bad image raises ``pipeline.data.scan.BadImageError``.
    should_cancel : polled at each progress report; True stops with
        ``pipeline.store.derived.Cancelled``.

    Returns
    -------
    dict index -> ImageMaps, in the order asked.
    """
    run = Path(run_dir)
    store = open_store(run)
    records = store.read_records()
    indices = _checked_indices(image_indices, len(records))
    cfg = store.config()
    fingerprint = model_fingerprint(run)  # once for all the images
    paths = dict(zip(indices, image_paths(store, records, indices)))
    results = {i: maps_result(run, i, records[i]["id"], cfg, paths[i], fingerprint) for i in indices}

    def compute(todo: list[int], step: Progress | None):
        m = _models(run, models)
        group = maps_images_per_pass(m.encoder.device)
        for s in range(0, len(todo), group):
            chunk = todo[s:s + group]
            good, batch = _load_inputs(m.encoder, [paths[i] for i in chunk], cfg, chunk, on_error)
            if batch is not None:
                with m.lock:
                    result = relevance_maps(m.encoder, m.projection, m.head, batch,
                                            start_block=cfg.relevance.start_block,
                                            images_per_pass=group)
                rgb = input_rgb(m.encoder, batch)
                for j, i in enumerate(good):
                    yield i, _image_maps(i, result.image(j), rgb[j])  # kept as soon as computed
            if step is not None:
                step(min(s + group, len(todo)), len(todo))

    got = get_each(results, compute, progress=progress, should_cancel=should_cancel)
    return {i: got[i] for i in indices if i in got}


def _image_maps(index: int, r: RelevanceResult, rgb: np.ndarray) -> ImageMaps:
    return ImageMaps(index, r.patch_maps[0], r.aggregate_patch[0], r.z[0], r.contributions[0],
                     float(r.logit[0]), rgb)


# -- faithfulness ----------------------------------------------------------------------------------

def get_faithfulness(run_dir: str | Path, progress: Progress | None = None, *,
                     models: RunModels | None = None, n_images: int = FAITHFULNESS_IMAGES,
                     fraction: float = 0.2, seed: int = 0, should_cancel: Cancel | None = None) -> dict:
    """Deletion check of the run's relevance maps on ``n_images`` images (half real, half fake).

    Returns the JSON-able ``DeletionReport.summary()`` plus ``image_indices`` and ``key``; kept in
    ``<run>/relevance/faithfulness.json`` (:func:`pipeline.explain.results.faithfulness_result`).
    """
    run = Path(run_dir)
    store = open_store(run)
    records = store.read_records()
    result = faithfulness_result(run, n_images, fraction, seed, records=records)
    indices = result.inputs["indices"]

    def compute(progress: Progress | None) -> dict:
        cfg = store.config()
        m = _models(run, models)
        total = 2 * len(indices)
        maps = get_maps(run, indices, models=m, on_error=lambda i, msg: None,
                        progress=(lambda d, t: progress(d, total)) if progress else None)
        good = [i for i in indices if i in maps]
        _, batch = _load_inputs(m.encoder, image_paths(store, records, good), cfg, good, None)
        if batch is None:
            raise ValueError(f"no readable image in the faithfulness sample of {run}")
        relevance = RelevanceResult(np.stack([maps[i].patch_maps for i in good]),
                                    np.stack([maps[i].aggregate_patch for i in good]),
                                    np.stack([maps[i].contributions for i in good]),
                                    np.stack([maps[i].z for i in good]),
                                    np.array([maps[i].logit for i in good], np.float32),
                                    tuple(batch.shape[-2:]))
        with m.lock:
            report = deletion_check(m.encoder, m.projection, m.head, batch, relevance, fraction=fraction,
                                    seed=seed, progress=(lambda d, t: progress(len(indices) + d, total))
                                    if progress else None)
        return {**report.summary(), "image_indices": good}

    return result.get(compute, progress, should_cancel)


# -- concepts --------------------------------------------------------------------------------------

def get_concepts(run_dir: str | Path, cell: int, progress: Progress | None = None, *,
                 models: RunModels | None = None, should_cancel: Cancel | None = None) -> dict:
    """Concepts of one cell (``pipeline.explain.concepts``), kept as JSON with patch PNGs.

    ``progress(done, total, stage)`` is told each stage in words ("relevance maps of 40 images",
    "segments cut and embedded (images)", "clustering the segments").

    Returns
    -------
    dict with ``key``, ``cell``, ``n_images`` (in the cell), ``n_images_used``, ``n_segments``,
    ``skipped`` (unreadable images: index and message) and ``concepts``: a list (largest first)
    of ``{"id", "size" (segments), "n_images", "profile" (16 floats), "patches" (PNG paths
    relative to the run folder, most central first), "sources" (per patch: image index, image
    id, SLIC resolution, bbox), "images" (indices of every image a segment came from),
    "segments_real", "segments_fake", "segments_unlabelled" (segments from real / fake / unlabelled
    images: an applied set may have no labels)}``.
    """
    run = Path(run_dir)
    store = open_store(run)
    records = store.read_records()
    plan = concepts_plan(run, cell, records=records)
    return plan.result.get(lambda p: _compute_concepts(run, store, records, cell, plan, models, p),
                           progress, should_cancel)


def _compute_concepts(run: Path, store, records: list[dict], cell: int, plan, models, progress) -> dict:
    cfg = store.config()
    cc = cfg.concepts
    key = plan.result.key
    m = _models(run, models)
    skipped: list[dict] = []
    good, batch = _load_inputs(m.encoder, plan.paths, cfg, plan.used,
                               lambda i, msg: skipped.append({"index": i, "message": msg}))
    if batch is None:
        raise ValueError(f"no readable image in cell {cell} of run {run.name}")
    n = len(good)
    stages = {"relevance": f"relevance maps of {n} images", "segments": "segments cut and embedded (images)",
              "cluster": "clustering the segments"}

    def stage_progress(stage: str, done: int, total: int) -> None:
        if progress is not None:
            progress(done, total, stages[stage])

    with m.lock:
        result = extract_concepts(m.encoder, m.projection, m.head, batch, k=cc.k,
                                  resolutions=cc.slic_segments, keep_fraction=cc.keep_fraction,
                                  patches_per_concept=cc.patches_per_concept,
                                  max_segments_per_image=cc.max_segments_per_image,
                                  start_block=cfg.relevance.start_block, seed=cc.seed,
                                  progress=stage_progress)

    folder = run / "concepts" / f"cell-{int(cell)}"
    for old in folder.glob("*.png") if folder.exists() else []:
        if not old.name.startswith(key[:10]):
            old.unlink(missing_ok=True)
    concepts = []
    for j, concept in enumerate(result.concepts):
        patches, sources = [], []
        for r, s in enumerate(concept.central):
            rel = Path("concepts") / f"cell-{int(cell)}" / f"{key[:10]}-c{j}-{r}.png"
            write_sealed(run / rel, png_bytes(Image.fromarray(result.patches[s])))
            seg = result.segments[s]
            patches.append(rel.as_posix())
            sources.append({"image_index": good[seg.image], "image_id": records[good[seg.image]]["id"],
                            "resolution": seg.resolution, "bbox": list(seg.bbox)})
        member_images = [good[result.segments[m].image] for m in concept.members]
        labels = [int(records[i]["label"]) for i in member_images]
        by_label = np.bincount([v for v in labels if v >= 0], minlength=2)  # -1: unlabelled
        concepts.append({"id": j, "size": concept.size, "n_images": result.n_images(concept),
                         "profile": [float(v) for v in concept.profile],
                         "patches": patches, "sources": sources,
                         "images": sorted(set(member_images)),
                         "segments_real": int(by_label[0]), "segments_fake": int(by_label[1]),
                         "segments_unlabelled": sum(v < 0 for v in labels)})
    return {"cell": int(cell), "n_images": len(plan.in_cell), "n_images_used": n,
            "n_segments": len(result.segments), "skipped": skipped, "concepts": concepts}
