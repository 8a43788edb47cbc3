"""Relevance maps, their deletion check and cell concepts for a run, computed once and cached.

The app's background callbacks and the CLI call these getters with a run folder; each loads the
run's models through :func:`pipeline.model.run_models.load_run_models` (once per process), computes what is
missing and caches it inside the run (or inside an applied set's folder, ``<run>/applied/<name>``:
its images, explained with its run's models; ``pipeline.store.run_store.open_store``):

==========================================  ====================================================
``<run>/relevance/<image_id>.npz``           one image's maps (patch resolution), z, contributions,
                                             logit and the model-input RGB image
``<run>/relevance/faithfulness.json``        the deletion check summary (``pipeline.explain.faithfulness``)
``<run>/concepts/cell-<n>.json``             a cell's concepts; patch PNGs in ``concepts/cell-<n>/``
==========================================  ====================================================

Every cache entry carries a key: the run's model fingerprint (encoder fingerprint + sha256 of
``projection.pt`` and ``head.pt``), the relevant config section and, for images, the file's path,
size and mtime. A different key means the entry is recomputed. Writes are atomic
(``pipeline.store.run_store``), so concurrent workers at worst compute the same thing twice.
"""
from __future__ import annotations

import dataclasses
import functools
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from PIL import Image

from pipeline.explain.concepts import extract_concepts
from pipeline.data.scan import BadImageError, PathRefused, load_image_rgb
from pipeline.explain.faithfulness import deletion_check
from pipeline.model.run_models import RunModels, load_run_models, model_fingerprint
from pipeline.explain.overlays import png_bytes
from pipeline.data.reencode import ReencodeSpec
from pipeline.explain.relevance import RelevanceResult, input_rgb, minmax_normalise, relevance_maps, upsample
from pipeline.store.sealed import is_intact, read_sealed_json, write_sealed, write_sealed_json
from pipeline.store.run_store import RunStore, atomic_write_bytes, hash_obj, open_store

Progress = Callable[[int, int], None]
OnError = Callable[[int, str], None]
CACHE_VERSION = 1  # bump when the cached arrays' meaning changes
CONCEPTS_VERSION = 2  # bump when a cell's concepts file changes (2: every segment's image and label)
FAITHFULNESS_IMAGES = 8


@dataclass(frozen=True, eq=False)
class ImageMaps:
    """Relevance of one image, as the app shows it.

    ``maps`` (K, H, W) in [0, 1]; ``aggregate`` (H, W) signed logit per patch (> 0: fake);
    ``patch_maps`` (K, gh, gw) raw; ``z``, ``contributions`` (K,); ``logit``; ``rgb`` (H, W, 3)
    uint8, the model input the maps are aligned with.
    """

    index: int
    patch_maps: np.ndarray
    aggregate_patch: np.ndarray
    z: np.ndarray
    contributions: np.ndarray
    logit: float
    rgb: np.ndarray

    @functools.cached_property
    def maps(self) -> np.ndarray:
        return minmax_normalise(upsample(self.patch_maps, self.rgb.shape[:2]))

    @functools.cached_property
    def aggregate(self) -> np.ndarray:
        return upsample(self.aggregate_patch, self.rgb.shape[:2])


# -- models and images ---------------------------------------------------------------------------

def _models(run_dir, models: RunModels | None) -> RunModels:
    return models if models is not None else load_run_models(run_dir)


def _image_paths(store: RunStore, indices: Sequence[int]) -> list[Path | PathRefused]:
    """The files of ``indices`` (``RunStore.image_path``); a refused path stands in its slot."""
    out: list[Path | PathRefused] = []
    for i in indices:
        try:
            out.append(store.image_path(i))
        except PathRefused as e:
            out.append(e)
    return out


def _file_key(path: Path | PathRefused) -> dict:
    if isinstance(path, PathRefused):
        return {"refused": str(path)}
    try:
        st = path.stat()
        return {"path": str(path), "size": st.st_size, "mtime": st.st_mtime_ns}
    except OSError:
        return {"path": str(path)}


def _load_inputs(encoder, paths: Sequence[Path | PathRefused], cfg, indices: Sequence[int],
                 on_error: OnError | None) -> tuple[list[int], torch.Tensor | None]:
    """Preprocessed images, loaded as the run loaded them (with its controlled re-encoding, if
    any); bad files (and refused paths) go to ``on_error`` (or raise) and are left out."""
    spec = ReencodeSpec.parse(cfg.data.reencode)
    max_pixels = cfg.data.max_image_pixels
    good, tensors = [], []
    for index, path in zip(indices, paths):
        try:
            if isinstance(path, PathRefused):
                raise path
            image = spec(load_image_rgb(path, max_pixels)) if spec else \
                load_image_rgb(path, max_pixels, min_side=encoder.decode_min_side)
            tensors.append(encoder.preprocess(image))
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

