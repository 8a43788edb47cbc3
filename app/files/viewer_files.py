"""The image viewer's derived files: one image's relevance maps as transparent layers.

Under ``<cache>/app/<run key>/viewer/<i>/`` (see :meth:`app.state.context.AppContext.app_cache`):

=====================  ===========================================================================
``aggregate.png``       the signed aggregate map (orange: evidence for fake, blue: for real), RGBA
``d00.png`` .. ``d15``  each dimension's map (``inferno``, bright = relevant), RGBA
``meta.json``           ``{"index", "height", "width", "names"}``, written last (= ready)
=====================  ===========================================================================

The layers are drawn at the model-input size (the maps' own resolution) with transparency in
place of the photo, so the viewer lays them over the centre square of the full-resolution
original (:func:`pipeline.represent.originals.model_input_box`), with an opacity the analyst chooses.
Every file is sealed (:mod:`pipeline.store.sealed`): a damaged one makes the entry "not ready".
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from pipeline.data.provenance import difference_pixels, region_of, region_pixels, source_photo_file
from pipeline.data.scan import load_image_rgb
from pipeline.represent.originals import inspect

from pipeline.explain.overlays import png_bytes, relevance_layer, signed_layer
from pipeline.store.sealed import is_intact, read_sealed_json, write_sealed, write_sealed_json

from app.state.runs import RunView

AGGREGATE = "aggregate"


def layer_name(which: str | int) -> str:
    """File stem of a map: ``"aggregate"`` or dimension ``k`` -> ``"d07"``."""
    return AGGREGATE if which == AGGREGATE else f"d{int(which):02d}"


def layers_dir(cache_dir: Path, index: int) -> Path:
    return Path(cache_dir) / "viewer" / str(int(index))


def read_layers(cache_dir: Path, index: int) -> dict | None:
    """Image ``index``'s layers (their meta), or None when not drawn or any file is damaged."""
    folder = layers_dir(cache_dir, index)
    meta = read_sealed_json(folder / "meta.json")
    if not isinstance(meta, dict) or not all(is_intact(folder / f"{n}.png") for n in meta.get("names", [])):
        return None
    return meta


def layer_file(cache_dir: Path, index: int, name: str) -> Path | None:
    """Layer ``name`` of image ``index`` if it is one of its drawn layers (never another file)."""
    meta = read_sealed_json(layers_dir(cache_dir, index) / "meta.json")
    if not isinstance(meta, dict) or name not in meta.get("names", []):
        return None
    path = layers_dir(cache_dir, index) / f"{name}.png"
    return path if is_intact(path) else None


def prepare_layers(view: RunView, cache_dir: Path, index: int, get_maps: Callable,
                   progress: Callable[[str, int, int], None]) -> dict:
    """Compute (through ``get_maps``, which reads its own cache first) and draw image ``index``'s
    layers; returns their meta.

    Raises
    ------
    ValueError
        The image's maps cannot be computed (unreadable file); the message says why.
    """
    index = int(index)
    errors: dict[int, str] = {}
    results = get_maps(view.path, [index], progress=lambda done, total, *_: progress("relevance map", done, total),
                       on_error=lambda i, message: errors.__setitem__(int(i), message))
    if index not in results:
        raise ValueError(errors.get(index, f"no relevance maps were returned for image {index}"))
    result = results[index]

    def field(name):  # get_maps returns ImageMaps; stand-ins may return plain dicts
        return result[name] if isinstance(result, dict) else getattr(result, name)

    maps = np.asarray(field("maps"), dtype=np.float32)
    aggregate = np.asarray(field("aggregate"), dtype=np.float32)
    folder = layers_dir(cache_dir, index)
    names = [AGGREGATE] + [layer_name(k) for k in range(len(maps))]
    progress("drawing the map", 0, len(names))
    write_sealed(folder / f"{AGGREGATE}.png", png_bytes(signed_layer(aggregate)))
    for k in range(len(maps)):
        write_sealed(folder / f"{layer_name(k)}.png", png_bytes(relevance_layer(maps[k])))
    meta = {"index": index, "height": int(aggregate.shape[0]), "width": int(aggregate.shape[1]),
            "names": names}
    write_sealed_json(folder / "meta.json", meta)
    progress("drawing the map", len(names), len(names))
    return meta


