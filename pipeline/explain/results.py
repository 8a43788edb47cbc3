"""The explanations a run keeps, as derived results (:class:`pipeline.store.derived.Derived`): what
each depends on and where it lies. Torch-free: the app's web process reads them through here, the
job that computes them (:mod:`pipeline.explain.cache`) goes through the same objects.

==========================================  ====================================================
``<run>/relevance/<image_id>.npz``           one image's maps (``pipeline.explain.cache.ImageMaps``)
``<run>/relevance/faithfulness.json``        the deletion check summary (``pipeline.explain.faithfulness``)
``<run>/concepts/cell-<n>.json``             a cell's concepts; patch PNGs in ``concepts/cell-<n>/``
==========================================  ====================================================
"""
from __future__ import annotations

import dataclasses
import hashlib
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from pipeline.data.as_run import balanced_sample
from pipeline.data.scan import PathRefused, image_file
from pipeline.store.derived import Derived, model_fingerprint
from pipeline.store.run_store import RunStore, open_store
from pipeline.store.sealed import is_intact

CACHE_VERSION = 1  # bump when the cached arrays' meaning changes
CONCEPTS_VERSION = 2  # bump when a cell's concepts file changes (2: every segment's image and label)
FAITHFULNESS_IMAGES = 8
FAITHFULNESS_FILE = "relevance/faithfulness.json"


def passes_deletion_check(gain: float, win_rate: float) -> bool:
    """Whether a dimension's maps pass the check: hiding what they point at changes the dimension
    more than hiding random patches, on average (``gain > 0``) and on most images
    (``win_rate > 0.5``). A failing dimension's maps do not show what it depends on."""
    return gain > 0 and win_rate > 0.5


# -- images and their keys ------------------------------------------------------------------------

def image_paths(store: RunStore, records: list[dict], indices: Sequence[int]) -> list[Path | PathRefused]:
    """The files of ``indices`` (as ``RunStore.image_path``); a refused path stands in its slot."""
    root = store.data_root()
    out: list[Path | PathRefused] = []
    for i in indices:
        try:
            out.append(image_file(root, records[int(i)]["path"], f"record {i}"))
        except PathRefused as e:
            out.append(e)
    return out


def file_key(path: Path | PathRefused) -> dict:
    """What a result depends on of one image file: its path, size and mtime."""
    if isinstance(path, PathRefused):
        return {"refused": str(path)}
    try:
        st = path.stat()
        return {"path": str(path), "size": st.st_size, "mtime": st.st_mtime_ns}
    except OSError:
        return {"path": str(path)}


# -- relevance maps --------------------------------------------------------------------------------

def per_image_name(folder: str, image_id: str) -> str:
    """``<folder>/<image id>.npz`` with the id made safe for a file name (one kept file per image)."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in str(image_id))
    return f"{folder}/{safe}.npz"


def arrays_digest(*arrays: np.ndarray) -> str:
    """What a kept per-image result depends on: the exact arrays (bytes and shapes) it came from."""
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(a).tobytes() + str(a.shape).encode())
    return h.hexdigest()[:32]


def relevance_name(image_id: str) -> str:
    return per_image_name("relevance", image_id)


def relevance_cache_path(run_dir: str | Path, image_id: str) -> Path:
    return Path(run_dir) / relevance_name(image_id)


def maps_inputs(cfg, path: Path | PathRefused) -> dict:
    """What one image's maps depend on besides the models."""
    return {"v": CACHE_VERSION, "relevance": dataclasses.asdict(cfg.relevance), "file": file_key(path)}


@dataclass(frozen=True, eq=False)
class KeptMaps:
    """One image's maps as ``pipeline.explain.cache`` keeps them, read without torch: on the patch
    grid (``pipeline.explain.cache.ImageMaps`` upsamples them to ``rgb``'s size).

    ``patch_maps`` (K, gh, gw); ``aggregate_patch`` (gh, gw) signed (> 0: fake); ``z`` and
    ``contributions`` (K,); ``logit``; ``rgb`` (H, W, 3) uint8, the model input.
    """

    index: int
    patch_maps: np.ndarray
    aggregate_patch: np.ndarray
    z: np.ndarray
    contributions: np.ndarray
    logit: float
    rgb: np.ndarray


def _maps_loader(index: int, make: Callable):
    def load(data: bytes, key: str):
        with np.load(io.BytesIO(data), allow_pickle=False) as f:
            if str(f["key"]) != key:
                return None
            return make(index, f["patch_maps"], f["aggregate_patch"], f["z"], f["contributions"],
                        float(f["logit"]), f["rgb"])

    return load


def maps_derived(run_dir: str | Path, index: int, image_id: str, cfg, path, fingerprint: str, *,
                 make: Callable = KeptMaps, dump: Callable | None = None) -> Derived:
    """Image ``index``'s maps as a derived result (``<run>/relevance/<image_id>.npz``, sealed), read
    as ``make`` (the cache's torch-backed ``ImageMaps``, or torch-free :class:`KeptMaps`)."""
    return Derived(run_dir, relevance_name(image_id), maps_inputs(cfg, path), model=fingerprint,
                   dump=dump, load=_maps_loader(index, make))


