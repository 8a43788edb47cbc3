"""Thumbnails and sprite sheets of a run's images, generated once and cached on disk.

Images are addressed by their *index* in the run's ``records.csv`` only. The file behind an index
is ``<data root>/<records.path>``, resolved (symbolic links followed) and refused unless it stays
inside the data root, so no path that comes from a browser, and no record edited to point at
``../../etc/passwd``, is ever opened.

Thumbnails are square JPEGs (the image fitted inside and centred on a neutral background) under
``<cache>/thumbnails/<data fingerprint>-<size>/<id[:2]>/<id>.jpg``: runs over the same data share
them. A *sprite* is one JPEG holding many thumbnails on a grid, each framed in a colour (the image
view draws a whole cell with one picture instead of one element per image).
"""
from __future__ import annotations

import hashlib
import io
import os
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from pipeline.config import DataConfig
from pipeline.data.scan import BadImageError, PathRefused, load_image_rgb
from pipeline.store.sealed import is_intact, write_sealed
from pipeline.store.run_store import atomic_write_bytes, open_store

THUMB_SIZE = 128  # pixels, side of the cached square thumbnails
BACKGROUND = (236, 236, 236)  # letterbox colour around non-square images
SPRITE_BACKGROUND = (250, 250, 250)  # between tiles and in empty slots of a sprite
EMPTY_SLOT = (175, 175, 175)  # dashed outline of an empty grid slot
_BADGE_FONTS = ("/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf",)
_SAFE_KEY = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def _safe_key(text: str) -> str:
    text = str(text)
    return text if _SAFE_KEY.match(text) else hashlib.sha1(text.encode("utf-8")).hexdigest()[:16]