# -- the subject's outline ---------------------------------------------------------------------
# ``viewer/<i>/subject.png``: the outline of image ``i``'s subject mask (its inside faintly tinted) (pipeline.explain.subject_mask,
# the foreground of DINOv2's patch features) as a transparent layer over the model input, drawn
# from the kept mask on the first request.
SUBJECT = "subject"
OUTLINE_SIZE = 224  # pixels a side of the drawn outline (stretched over the model's square)
OUTLINE_RGB, HALO_RGB = (190, 150, 255), (40, 20, 70)  # light violet on a dark halo: seen on any photo


def _grow(mask: np.ndarray, steps: int) -> np.ndarray:
    """``mask`` dilated by ``steps`` pixels (4-neighbourhood), without scipy."""
    out = mask.copy()
    for _ in range(steps):
        grown = out.copy()
        grown[1:] |= out[:-1]
        grown[:-1] |= out[1:]
        grown[:, 1:] |= out[:, :-1]
        grown[:, :-1] |= out[:, 1:]
        out = grown
    return out


SUBJECT_TINT = 45  # alpha of the faint tint that says which side of the line is the subject


def outline_layer(mask: np.ndarray) -> Image.Image:
    """An RGBA layer over the bool ``mask`` (H, W): a light line on a dark halo along its border,
    the subject side faintly tinted (which side is the subject), the background clear."""
    mask = np.asarray(mask, dtype=bool)
    edge = mask & ~(~_grow(~mask, 1))  # subject pixels touching the background
    edge = edge | (_grow(mask, 1) & ~mask)  # and background pixels touching the subject
    line, halo = _grow(edge, 1), _grow(edge, 3)
    rgba = np.zeros(mask.shape + (4,), dtype=np.uint8)
    rgba[mask] = (*OUTLINE_RGB, SUBJECT_TINT)
    rgba[halo] = (*HALO_RGB, 170)
    rgba[line] = (*OUTLINE_RGB, 255)
    return Image.fromarray(rgba, "RGBA")


def subject_file(view: RunView, cache_dir: Path, index: int) -> Path | None:
    """``subject.png`` of image ``index`` (drawn from its kept subject mask when first asked for),
    or None while no mask is kept."""
    from pipeline.explain.subject_mask import read_subject_mask

    path = layers_dir(cache_dir, index) / f"{SUBJECT}.png"
    mask = read_subject_mask(view.path, int(index))
    if mask is None:  # none kept (or stale: the image changed): never an old outline
        return None
    if not is_intact(path):
        write_sealed(path, png_bytes(outline_layer(mask.at((OUTLINE_SIZE, OUTLINE_SIZE)))))
    return path


# -- a demo fake's source region -----------------------------------------------------------------
# ``viewer/<i>/source.png``: the region of the source photo that image ``i`` was made from, cut and
# resized as the demo's reals were (pipeline.data.provenance.region_pixels), at the image's own
# size; ``difference.png``: |image - source region| amplified DIFFERENCE_GAIN times. Drawn on the
# first request, sealed, served from the cache after that.
REGION_NAMES = ("source", "difference")
DIFFERENCE_GAIN = 4.0


def source_of(view: RunView, index: int, photo_cache: Path):
    """``(region, photo file)`` of image ``index`` from the data set's provenance: ``(None, None)``
    without provenance for it, ``(region, None)`` when its source photo is not on this machine
    (``photo_cache``: the cache folder that holds the demo's unpacked sources)."""
    region = region_of(view.images.root, view.records[int(index)]["path"])
    if region is None:
        return None, None
    return region, source_photo_file(region.source, region.view_file, photo_cache)


def region_file(view: RunView, cache_dir: Path, index: int, name: str, photo_cache: Path) -> Path | None:
    """``source.png`` or ``difference.png`` of image ``index`` (drawn when first asked for);
    None when ``name`` is not one of them, the image is not square (the region is a square) or its
    source photo is not found.

    Raises
    ------
    ValueError
        The crop box does not fit the photo found (it changed since the data set was built).
    """
    if name not in REGION_NAMES:
        return None
    folder = layers_dir(cache_dir, index)
    path = folder / f"{name}.png"
    if is_intact(path):
        return path
    region, photo = source_of(view, index, photo_cache)
    info = inspect(view.images.source_path(index), view.images.max_pixels)
    if photo is None or info.width != info.height:
        return None
    source = region_pixels(photo, region, size=info.width, max_pixels=view.images.max_pixels)
    if not is_intact(folder / "source.png"):
        write_sealed(folder / "source.png", png_bytes(Image.fromarray(source)))
    if name == "difference":
        image = np.asarray(load_image_rgb(view.images.source_path(index), view.images.max_pixels))
        write_sealed(path, png_bytes(Image.fromarray(difference_pixels(image, source, DIFFERENCE_GAIN))))
    return path
