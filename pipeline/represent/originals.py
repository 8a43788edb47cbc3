"""A run's original image files as a browser can show them, and where the model's input lies in them.

The image viewer shows an image at full resolution. Formats every browser decodes (JPEG, PNG,
WebP, GIF) in a plain mode and upright are sent as they are; anything else (TIFF, BMP, 16-bit
greyscale PNG, CMYK JPEG, a photo whose EXIF orientation asks for a rotation, ...) is converted
once, to PNG (or JPEG when the source was a JPEG), and the conversion is cached as a sealed file
(:mod:`pipeline.store.sealed`) under ``<cache>/originals/<data fingerprint>/``. Conversion goes through
:func:`pipeline.data.scan.load_image_rgb`, the decoder the encoders use, so the picture shown is the
picture the model was given (upright, alpha on white, 16-bit scaled). Files are addressed through
:class:`pipeline.represent.thumbnails.RunImages` by index only (its containment check refuses records that
point outside the data root); a decompression bomb is refused with the reason.

:func:`model_input_box` says which part of the original the encoders saw: all encoders here
resize the shorter side to their input size and crop the centre square (CLIP's preprocessing,
Radford et al. 2021; the DINOv2 stand-in does the same), so the relevance maps, which are computed
on that model input (:func:`pipeline.explain.relevance.input_rgb`), cover the centre square of the original
and nothing of the border outside it.
"""
from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from pipeline.data.scan import BadImageError, load_image_rgb, probe_image
from pipeline.store.sealed import is_intact, write_sealed
from pipeline.represent.thumbnails import RunImages

# Formats sent as they are, with the modes a browser shows the way the model decoder reads them.
BROWSER_FORMATS = {
    "JPEG": ("image/jpeg", {"RGB", "L"}),
    "PNG": ("image/png", {"RGB", "RGBA", "L", "LA", "P", "1"}),
    "WEBP": ("image/webp", {"RGB", "RGBA"}),
    "GIF": ("image/gif", {"P", "L", "RGB", "RGBA"}),
}
EXIF_ORIENTATION = 0x0112
JPEG_QUALITY = 95  # conversions of JPEG sources (CMYK, rotated), 4:4:4: near-lossless for inspection


@dataclass(frozen=True)
class OriginalInfo:
    """What a file is, read from its header only (no pixels decoded).

    ``width`` and ``height`` are upright (after the EXIF orientation), as the viewer shows the
    picture and as the model saw it; ``as_is`` says whether a browser can be sent the file itself,
    ``reason`` why not.
    """

    width: int
    height: int
    format: str
    mode: str
    as_is: bool
    reason: str = ""


@dataclass(frozen=True)
class BrowserFile:
    """The file to send for one image: the original itself or its cached conversion."""

    path: Path
    mimetype: str
    width: int
    height: int
    converted: bool


def inspect(path: str | Path, max_pixels: int) -> OriginalInfo:
    """Header facts of ``path`` and whether it can be sent as it is.

    Raises
    ------
    BadImageError
        Missing, empty or unreadable file, or a decompression bomb (more than ``max_pixels``);
        the reason says which.
    """
    path = Path(path)
    width, height, _ = probe_image(path, max_pixels)  # the bomb check happens here
    try:
        with Image.open(path) as im:
            fmt, mode = (im.format or "").upper(), im.mode
            orientation = int(im.getexif().get(EXIF_ORIENTATION, 1) or 1)
            frames = int(getattr(im, "n_frames", 1) or 1)
    except Exception as e:  # probe_image read it; a second open failing means it changed meanwhile
        raise BadImageError(path, f"not a readable image ({type(e).__name__}: {e})") from e
    if fmt not in BROWSER_FORMATS:
        reason = f"{fmt or 'this format'} is not shown by browsers"
    elif mode not in BROWSER_FORMATS[fmt][1]:
        reason = f"{fmt} in mode {mode} is not shown by browsers as the model reads it"
    elif orientation != 1:
        reason = f"EXIF orientation {orientation} (rotated or mirrored)"
    elif fmt == "WEBP" and frames > 1:
        reason = "animated WebP (the model saw the first frame)"
    else:
        reason = ""
    return OriginalInfo(width, height, fmt, mode, as_is=not reason, reason=reason)


def cache_folder(cache_root: str | Path, images: RunImages) -> Path:
    """Where conversions of ``images``' files are kept: one folder per data set (its
    fingerprint, as for thumbnails), shared by all runs on the same data."""
    return Path(cache_root) / "originals" / images.data_key


def browser_file(images: RunImages, index: int, cache_root: str | Path) -> BrowserFile:
    """The file a browser is sent for image ``index`` of a run (converted once when needed).

    Raises
    ------
    pipeline.data.scan.PathRefused
        ``index`` is not an image of the run, or its record points outside the data root.
    BadImageError
        The file cannot be read, or is a decompression bomb.
    """
    source = images.source_path(index)
    info = inspect(source, images.max_pixels)
    if info.as_is:
        return BrowserFile(source, BROWSER_FORMATS[info.format][0], info.width, info.height, False)
    st = source.stat()
    # a changed file (size or mtime) gets a new conversion; the old one is never served for it
    key = hashlib.sha1(f"{images.ids[index]}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:20]
    as_jpeg = info.format == "JPEG"
    out = cache_folder(cache_root, images) / key[:2] / f"{key}.{'jpg' if as_jpeg else 'png'}"
    if not is_intact(out):  # missing or damaged (checksum): converted (again)
        write_sealed(out, convert(source, images.max_pixels, as_jpeg))
    return BrowserFile(out, "image/jpeg" if as_jpeg else "image/png", info.width, info.height, True)


def convert(path: str | Path, max_pixels: int, as_jpeg: bool = False) -> bytes:
    """``path`` decoded as the encoders decode it (upright 8-bit RGB), encoded as PNG or JPEG."""
    im = load_image_rgb(path, max_pixels)
    buf = io.BytesIO()
    if as_jpeg:
        im.save(buf, format="JPEG", quality=JPEG_QUALITY, subsampling=0)  # full-resolution colour
    else:
        im.save(buf, format="PNG", compress_level=3)  # one-time cost; level 3 is ~3x faster than 9
    return buf.getvalue()


def model_input_box(width: int, height: int) -> tuple[float, float, float]:
    """``(left, top, side)`` of the centre square of a ``width`` x ``height`` image, in its pixels:
    the part the encoders saw (shorter side resized to the input size, then a centre crop).

    The crop is computed on the resized image, so its edges may differ from this box by up to
    one input pixel (``side / 224`` pixels of the original).
    """
    side = float(min(width, height))
    return (width - side) / 2.0, (height - side) / 2.0, side
