"""Where each image of a data set was cut from: ``provenance.csv`` at the data set's root.

The demo set (:mod:`pipeline.data.demo.build`) writes one row per image: its ``path`` (relative to
the root), its ``source`` photo, the ``view_file`` of that photo it was cut from and the crop box
``crop_x``, ``crop_y``, ``crop_side`` in that view's pixels (for a fake: the region it was
regenerated from). Two images show the same region only when all of these agree; images of one
source photo with other boxes are other crops of it, and without provenance the region is unknown.
So the viewer links pan and zoom only between images of :data:`SAME_REGION`.

:func:`source_photo_file` finds the demo's source photo again (package photos, or Debian
wallpapers already unpacked in the cache: nothing is downloaded here), and :func:`region_pixels`
cuts a region out of it the way the demo's reals were made.
"""
from __future__ import annotations

import csv
import functools
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from pipeline.config import DataConfig
from pipeline.data.demo.sources import DEBIAN_SOURCES, package_photos, to_srgb
from pipeline.data.scan import load_image_rgb

PROVENANCE_FILE = "provenance.csv"
REQUIRED = ("path", "source", "view_file", "crop_x", "crop_y", "crop_side")

SAME_REGION = "same region"  # same source photo, view file and crop box
OTHER_CROP = "other crop"  # same source photo, another box (or view)
UNKNOWN = "region unknown"  # same source, but no provenance says which region

DEBIAN_MARKER = ".complete.json"  # written by sources.fetch_debian_package when an unpack finished


@dataclass(frozen=True)
class Region:
    """A square of one view of a source photo: ``(x, y)`` its top-left corner, ``side`` its size."""

    source: str
    view_file: str
    x: int
    y: int
    side: int


_cache: dict[Path, tuple[tuple[int, int], dict[str, Region]]] = {}
_lock = threading.Lock()


def read_provenance(root: str | Path) -> dict[str, Region] | None:
    """``{path: Region}`` from ``<root>/provenance.csv``; None when the data set has none.

    Read once per data root (again only when the file's size or mtime changes).

    Raises
    ------
    ValueError
        The file lacks a column or a row has a crop box that is not three integers (side > 0);
        the message names the file and the row.
    """
    path = Path(root) / PROVENANCE_FILE
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    stamp = (st.st_size, st.st_mtime_ns)
    with _lock:
        kept = _cache.get(path)
        if kept is not None and kept[0] == stamp:
            return kept[1]
    regions = _parse(path)
    with _lock:
        _cache[path] = (stamp, regions)
    return regions


def _parse(path: Path) -> dict[str, Region]:
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = [c for c in REQUIRED if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path}: missing column(s) {', '.join(missing)}")
        regions = {}
        for line, row in enumerate(reader, start=2):
            try:
                x, y, side = int(row["crop_x"]), int(row["crop_y"]), int(row["crop_side"])
            except (TypeError, ValueError):
                raise ValueError(f"{path}, line {line}: crop box {row['crop_x']!r}, {row['crop_y']!r}, "
                                 f"{row['crop_side']!r} is not three integers") from None
            if side <= 0:
                raise ValueError(f"{path}, line {line}: crop_side {side} is not positive")
            regions[row["path"]] = Region(row["source"], row["view_file"], x, y, side)
    return regions


def region_of(root: str | Path, rel_path: str) -> Region | None:
    """The region image ``rel_path`` (relative to ``root``) was cut from; None when unknown."""
    regions = read_provenance(root)
    return None if regions is None else regions.get(Path(rel_path).as_posix())


def relation(root: str | Path, a: str, b: str) -> str:
    """How two images of one source photo (paths relative to ``root``) relate: :data:`SAME_REGION`,
    :data:`OTHER_CROP`, or :data:`UNKNOWN` (no provenance for either of them)."""
    ra, rb = region_of(root, a), region_of(root, b)
    if ra is None or rb is None:
        return UNKNOWN
    return SAME_REGION if ra == rb else OTHER_CROP


# -- the demo's source photos --------------------------------------------------------------------
def source_photo_file(source: str, view_file: str, cache_dir: str | Path) -> Path | None:
    """The file ``view_file`` of demo source photo ``source`` on this machine, or None.

    Package photos (``python-packages/<key>``) are looked up in the installed packages; Debian
    wallpapers (``<package>/<file>``) in ``<cache_dir>/demo_sources/<package>/`` when it was
    unpacked completely (never fetched here: this runs while the analyst waits). The user's own
    photos are not found: the folders they came from are not recorded.
    """
    if source.startswith("python-packages/"):
        files = _package_photo_files().get(source, ())
        return next((f for f in files if f.name == view_file and f.is_file()), None)
    package, _, name = source.partition("/")
    spec = next((s for s in DEBIAN_SOURCES if s.package == package), None)
    root = Path(cache_dir) / "demo_sources" / package
    if spec is None or name != view_file or not (root / DEBIAN_MARKER).is_file():
        return None
    return next((f for f in root.glob(spec.photo_glob) if f.name == view_file and f.is_file()), None)


@functools.lru_cache(maxsize=1)
def _package_photo_files() -> dict[str, tuple[Path, ...]]:
    """``{source id: files}`` of the package photos, listed once per process (30 ms a listing:
    package versions are read; installed packages do not change under a running app)."""
    return {photo.id: photo.files for photo in package_photos()}


def region_pixels(photo: str | Path, region: Region, size: int = 256, max_pixels: int | None = None) -> np.ndarray:
    """The region of ``photo`` resized to ``size`` x ``size`` with Lanczos, as the demo's reals
    were made (:func:`pipeline.data.demo.build.render_real`): uint8 RGB, ``(size, size, 3)``.

    Raises
    ------
    ValueError
        The box is not inside the photo (the photo changed since the data set was built).
    """
    im = to_srgb(load_image_rgb(Path(photo), max_pixels or DataConfig.max_image_pixels))
    box = (region.x, region.y, region.x + region.side, region.y + region.side)
    if region.x < 0 or region.y < 0 or box[2] > im.width or box[3] > im.height:
        raise ValueError(f"{photo}: crop box {box} is outside the {im.width} x {im.height} photo")
    return np.asarray(im.resize((size, size), Image.Resampling.LANCZOS, box=box))


def difference_pixels(a: np.ndarray, b: np.ndarray, gain: float = 4.0) -> np.ndarray:
    """``|a - b| * gain`` per channel, clipped to 0..255 (uint8): where two pictures of one region
    differ, brighter = more."""
    if a.shape != b.shape:
        raise ValueError(f"cannot compare pictures of shapes {a.shape} and {b.shape}")
    diff = np.abs(a.astype(np.int16) - b.astype(np.int16)).astype(np.float32) * gain
    return np.clip(diff, 0, 255).astype(np.uint8)