def read_kept_maps(run_dir: str | Path, indices: Sequence[int], *,
                   records: list[dict] | None = None) -> dict[int, KeptMaps]:
    """The maps of ``indices`` that are already computed and current; never computes any.

    Read-only and torch-free (for the findings sheet, served by the web process): an image whose
    maps are missing, stale (other models, other file) or damaged is left out of the answer.
    Indices outside the run are left out too.
    """
    store = open_store(run_dir)
    records = store.read_records() if records is None else records
    wanted = [int(i) for i in indices if 0 <= int(i) < len(records)]
    if not wanted:
        return {}
    cfg = store.config()
    fingerprint = model_fingerprint(run_dir)
    out = {}
    for i, path in zip(wanted, image_paths(store, records, wanted)):
        kept = maps_derived(run_dir, i, records[i]["id"], cfg, path, fingerprint).read()
        if kept is not None:
            out[i] = kept
    return out


# -- the deletion check ----------------------------------------------------------------------------

def faithfulness_labels(records: list[dict]) -> list[int]:
    return [int(r.get("label", 0) or 0) for r in records]


def faithfulness_result(run_dir: str | Path, n_images: int = FAITHFULNESS_IMAGES, fraction: float = 0.2,
                        seed: int = 0, *, records: list[dict] | None = None) -> Derived:
    """The deletion check of the run's maps on ``n_images`` images (half real, half fake).

    ``inputs["indices"]``: the images it is computed on. ``records``: the run's, if already read.
    """
    store = open_store(run_dir)
    records = store.read_records() if records is None else records
    indices = balanced_sample(faithfulness_labels(records), n_images, seed)
    return Derived(run_dir, FAITHFULNESS_FILE,
                   {"v": CACHE_VERSION, "relevance": dataclasses.asdict(store.config().relevance),
                    "indices": indices, "fraction": fraction, "seed": seed})


def faithfulness_per_dimension(summary: dict) -> list[dict]:
    """Per dimension (in order) ``{"gain", "win_rate", "passes"}`` of a deletion check summary."""
    return [{"gain": float(d["gain"]), "win_rate": float(d["win_rate"]),
             "passes": bool(passes_deletion_check(d["gain"], d["win_rate"]))}
            for d in sorted(summary["per_dimension"], key=lambda d: d["dim"])]


# -- concepts --------------------------------------------------------------------------------------

def concepts_name(cell: int) -> str:
    return f"concepts/cell-{int(cell)}.json"


def concepts_cache_path(run_dir: str | Path, cell: int) -> Path:
    return Path(run_dir) / concepts_name(cell)


@dataclass
class ConceptsPlan:
    """A cell's concepts: the result, the cell's images, the seeded sample used and its files."""

    result: Derived
    in_cell: list[int]
    used: list[int]
    paths: list


def concepts_plan(run_dir: str | Path, cell: int, *, records: list[dict] | None = None) -> ConceptsPlan:
    """What a cell's concepts are computed from (at most ``concepts.max_images`` of its images,
    a seeded sample) and their result.

    Raises
    ------
    ValueError
        The cell has no images.
    """
    run = Path(run_dir)
    store = open_store(run)
    records = store.read_records() if records is None else records
    in_cell = [i for i, r in enumerate(records) if r.get("cell") == int(cell)]
    if not in_cell:
        raise ValueError(f"cell {cell} of run {run.name} has no images")
    cfg = store.config()
    cc = cfg.concepts
    rng = np.random.default_rng(cc.seed)
    used = sorted(rng.choice(in_cell, cc.max_images, replace=False).tolist()) \
        if len(in_cell) > cc.max_images else in_cell
    paths = image_paths(store, records, used)

    def patches_intact(saved: dict) -> bool:  # a damaged patch makes the whole entry stale
        return all(is_intact(run / p) for c in saved["concepts"] for p in c["patches"])

    result = Derived(run, concepts_name(cell),
                     {"v": CACHE_VERSION, "v_concepts": CONCEPTS_VERSION,
                      "relevance": dataclasses.asdict(cfg.relevance), "concepts": dataclasses.asdict(cc),
                      "max_images": cc.max_images, "max_per_image": cc.max_segments_per_image,
                      "files": [file_key(p) for p in paths]},
                     valid=patches_intact)
    return ConceptsPlan(result, in_cell, [int(i) for i in used], paths)


__all__ = ["CACHE_VERSION", "CONCEPTS_VERSION", "FAITHFULNESS_IMAGES", "ConceptsPlan", "KeptMaps",
           "concepts_cache_path",
           "concepts_name", "concepts_plan", "faithfulness_per_dimension", "faithfulness_result", "file_key",
           "image_paths", "maps_inputs", "passes_deletion_check", "read_kept_maps", "relevance_cache_path",
           "relevance_name"]