def relevance_cache_path(run_dir: str | Path, image_id: str) -> Path:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in str(image_id))
    return Path(run_dir) / "relevance" / f"{safe}.npz"


def maps_images_per_pass(device) -> int:
    """Images per relevance pass: 1 on a CPU, where two in one pass cost as much per image as one
    (bench/relevance.py; the 16 backward passes already run at the CPU's matrix-product peak), so
    each image's maps are ready as early as possible; 8 on a GPU, where a pass is bound by kernel
    launches and memory (~300 MB per image) allows it."""
    return 8 if torch.device(device).type == "cuda" else 1


def get_maps(run_dir: str | Path, image_indices: Sequence[int], progress: Progress | None = None,
             *, models: RunModels | None = None, on_error: OnError | None = None) -> dict[int, ImageMaps]:
    """Relevance maps of the run's images ``image_indices`` (rows of ``records.csv``).

    Parameters
    ----------
    run_dir : run folder.
    image_indices : image indices; cached maps are read, the others computed and cached.
    progress : callable(done, total), per image.
    models : the run's models (default: ``pipeline.model.run_models.load_run_models(run_dir)``).
    on_error : callable(index, message) for unreadable images, which are then left out;
        without it a bad image raises ``pipeline.data.scan.BadImageError``.

    Returns
    -------
    dict index -> ImageMaps.
    """
    run = Path(run_dir)
    store = open_store(run)
    records = store.read_records()
    indices = _checked_indices(image_indices, len(records))
    cfg = store.config()
    base_key = {"v": CACHE_VERSION, "model": model_fingerprint(run),
                "relevance": dataclasses.asdict(cfg.relevance)}
    out: dict[int, ImageMaps] = {}
    todo: list[tuple[int, Path | PathRefused, str, str]] = []
    for i, path in zip(indices, _image_paths(store, indices)):
        key = hash_obj({**base_key, "file": _file_key(path)})
        cache = relevance_cache_path(run, records[i]["id"])
        cached = _read_maps(cache, key, i)
        if cached is not None:
            out[i] = cached
        else:
            todo.append((i, path, key, str(cache)))
    total = len(indices)
    if progress is not None:
        progress(len(out), total)
    if todo:
        m = _models(run, models)
        group = maps_images_per_pass(m.encoder.device)
        for s in range(0, len(todo), group):
            chunk = todo[s:s + group]
            good, batch = _load_inputs(m.encoder, [c[1] for c in chunk], cfg,
                                       [c[0] for c in chunk], on_error)
            if batch is not None:
                with m.lock:
                    result = relevance_maps(m.encoder, m.projection, m.head, batch,
                                            start_block=cfg.relevance.start_block,
                                            images_per_pass=group)
                rgb = input_rgb(m.encoder, batch)
                info = {c[0]: c for c in chunk}
                for j, i in enumerate(good):
                    maps = _image_maps(i, result.image(j), rgb[j])
                    _write_maps(Path(info[i][3]), info[i][2], maps)
                    out[i] = maps
            if progress is not None:
                progress(total - len(todo) + min(s + group, len(todo)), total)
    return {i: out[i] for i in indices if i in out}


def _image_maps(index: int, r: RelevanceResult, rgb: np.ndarray) -> ImageMaps:
    return ImageMaps(index, r.patch_maps[0], r.aggregate_patch[0], r.z[0], r.contributions[0],
                     float(r.logit[0]), rgb)


def _write_maps(path: Path, key: str, m: ImageMaps) -> None:
    buf = io.BytesIO()
    np.savez_compressed(buf, key=np.array(key), patch_maps=m.patch_maps,
                        aggregate_patch=m.aggregate_patch, z=m.z, contributions=m.contributions,
                        logit=np.float32(m.logit), rgb=m.rgb)
    atomic_write_bytes(path, buf.getvalue())


def _read_maps(path: Path, key: str, index: int) -> ImageMaps | None:
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as f:
            if str(f["key"]) != key:
                return None
            return ImageMaps(index, f["patch_maps"], f["aggregate_patch"], f["z"], f["contributions"],
                             float(f["logit"]), f["rgb"])
    except (OSError, ValueError, KeyError):
        return None  # a damaged cache entry is recomputed, never trusted


# -- faithfulness ----------------------------------------------------------------------------------

