"""Computing what the atlas, the profiles and the subject masks need, once per run (the app's
background jobs and the CLI): each getter reads what is kept and computes the rest, with progress
and cancel as :mod:`pipeline.store.derived` passes them. Reading only, torch-free:
:mod:`pipeline.explain.subject_mask`, :mod:`pipeline.explain.profiles`, :mod:`pipeline.explain.atlas`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from pipeline.explain.atlas import ATLAS_EXAMPLES, ATLAS_IMAGES, atlas_result, build_atlas
from pipeline.explain.cache import ImageMaps, get_maps
from pipeline.explain.dimension_names import VOCABULARY, masked_region, name_dimensions
from pipeline.explain.profiles import ImageProfile, profile_kept
from pipeline.explain.region_evidence import PASS_IMAGES, RegionEvidence, blur_test, evidence_derived
from pipeline.explain.subject_features import subject_masks_of
from pipeline.explain.subject_mask import SubjectMask, mask_derived
from pipeline.model.run_models import RunModels, load_run_models
from pipeline.store.derived import get_each
from pipeline.store.run_store import open_store

Progress = Callable[..., None]
Cancel = Callable[[], bool]
OnError = Callable[[int, str], None]
MASKS_PER_PASS = 16  # images per DINOv2 forward for the masks


def _maps_and_masks(run_dir, indices, progress, models, on_error, should_cancel, passes: int = 2
                    ) -> tuple[dict[int, ImageMaps], dict[int, SubjectMask]]:
    """Maps (computed where missing) then masks; ``progress(done, total)`` counts both passes (of
    ``passes`` a caller goes on with)."""
    run = Path(run_dir)
    indices = [int(i) for i in indices]
    total = passes * len(indices)
    maps = get_maps(run, indices, models=models, on_error=on_error, should_cancel=should_cancel,
                    progress=(lambda d, t: progress(d, total)) if progress else None)
    store = open_store(run)
    records, cache_dir = store.read_records(), store.config().cache_path
    results = {i: mask_derived(run, i, records[i]["id"], maps[i].rgb) for i in indices if i in maps}

    def compute(todo: list[int], step):
        for s in range(0, len(todo), MASKS_PER_PASS):
            chunk = todo[s:s + MASKS_PER_PASS]
            for i, (score, mask) in zip(chunk, subject_masks_of(np.stack([maps[i].rgb for i in chunk]), cache_dir)):
                yield i, SubjectMask(i, score, mask)
            if step is not None:
                step(min(s + MASKS_PER_PASS, len(todo)), len(todo))

    masks = get_each(results, compute, should_cancel=should_cancel,
                     progress=(lambda d, t: progress(len(indices) + d, total)) if progress else None)
    return maps, masks


def _blur_tests(run_dir, maps: dict[int, ImageMaps], masks: dict[int, SubjectMask], models, progress,
                should_cancel) -> dict[int, RegionEvidence]:
    """The blur test of every image with maps and a mask (kept ones read, the others computed)."""
    run = Path(run_dir)
    records = open_store(run).read_records()
    subjects = {i: masks[i].at(maps[i].rgb.shape[:2]) for i in maps if i in masks}
    results = {i: evidence_derived(run, i, records[i]["id"], maps[i].rgb, subjects[i]) for i in subjects}
    loaded = [models]

    def compute(todo: list[int], step):
        if loaded[0] is None:
            loaded[0] = load_run_models(run)
        for s in range(0, len(todo), PASS_IMAGES):
            chunk = todo[s:s + PASS_IMAGES]
            tests = blur_test(loaded[0], np.stack([maps[i].rgb for i in chunk]), np.stack([subjects[i] for i in chunk]), chunk)
            yield from zip(chunk, tests)
            if step is not None:
                step(min(s + PASS_IMAGES, len(todo)), len(todo))

    return get_each(results, compute, progress=progress, should_cancel=should_cancel)


def _profiled(run_dir, indices, progress, models, on_error, should_cancel, with_blur_test: bool = True
              ) -> tuple[dict, list[ImageProfile]]:
    """``(maps, profiles)`` of ``indices``: maps, subject masks and blur tests (each kept, computed
    where missing); ``progress(done, total)`` counts the passes."""
    indices = [int(i) for i in indices]
    total = (3 if with_blur_test else 2) * len(indices)
    maps, masks = _maps_and_masks(run_dir, indices, (lambda d, t: progress(d, total)) if progress else None,
                                  models, on_error, should_cancel, passes=3 if with_blur_test else 2)
    if not with_blur_test:
        return maps, [profile_kept(maps[i], masks[i]) for i in indices if i in maps and i in masks]
    tests = _blur_tests(run_dir, maps, masks, models,
                        (lambda d, t: progress(2 * len(indices) + d, total)) if progress else None, should_cancel)
    return maps, [profile_kept(maps[i], masks[i], tests[i]) for i in indices if i in tests]


def get_subject_masks(run_dir: str | Path, indices: Sequence[int], progress: Progress | None = None, *,
                      models: RunModels | None = None, on_error: OnError | None = None,
                      should_cancel: Cancel | None = None) -> dict[int, SubjectMask]:
    """Subject masks of ``indices``: kept ones read, the others computed (the images' maps too, when
    they are not kept: a mask is aligned with its maps). ``progress(done, total)``: maps, then masks."""
    return _maps_and_masks(run_dir, indices, progress, models, on_error, should_cancel)[1]


def get_profiles(run_dir: str | Path, indices: Sequence[int], progress: Progress | None = None, *,
                 models: RunModels | None = None, on_error: OnError | None = None,
                 should_cancel: Cancel | None = None, with_blur_test: bool = False) -> dict[int, ImageProfile]:
    """Profiles of ``indices`` (maps and masks computed where missing, then kept), with their blur
    tests when asked (:mod:`pipeline.explain.region_evidence`: three forwards per image)."""
    return {p.index: p for p in _profiled(run_dir, indices, progress, models, on_error, should_cancel,
                                          with_blur_test)[1]}


def get_atlas(run_dir: str | Path, progress: Progress | None = None, *, n_images: int | None = None,
              seed: int = 0, models: RunModels | None = None, should_cancel: Cancel | None = None,
              recompute: bool = False) -> dict:
    """The run's atlas (:mod:`pipeline.explain.atlas`): read if kept, else computed and kept.

    ``progress(done, total, stage)``, stage in words ("relevance maps, subject masks and blur
    tests of 64 images", "naming the dimensions (CLIP)").
    """
    run = Path(run_dir)
    records = open_store(run).read_records()
    result = atlas_result(run, ATLAS_IMAGES if n_images is None else n_images, seed, records=records)
    indices = result.inputs["indices"]

    def compute(report: Progress | None) -> dict:
        if not indices:
            raise ValueError(f"run {run.name} has no image to profile")
        skipped: list[dict] = []
        stage = f"relevance maps, subject masks and blur tests of {len(indices)} images"
        maps, profiles = _profiled(run, indices, (lambda d, t: report(d, t, stage)) if report else None,
                                   models, lambda i, msg: skipped.append({"index": i, "message": msg}),
                                   None)  # cancel already checked by ``report``
        if not profiles:
            raise ValueError(f"no readable image in the atlas sample of run {run.name}")
        names = _names(run, maps, profiles, models, report)
        return {**build_atlas(profiles, records, names, VOCABULARY), "skipped": skipped}

    return result.get(compute, progress, should_cancel, recompute=recompute)


def _names(run: Path, maps: dict[int, ImageMaps], profiles: list[ImageProfile], models, report):
    """CLIP-only names of each dimension from its highest images' regions (None without a text tower)."""
    m = models if models is not None else load_run_models(run)
    if not m.encoder.has_text_tower:
        return None
    if report:
        report(0, 1, "naming the dimensions (CLIP)")
    z = np.stack([p.z for p in profiles])
    regions = []
    for k in range(z.shape[1]):
        top = np.argsort(-z[:, k], kind="stable")[:ATLAS_EXAMPLES]
        regions.append([masked_region(maps[profiles[j].index].rgb, maps[profiles[j].index].maps[k]) for j in top])
    with m.lock:
        names = name_dimensions(m.encoder, regions)
    if report:
        report(1, 1, "naming the dimensions (CLIP)")
    return names


__all__ = ["get_atlas", "get_profiles", "get_subject_masks"]
