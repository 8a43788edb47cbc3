"""The app's derived files for a run, and the functions that make them.

Under ``<cache>/app/<run key>/`` (see :meth:`app.state.context.AppContext.app_cache`):

================================  ===============================================================
``grids/cell-<c>.json``           a cell's grid: rows, cols, tile size, slot -> image index, sprite
``grids/cell-<c>-<f>.json``       the grid of the cell's images that pass filter ``f``
                                  (:meth:`app.state.filters.ImageFilter.key`)
``grids/set-<h>[-<f>].json``      the grid of image set ``set:<h>`` (:mod:`app.state.imagesets`)
``sets/<h>.json``                 image set ``set:<h>``: its ids and title
``sprites/<key>.jpg``             the cell's framed thumbnails in one picture (key = content hash)
``attention/<i>/meta.json``       image ``i``'s contributions, logit, map size
``attention/<i>/*.jpg``           ``image``, ``aggregate`` and ``d00`` .. ``d15`` overlays
================================  ===============================================================

The deletion check and a cell's concepts are not copied here: the app reads the pipeline's own
results in the run folder (:mod:`pipeline.explain.results`), :func:`read_faithfulness` and
:func:`read_concepts`.

"Ready" means the JSON file exists; it is written last (atomically), after the pictures it names.
Every file here is sealed with its own checksum (:mod:`pipeline.store.sealed`): a damaged JSON file or a
damaged picture it names makes the entry "not ready", so it is computed again rather than served.
Nothing here imports Dash: the background jobs in :mod:`app.jobs.managers` and the benchmarks call these.
"""
from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
from PIL import Image

from pipeline.represent.grid import arrange
from pipeline.explain.overlays import FAKE_RGB, REAL_RGB, overlay_relevance, overlay_signed
from pipeline.explain.results import concepts_plan, faithfulness_per_dimension, faithfulness_result
from pipeline.store.sealed import is_intact, read_sealed_json, write_sealed, write_sealed_json

from app.state.filters import ImageFilter, mask
from app.state.imagesets import cell_key, slug
from app.state.runs import RunView

Progress = Callable[[str, int, int], None]

SPRITE_BUDGET = 4096  # largest side of a sprite, in pixels
FRAME_RIGHT = (44, 160, 44)  # green frame: the prediction is right
FRAME_WRONG = (214, 39, 40)  # red frame: the prediction is wrong
FRAME_UNLABELLED = (140, 149, 159)  # grey frame: no label, so no right or wrong (an applied set)
LABEL_BADGES = {0: ("R", REAL_RGB), 1: ("F", FAKE_RGB), -1: ("?", (110, 118, 129))}  # the label
SPRITE_VERSION = 2  # bump when the drawing of sprites changes (2: label badges, dashed empty slots)
DIM_SIZE = 112  # side of a per-dimension overlay


def attention_names(n_dims: int) -> tuple[str, ...]:
    """Files of one image's drawn maps: the model input, the aggregate, one per dimension."""
    return ("image", "aggregate") + tuple(f"d{k:02d}" for k in range(n_dims))


def _noop(stage: str, done: int, total: int) -> None:
    pass