def get_faithfulness(run_dir: str | Path, progress: Progress | None = None, *,
                     models: RunModels | None = None, n_images: int = FAITHFULNESS_IMAGES,
                     fraction: float = 0.2, seed: int = 0) -> dict:
    """Deletion check of the run's relevance maps on ``n_images`` images (half real, half fake).

    Returns the JSON-able ``DeletionReport.summary()`` plus ``image_indices``; cached in
    ``<run>/relevance/faithfulness.json``.
    """
    run = Path(run_dir)
    store = open_store(run)
    records = store.read_records()
    cfg = store.config()
    indices = _balanced_sample(records, n_images, seed)
    key = hash_obj({"v": CACHE_VERSION, "model": model_fingerprint(run),
                    "relevance": dataclasses.asdict(cfg.relevance), "indices": indices,
                    "fraction": fraction, "seed": seed})
    cache = run / "relevance" / "faithfulness.json"
    saved = read_sealed_json(cache)
    if isinstance(saved, dict) and saved.get("key") == key:
        return saved
    m = _models(run, models)
    total = 2 * len(indices)
    maps = get_maps(run, indices, models=m, on_error=lambda i, msg: None,
                    progress=(lambda d, t: progress(d, total)) if progress else None)
    good = [i for i in indices if i in maps]
    _, batch = _load_inputs(m.encoder, _image_paths(store, good), cfg, good, None)
    if batch is None:
        raise ValueError(f"no readable image in the faithfulness sample of {run}")
    result = RelevanceResult(np.stack([maps[i].patch_maps for i in good]),
                             np.stack([maps[i].aggregate_patch for i in good]),
                             np.stack([maps[i].contributions for i in good]),
                             np.stack([maps[i].z for i in good]),
                             np.array([maps[i].logit for i in good], np.float32),
                             tuple(batch.shape[-2:]))
    with m.lock:
        report = deletion_check(m.encoder, m.projection, m.head, batch, result, fraction=fraction,
                                seed=seed, progress=(lambda d, t: progress(len(indices) + d, total))
                                if progress else None)
    summary = {**report.summary(), "key": key, "image_indices": good}
    write_sealed_json(cache, summary)
    return summary


def _balanced_sample(records: list[dict], n: int, seed: int) -> list[int]:
    rng = np.random.default_rng(seed)
    labels = np.array([int(r.get("label", 0) or 0) for r in records])
    picks = []
    for lab, want in ((0, n // 2), (1, n - n // 2)):
        pool = np.flatnonzero(labels == lab)
        picks.extend(rng.choice(pool, min(want, len(pool)), replace=False).tolist())
    if len(picks) < min(n, len(records)):  # one class is short: fill from the other
        rest = np.setdiff1d(np.arange(len(records)), picks)
        picks.extend(rng.choice(rest, min(n, len(records)) - len(picks), replace=False).tolist())
    return sorted(int(i) for i in picks)


# -- concepts --------------------------------------------------------------------------------------

def concepts_cache_path(run_dir: str | Path, cell: int) -> Path:
    return Path(run_dir) / "concepts" / f"cell-{int(cell)}.json"


def get_concepts(run_dir: str | Path, cell: int, progress: Progress | None = None, *,
                 models: RunModels | None = None) -> dict:
    """Concepts of one cell (``pipeline.explain.concepts``), cached as JSON with patch PNGs.

    ``progress(done, total, stage)`` is told each stage in words ("relevance maps of 40 images",
    "segments cut and embedded (images)", "clustering the segments").

    Returns
    -------
    dict with ``cell``, ``n_images`` (in the cell), ``n_images_used``, ``n_segments``,
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
    in_cell = [i for i, r in enumerate(records) if r.get("cell") == int(cell)]
    if not in_cell:
        raise ValueError(f"cell {cell} of run {run.name} has no images")
    cfg = store.config()
    cc = cfg.concepts
    max_images, max_per_image = cc.max_images, cc.max_segments_per_image
    rng = np.random.default_rng(cc.seed)
    used = sorted(rng.choice(in_cell, max_images, replace=False).tolist()) \
        if len(in_cell) > max_images else in_cell
    paths = _image_paths(store, used)
    key = hash_obj({"v": CACHE_VERSION, "v_concepts": CONCEPTS_VERSION, "model": model_fingerprint(run),
                    "relevance": dataclasses.asdict(cfg.relevance), "concepts": dataclasses.asdict(cc),
                    "max_images": max_images, "max_per_image": max_per_image,
                    "files": [_file_key(p) for p in paths]})
    cache = concepts_cache_path(run, cell)
    saved = read_sealed_json(cache)
    try:
        if saved.get("key") == key and all(is_intact(run / p) for c in saved["concepts"]
                                           for p in c["patches"]):
            return saved
    except (AttributeError, KeyError, TypeError):  # no cache, or one written by older code
        pass

    m = _models(run, models)
    skipped: list[dict] = []
    good, batch = _load_inputs(m.encoder, paths, cfg, used,
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
                                  max_segments_per_image=max_per_image,
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
    out = {"key": key, "cell": int(cell), "n_images": len(in_cell), "n_images_used": n,
           "n_segments": len(result.segments), "skipped": skipped, "concepts": concepts}
    write_sealed_json(cache, out)
    return out