def _encode_jpeg(im: Image.Image, quality: int = 85) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def _placeholder(size: int) -> Image.Image:
    """Grey tile with a dark cross, shown for images that cannot be decoded."""
    im = Image.new("RGB", (size, size), (200, 200, 200))
    draw = ImageDraw.Draw(im)
    draw.line((0, 0, size, size), fill=(90, 90, 90), width=max(1, size // 32))
    draw.line((0, size, size, 0), fill=(90, 90, 90), width=max(1, size // 32))
    return im


def _badge_font(size: int):
    """A bold font for badge letters of ``size`` px, or None when the letter would not be legible
    (the badge's colour still tells)."""
    if size < 11:
        return None
    for path in _BADGE_FONTS:
        try:
            return ImageFont.truetype(path, int(size * 0.8))
        except OSError:
            continue
    return ImageFont.load_default()


def _dashed_square(draw: ImageDraw.ImageDraw, x: int, y: int, side: int, rgb, dash: int = 4) -> None:
    for t in range(0, side, 2 * dash):
        e = min(t + dash, side) - 1
        draw.line((x + t, y, x + e, y), fill=rgb)
        draw.line((x + t, y + side - 1, x + e, y + side - 1), fill=rgb)
        draw.line((x, y + t, x, y + e), fill=rgb)
        draw.line((x + side - 1, y + t, x + side - 1, y + e), fill=rgb)


def open_image_reduced(path: Path, max_side: int, max_pixels: int) -> Image.Image:
    """Decode ``path`` into upright RGB no larger than ``max_side``; raise :class:`BadImageError`.

    JPEGs are decoded at a reduced scale (``load_image_rgb(min_side=...)``), which is what makes
    thumbnails of multi-megapixel photos cheap.
    """
    im = load_image_rgb(path, max_pixels, min_side=max_side)
    im.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    return im


def square_thumbnail(im: Image.Image, size: int) -> Image.Image:
    """Scale ``im`` (up or down) to fit a ``size`` x ``size`` square, centred on :data:`BACKGROUND`."""
    scale = size / max(im.width, im.height)
    im = im.resize((max(1, round(im.width * scale)), max(1, round(im.height * scale))),
                   Image.Resampling.LANCZOS)
    out = Image.new("RGB", (size, size), BACKGROUND)
    out.paste(im, ((size - im.width) // 2, (size - im.height) // 2))
    return out


class RunImages:
    """The images of one run, by index, with their cached thumbnails.

    Parameters
    ----------
    run_dir : str or Path
        The run folder (``meta.json`` names the data root, ``records.csv`` the files).
    cache_root : str or Path
        Where thumbnails are cached (``cfg.cache_path``).
    thumb_size : int
        Side of the cached square thumbnails.
    max_pixels : int
        Decompression-bomb guard for the source images.
    """

    def __init__(self, run_dir: str | Path, cache_root: str | Path, thumb_size: int = THUMB_SIZE,
                 max_pixels: int = DataConfig.max_image_pixels):
        self.store = open_store(run_dir)  # a run or an applied set (its own records and data root)
        meta = self.store.read_meta()
        self.run_dir = self.store.path
        self.root = self.store.data_root().resolve()
        self.ids = [str(r["id"]) for r in self.store.read_records()]
        self.thumb_size = int(thumb_size)
        self.max_pixels = int(max_pixels)
        fingerprint = (meta.get("data") or {}).get("fingerprint") or str(self.root)
        self.data_key = _safe_key(fingerprint)  # names this data set's cache folders
        self.thumb_dir = Path(cache_root) / "thumbnails" / f"{self.data_key}-{self.thumb_size}"

    def __len__(self) -> int:
        return len(self.ids)

    def _check_index(self, index) -> int:
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
            raise PathRefused(f"image index must be an integer, got {index!r}")
        index = int(index)
        if not 0 <= index < len(self.ids):
            raise PathRefused(f"image index {index} is out of range (run has {len(self)} images)")
        return index

    def source_path(self, index: int) -> Path:
        """The file of image ``index``, refused (``PathRefused``) unless inside the data root."""
        return self.store.image_path(self._check_index(index))

    def thumbnail_path(self, index: int) -> Path:
        """Where the thumbnail of image ``index`` is cached (it may not exist yet)."""
        index = self._check_index(index)
        key = _safe_key(self.ids[index])
        return self.thumb_dir / key[:2] / f"{key}.jpg"

    def has_thumbnail(self, index: int) -> bool:
        return self.thumbnail_path(index).exists()

    def thumbnail(self, index: int) -> Path:
        """Path of the cached thumbnail of image ``index``, generating it on first use.

        An image that cannot be decoded gets a placeholder tile (cached too, so it is not retried
        on every request) and a ``.err`` file next to it with the reason.
        """
        out = self.thumbnail_path(index)
        if is_intact(out):  # a damaged thumbnail (checksum) is made again, never served
            return out
        try:
            im = open_image_reduced(self.source_path(index), 2 * self.thumb_size, self.max_pixels)
            thumb = square_thumbnail(im, self.thumb_size)
        except BadImageError as e:
            thumb = _placeholder(self.thumb_size)
            atomic_write_bytes(out.with_suffix(".err"), e.reason.encode("utf-8"))
        write_sealed(out, _encode_jpeg(thumb))
        return out

    def thumbnail_error(self, index: int) -> str | None:
        """Why image ``index`` shows a placeholder, or None."""
        err = self.thumbnail_path(index).with_suffix(".err")
        return err.read_text(encoding="utf-8") if err.exists() else None

    def missing_thumbnails(self, indices: Iterable[int]) -> list[int]:
        return [int(i) for i in indices if not self.has_thumbnail(int(i))]

    def ensure_thumbnails(self, indices: Iterable[int],
                          progress: Callable[[int, int], None] | None = None,
                          workers: int | None = None) -> None:
        """Generate the missing thumbnails of ``indices`` in a small thread pool.

        ``progress(done, total)`` is called as thumbnails are written.
        """
        todo = self.missing_thumbnails(indices)
        total = len(todo)
        if progress:
            progress(0, total)
        if not total:
            return
        workers = workers or min(4, os.cpu_count() or 1)
        with ThreadPoolExecutor(max_workers=workers) as pool:
            for done, _ in enumerate(pool.map(self.thumbnail, todo), start=1):
                if progress and (done == total or done % 16 == 0):
                    progress(done, total)

    def preview(self, index: int, max_side: int = 448) -> Image.Image:
        """Image ``index`` decoded to RGB no larger than ``max_side`` (raises BadImageError)."""
        return open_image_reduced(self.source_path(index), max_side, self.max_pixels)

    def compose_sprite(self, order: np.ndarray, tile: int, frame_colors: Mapping[int, Sequence[int]],
                       out_path: str | Path, frame_width: int | None = None, quality: int = 85,
                       badges: Mapping[int, tuple[str, Sequence[int]]] | None = None) -> Path:
        """Draw the thumbnails of ``order`` (``(rows, cols)`` indices, -1 = empty) into one JPEG.

        Each thumbnail is scaled into a ``tile`` x ``tile`` slot and framed in
        ``frame_colors[index]`` (RGB); ``badges[index] = (letter, RGB)`` puts a small corner badge
        on it (the app: R / F for the image's label). Empty slots are drawn as dashed outlines on
        the light background, so they cannot be mistaken for images that failed to load (those
        show a crossed placeholder). Missing thumbnails are generated first.
        """
        order = np.asarray(order)
        rows, cols = order.shape
        fw = frame_width if frame_width is not None else max(2, tile // 14)
        inner = max(1, tile - 2 * fw)
        sheet = Image.new("RGB", (max(1, cols * tile), max(1, rows * tile)), SPRITE_BACKGROUND)
        draw = ImageDraw.Draw(sheet)
        badge = max(7, tile // 5)
        font = _badge_font(badge)
        for (r, c), index in np.ndenumerate(order):
            x0, y0 = c * tile, r * tile
            if index < 0:
                _dashed_square(draw, x0 + fw, y0 + fw, inner, EMPTY_SLOT)
                continue
            path = self.thumbnail(int(index))
            with Image.open(path) as im:
                if inner < self.thumb_size // 2:
                    im.draft("RGB", (inner, inner))  # decode JPEG at reduced scale: much faster
                im = im.convert("RGB")
                if im.size != (inner, inner):
                    im = im.resize((inner, inner), Image.Resampling.BILINEAR)
            color = tuple(int(v) for v in frame_colors.get(int(index), (128, 128, 128)))
            draw.rectangle((x0, y0, x0 + tile - 1, y0 + tile - 1), fill=color)
            sheet.paste(im, (x0 + fw, y0 + fw))
            if badges and int(index) in badges:
                letter, rgb = badges[int(index)]
                bx, by = x0 + fw, y0 + fw
                draw.rectangle((bx, by, bx + badge - 1, by + badge - 1), fill=tuple(int(v) for v in rgb))
                if font is not None:
                    draw.text((bx + badge / 2, by + badge / 2), letter, fill=(255, 255, 255), font=font,
                              anchor="mm")
        out_path = Path(out_path)
        write_sealed(out_path, _encode_jpeg(sheet, quality))
        return out_path