# -- image grid ---------------------------------------------------------------------------------
def tile_size(rows: int, cols: int) -> int:
    """Pixels per thumbnail in a sprite: as large as the budget allows, 24 to 128."""
    return int(np.clip(SPRITE_BUDGET // max(rows, cols, 1), 24, 128))


def grid_path(cache_dir: Path, cell, filter_key: str = "") -> Path:
    """The grid file of ``cell`` or of an image set (``filter_key``: of its images that pass that
    filter)."""
    suffix = f"-{filter_key}" if filter_key else ""
    return Path(cache_dir) / "grids" / f"{slug(cell)}{suffix}.json"


def sprite_path(cache_dir: Path, key: str) -> Path:
    return Path(cache_dir) / "sprites" / f"{key}.jpg"


def read_grid(cache_dir: Path, cell, filter_key: str = "") -> dict | None:
    """The prepared grid of ``cell`` (with its sprite on disk), or None."""
    grid = read_sealed_json(grid_path(cache_dir, cell, filter_key))
    if not isinstance(grid, dict) or not is_intact(sprite_path(cache_dir, str(grid.get("sprite", "")))):
        return None
    return grid


def filtered_members(view: RunView, cell, flt: ImageFilter | None = None) -> np.ndarray:
    """The images of ``cell`` (or of an image set) that pass ``flt`` (all of them when None),
    ascending."""
    members = view.cell_members(cell)
    if flt is None or flt.keeps_all:
        return members
    return members[mask(view, flt)[members]]


def frame_colour(view: RunView, index: int) -> tuple[int, int, int]:
    """Green when the prediction is right, red when wrong, grey without a label."""
    return {"right": FRAME_RIGHT, "wrong": FRAME_WRONG, "unlabelled": FRAME_UNLABELLED}[view.outcome(index)]


def prepare_grid(view: RunView, cache_dir: Path, cell, progress: Progress | None = None,
                 flt: ImageFilter | None = None) -> dict:
    """Arrange ``cell``'s images (those that pass ``flt``) by similarity, draw its sprite, write
    the grid file.

    Steps: thumbnails of the cell (generated if missing, cached for all runs on the same data),
    the grid layout (:func:`pipeline.represent.grid.arrange` on the images' 16-d vectors), the sprite.
    ``cell`` may be an image set's key (:mod:`app.state.imagesets`): its images are arranged alike.
    """
    progress = progress or _noop
    cell = cell_key(cell)
    members = filtered_members(view, cell, flt)
    filter_key = flt.key() if flt is not None else ""
    if len(members) == 0:
        raise ValueError(f"cell {cell} of run {view.run_id} has no images"
                         + (f" that pass the filter ({flt.describe()})" if filter_key else ""))
    view.images.ensure_thumbnails(members, progress=lambda d, t: progress("thumbnails", d, t))
    progress("arranging", 0, 1)
    z = np.asarray(view.z16()[members], dtype=np.float32)
    local = arrange(z)
    order = np.where(local >= 0, members[np.maximum(local, 0)], -1)
    rows, cols = order.shape
    tile = tile_size(rows, cols)
    key = hashlib.sha1(f"{view.cache_key()}|{cell}|{tile}|{SPRITE_VERSION}|".encode()
                       + order.tobytes()).hexdigest()[:20]
    frames = {int(i): frame_colour(view, int(i)) for i in members}
    badges = {int(i): LABEL_BADGES[int(view.label[i])] for i in members}
    progress("drawing", 0, 1)
    view.images.compose_sprite(order, tile, frames, sprite_path(cache_dir, key), badges=badges)
    grid = {"run_id": view.run_id, "cell": cell, "rows": rows, "cols": cols, "tile": tile,
            "order": order.ravel().tolist(), "sprite": key, "n": int(len(members)), "filter": filter_key}
    write_sealed_json(grid_path(cache_dir, cell, filter_key), grid)
    progress("drawing", 1, 1)
    return grid


# -- attention ----------------------------------------------------------------------------------
def attention_dir(cache_dir: Path, index: int) -> Path:
    return Path(cache_dir) / "attention" / str(int(index))


def read_attention(cache_dir: Path, index: int) -> dict | None:
    """Image ``index``'s drawn maps (their meta), or None when not drawn or any file is damaged."""
    folder = attention_dir(cache_dir, index)
    meta = read_sealed_json(folder / "meta.json")
    if not isinstance(meta, dict):
        return None
    if meta.get("error") is None and not all(
            is_intact(folder / f"{n}.jpg") for n in attention_names(len(meta.get("contributions") or ()))):
        return None
    return meta


def attention_file(cache_dir: Path, index: int, name: str) -> Path | None:
    """Overlay ``name`` (one of :func:`attention_names`) of image ``index``, if it exists."""
    meta = read_sealed_json(attention_dir(cache_dir, index) / "meta.json")
    if not isinstance(meta, dict) or name not in attention_names(len(meta.get("contributions") or ())):
        return None
    path = attention_dir(cache_dir, index) / f"{name}.jpg"
    return path if is_intact(path) else None


def _jpeg(im: Image.Image, size: int | None = None) -> bytes:
    if size and im.size != (size, size):
        im = im.resize((size, size), Image.Resampling.BILINEAR)
    buf = io.BytesIO()
    im.convert("RGB").save(buf, format="JPEG", quality=88)
    return buf.getvalue()


def _get(result, name: str):
    """Field ``name`` of a ``get_maps`` entry (``ImageMaps`` object or plain dict)."""
    return result[name] if isinstance(result, dict) else getattr(result, name)


def render_attention(cache_dir: Path, index: int, result) -> dict:
    """Write the overlays of image ``index`` from one ``get_maps`` entry; returns its meta.

    The entry's ``rgb`` is the model input the maps are aligned with (the centre crop the encoder
    saw), so the overlays are drawn on it rather than on the original file.
    """
    maps = np.asarray(_get(result, "maps"), dtype=np.float32)
    aggregate = np.asarray(_get(result, "aggregate"), dtype=np.float32)
    rgb = np.asarray(_get(result, "rgb"), dtype=np.uint8)
    contributions = np.asarray(_get(result, "contributions"), dtype=np.float64).ravel()
    if maps.ndim != 3 or maps.shape[0] != len(contributions):
        raise ValueError(f"image {index}: expected one map per dimension ({len(contributions)}, H, W), "
                         f"got {maps.shape}")
    out = attention_dir(cache_dir, index)
    write_sealed(out / "image.jpg", _jpeg(Image.fromarray(rgb)))
    write_sealed(out / "aggregate.jpg", _jpeg(overlay_signed(rgb, aggregate)))
    for k in range(len(maps)):
        write_sealed(out / f"d{k:02d}.jpg", _jpeg(overlay_relevance(rgb, maps[k]), DIM_SIZE))
    meta = {"index": int(index), "contributions": [float(c) for c in contributions],
            "z": [float(v) for v in np.asarray(_get(result, "z")).ravel()],
            "logit": float(_get(result, "logit")), "height": int(rgb.shape[0]),
            "width": int(rgb.shape[1]), "error": None}
    write_sealed_json(out / "meta.json", meta)
    return meta


def _record_failure(cache_dir: Path, index: int, message: str) -> None:
    """An image whose maps cannot be computed (unreadable file): remembered with the reason."""
    write_sealed_json(attention_dir(cache_dir, index) / "meta.json",
                      {"index": int(index), "error": message})


def prepare_attention(view: RunView, cache_dir: Path, indices: Iterable[int], get_maps: Callable,
                      progress: Progress | None = None, per_pass: int = 1,
                      drawn: Callable[[list[int]], None] | None = None) -> list[int]:
    """Compute (through ``get_maps``) and draw the maps of the ``indices`` not drawn yet.

    The images go through ``get_maps`` ``per_pass`` at a time (one, by default: on a CPU two
    images in one relevance pass cost as much per image as one), and ``drawn(done)`` is told the
    indices drawn so far after each, so a view shows each image's maps as soon as they are ready.
    Returns the indices computed now. Unreadable images are recorded with the reason.
    """
    progress = progress or _noop
    missing = [int(i) for i in indices if read_attention(cache_dir, int(i)) is None]
    if not missing:
        return []
    progress("relevance maps (images)", 0, len(missing))
    done: list[int] = []
    for start in range(0, len(missing), per_pass):
        chunk = missing[start:start + per_pass]
        failed: dict[int, str] = {}
        results = get_maps(view.path, chunk,
                           progress=lambda d, t, *_: progress("relevance maps (images)", len(done) + d,
                                                              len(missing)),
                           on_error=lambda i, message: failed.__setitem__(int(i), message))
        for i in chunk:
            if i in results:
                render_attention(cache_dir, i, results[i])
            else:
                _record_failure(cache_dir, i, failed.get(i, "no maps were returned for this image"))
        done.extend(chunk)
        progress("relevance maps (images)", len(done), len(missing))
        if drawn is not None:
            drawn(list(done))
    return missing


def read_faithfulness(view: RunView) -> list[dict] | None:
    """Per dimension ``{"gain", "win_rate", "passes"}`` of the run's deletion check, or None when
    it is not computed (or not current): read from the pipeline's result in the run folder
    (:func:`pipeline.explain.results.faithfulness_result`, computed by ``get_faithfulness``)."""
    summary = faithfulness_result(view.path, records=view.records).read()
    return faithfulness_per_dimension(summary) if summary is not None else None


def dimension_order(contributions: list[float], logit: float) -> list[int]:
    """Dimensions by how much they push towards the predicted class, strongest first."""
    sign = 1.0 if logit >= 0 else -1.0
    c = np.asarray(contributions, dtype=np.float64) * sign
    return [int(k) for k in np.argsort(-c, kind="stable")]


# -- concepts -----------------------------------------------------------------------------------
def read_concepts(view: RunView, cell: int) -> dict | None:
    """``cell``'s concepts as ``get_concepts`` keeps them in the run folder (with ``n_skipped``,
    the number of unreadable images left out), or None when not computed (or not current)."""
    try:
        data = concepts_plan(view.path, int(cell), records=view.records).result.read()
    except ValueError:  # a cell without images has no concepts
        return None
    return {**data, "n_skipped": len(data.get("skipped") or ())} if data is not None else None


def concept_patch(view: RunView, cache_dir: Path | None, cell: int, k: int, j: int) -> Path | None:
    """File of patch ``j`` of concept ``k`` of ``cell``, only if it lies inside the run folder.

    ``cache_dir`` is not used (the concepts are the pipeline's, in the run folder); callers pass
    the app's cache folder as they do for the other files here."""
    data = read_concepts(view, cell)
    try:
        rel = data["concepts"][k]["patches"][j]
    except (TypeError, KeyError, IndexError):
        return None
    if k < 0 or j < 0:
        return None
    run_dir = view.path.resolve()
    path = (run_dir / rel).resolve()
    try:
        path.relative_to(run_dir)
    except ValueError:
        return None
    return path if is_intact(path) else None
