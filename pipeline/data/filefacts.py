"""File facts: what an image *file* says about itself, read from its headers without decoding pixels.

A detector can learn the file instead of the image: in common benchmarks the real images are JPEGs
of one quality and the fakes PNGs of a few fixed sizes (Grommelt et al., "Fake or JPEG? Revealing
Common Biases in Generated Image Detection Datasets", 2024). These facts are what
``pipeline.checks.shortcuts`` tests for such shortcuts: container format (from the bytes and from the file
name), size, file size per pixel, JPEG quality (estimated from the quantisation tables), chroma
subsampling, progressive encoding, EXIF, ICC profile, colour mode and bit depth, and the text
metadata that generators leave behind (PNG text chunks with prompts or ``parameters``, EXIF or XMP
fields naming a generator, C2PA manifests).

Cost: :func:`facts_from_image` works on an ``Image.open`` handle that the scan already holds (Pillow
parses every JPEG marker up to the image data when it opens a file, and PNG chunks up to the first
``IDAT``); PNG text chunks after the image data are found by walking the chunk headers with seeks.
Pixels are never decoded.

JPEG quality: an IJG-compatible encoder (libjpeg, libjpeg-turbo, Pillow, most software) writes the
IJG example tables scaled for the requested quality; comparing a file's tables with those scaled for
every quality 1..100 recovers the quality. A table that matches none of them closely (a camera's
own, Photoshop's) is reported as ``"non-standard"`` rather than as a number (method.md section 8).
"""
from __future__ import annotations

import dataclasses
import functools
import os
import re
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
from PIL import Image

# ---------------------------------------------------------------------------------------------
# JPEG quantisation tables (IJG / ITU-T T.81 Annex K, natural row-major order, as Pillow returns them)
# ---------------------------------------------------------------------------------------------
IJG_LUMA = np.array([
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55,
    14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62,
    18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99], dtype=np.int64)
IJG_CHROMA = np.array([
    17, 18, 24, 47, 99, 99, 99, 99, 18, 21, 26, 66, 99, 99, 99, 99,
    24, 26, 56, 99, 99, 99, 99, 99, 47, 66, 99, 99, 99, 99, 99, 99] + [99] * 32, dtype=np.int64)


def ijg_table(base: np.ndarray, quality: int) -> np.ndarray:
    """The IJG table ``base`` scaled for ``quality`` (libjpeg's ``jpeg_quality_scaling``, baseline)."""
    quality = min(max(int(quality), 1), 100)
    scale = 5000 // quality if quality < 50 else 200 - 2 * quality
    return np.clip((base * scale + 50) // 100, 1, 255)


_QUALITIES = np.arange(1, 101)
_LUMA_STACK = np.stack([ijg_table(IJG_LUMA, q) for q in _QUALITIES])  # (100, 64)
_CHROMA_STACK = np.stack([ijg_table(IJG_CHROMA, q) for q in _QUALITIES])
# A table "matches" a quality when every entry is within this tolerance of the scaled IJG table:
# encoders that scale the IJG tables with other rounding stay within 1, other tables do not.
_TOLERANCE_ABS, _TOLERANCE_REL = 1, 0.05


def estimate_jpeg_quality(tables: Mapping[int, Any]) -> int | None:
    """IJG quality 1..100 whose tables are closest to ``tables`` (Pillow's ``im.quantization``), or
    None when the closest is not close (a non-standard table).

    The luma table (slot 0) is compared and, where present, the first chroma table (slot 1).
    """
    if not tables or 0 not in tables:
        return None
    try:  # bytes: the cheapest hashable copy of 8-bit tables (Pillow gives lists of ints)
        luma, chroma = bytes(tables[0]), bytes(tables[1]) if 1 in tables else None
    except ValueError:  # 16-bit tables (values above 255)
        luma, chroma = tuple(tables[0]), tuple(tables[1]) if 1 in tables else None
    return _closest_quality(luma, chroma)


@functools.lru_cache(maxsize=1024)  # a data set has few distinct tables; this runs once per table
def _closest_quality(luma: bytes | tuple[int, ...], chroma: bytes | tuple[int, ...] | None) -> int | None:
    if len(luma) != 64 or (chroma is not None and len(chroma) != 64):
        return None
    pairs = [(np.asarray(list(luma)), _LUMA_STACK)] + ([(np.asarray(list(chroma)), _CHROMA_STACK)] if chroma else [])
    err = sum(np.abs(stack - t).sum(axis=1) for t, stack in pairs)
    best = int(np.argmin(err))  # the lowest quality among equally close ones
    close = all((np.abs(t - stack[best]) <= np.maximum(_TOLERANCE_ABS, _TOLERANCE_REL * stack[best])).all()
                for t, stack in pairs)
    return int(_QUALITIES[best]) if close else None


# ---------------------------------------------------------------------------------------------
# Generator traces in text metadata
# ---------------------------------------------------------------------------------------------
# PNG text keys written by generator front ends (AUTOMATIC1111 "parameters", ComfyUI "prompt" and
# "workflow", InvokeAI "invokeai_metadata" / "sd-metadata" / "Dream", ...): the key alone is a trace.
GENERATOR_KEYS = {"parameters", "prompt", "workflow", "negative_prompt", "sd-metadata", "dream",
                  "invokeai_metadata", "invokeai_graph", "generation_data", "fooocus_scheme"}
# Words in a metadata value (Software, Comment, Description, XMP, UserComment) that name a generator
# or its settings; IPTC's "trainedAlgorithmicMedia" is the standard label of AI-generated content.
GENERATOR_WORDS = ("stable diffusion", "stable-diffusion", "midjourney", "dall-e", "dall·e", "dalle",
                   "novelai", "comfyui", "automatic1111", "invokeai", "firefly", "sdxl", "flux.1",
                   "fooocus", "diffusers", "leonardo.ai", "trainedalgorithmicmedia", "negative prompt",
                   "steps:", "sampler:", "cfg scale")
_MAX_TEXT = 1 << 16  # bytes of one text chunk read (a ComfyUI workflow can be large; the start suffices)
_MAX_EXIF = 1 << 20  # bytes of an EXIF block read (its orientation tag must be found)
_RAW_EXIF_KEY = b"Raw profile type exif"  # ImageMagick writes PNG EXIF as hex in this text chunk


def _generator_word(text: str) -> str | None:
    low = text.lower()
    return next((w for w in GENERATOR_WORDS if w in low), None)


# ---------------------------------------------------------------------------------------------
# The facts
# ---------------------------------------------------------------------------------------------
EXTENSION_FORMATS = {".jpg": "JPEG", ".jpeg": "JPEG", ".jpe": "JPEG", ".jfif": "JPEG", ".png": "PNG",
                     ".webp": "WEBP", ".bmp": "BMP", ".tif": "TIFF", ".tiff": "TIFF", ".gif": "GIF"}
_FAMILY = {"MPO": "JPEG"}  # a camera's multi-picture file is a JPEG with extra frames
_MODE_BITS = {"1": 1, "I;16": 16, "I;16B": 16, "I;16L": 16, "I;16N": 16, "I": 32, "F": 32}


@dataclass(frozen=True)
class FileFacts:
    """Header facts of one image file. ``to_row`` / ``from_row`` round-trip through CSV text.

    Only what the header says is stored; what follows from it (``size``, ``aspect``, ``pixels``,
    ``bytes_per_pixel``, ``format_mismatch``, ``jpeg_tables``, ``generator_metadata``) is derived,
    which keeps the per-file work of the scan small.
    """

    format: str  # container from the bytes (Pillow's format: JPEG, PNG, WEBP, MPO, ...)
    ext_format: str  # container the file name claims ("" when the extension is unknown)
    width: int  # after EXIF orientation, as the image is shown
    height: int
    file_bytes: int
    jpeg_quality: int | None  # IJG quality estimate; None when not JPEG or non-standard tables
    subsampling: str  # JPEG chroma subsampling: 4:4:4 | 4:2:2 | 4:2:0 | other | gray | "" (not JPEG)
    progressive: bool  # progressive JPEG or interlaced PNG/GIF
    exif: bool
    camera_make: str  # EXIF Make
    software: str  # EXIF Software or PNG "Software" text
    icc: bool  # embedded ICC profile
    mode: str  # Pillow mode (RGB, L, P, RGBA, CMYK, I;16, ...)
    bit_depth: int  # bits per channel (PNG: from IHDR)
    dpi: float  # horizontal resolution from JFIF / pHYs / EXIF (0 when absent)
    text_keys: str  # sorted ";"-joined keys of text metadata (PNG text chunks, JPEG comment, xmp)
    generator_hint: str  # what in the metadata names a generator ("" when nothing does)

    @property
    def is_jpeg(self) -> bool:
        return _FAMILY.get(self.format, self.format) == "JPEG"

    @property
    def format_mismatch(self) -> bool:
        """The bytes are not what the extension says (a .png holding JPEG data)."""
        return bool(self.ext_format) and _FAMILY.get(self.format, self.format) != self.ext_format

    @property
    def size(self) -> str:
        return f"{self.width}x{self.height}"

    @property
    def aspect(self) -> float:
        return round(self.width / self.height, 4) if self.height else 0.0

    @property
    def pixels(self) -> int:
        return self.width * self.height

    @property
    def bytes_per_pixel(self) -> float:
        return round(self.file_bytes / self.pixels, 5) if self.pixels else 0.0

    @property
    def jpeg_tables(self) -> str:
        """"standard" (IJG-scaled) | "non-standard" | "" (not JPEG)."""
        return ("standard" if self.jpeg_quality is not None else "non-standard") if self.is_jpeg else ""

    @property
    def generator_metadata(self) -> bool:
        return bool(self.generator_hint)

    @property
    def jpeg_quality_text(self) -> str:
        """"q95", "non-standard" or "" (not JPEG), for messages."""
        return f"q{self.jpeg_quality}" if self.jpeg_quality is not None else self.jpeg_tables

    def to_row(self) -> dict[str, str | int | float]:
        """Flat, CSV-able (the columns of :data:`ROW_COLUMNS`): booleans as 0/1, a missing
        quality as "", and the derived columns the shortcut check reads."""
        row: dict[str, str | int | float] = {}
        for name in ROW_COLUMNS:
            v = getattr(self, name)
            row[name] = "" if v is None else int(v) if isinstance(v, bool) else v
        return row

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> "FileFacts":
        """Inverse of :meth:`to_row` (values may be the strings a CSV reader returns)."""
        kwargs = {}
        for f in dataclasses.fields(cls):
            raw = row[f.name]
            kind = _FIELD_KINDS[f.name]
            if kind is bool:
                kwargs[f.name] = str(raw).strip().lower() in ("1", "true")
            elif kind is int:
                kwargs[f.name] = int(float(raw))
            elif kind is float:
                kwargs[f.name] = float(raw)
            elif kind == "optional_int":
                kwargs[f.name] = None if raw in ("", None) else int(float(raw))
            else:
                kwargs[f.name] = "" if raw is None else str(raw)
        return cls(**kwargs)


_FIELD_KINDS = {"progressive": bool, "exif": bool, "icc": bool, "width": int, "height": int, "file_bytes": int,
                "bit_depth": int, "dpi": float, "jpeg_quality": "optional_int",
                **{n: str for n in ("format", "ext_format", "subsampling", "camera_make", "software", "mode",
                                    "text_keys", "generator_hint")}}
DERIVED_COLUMNS = ["size", "aspect", "pixels", "bytes_per_pixel", "format_mismatch", "jpeg_tables",
                   "generator_metadata"]
ROW_COLUMNS = [f.name for f in dataclasses.fields(FileFacts)] + DERIVED_COLUMNS


@dataclass(frozen=True)
class FactColumn:
    """One fact as the shortcut check sees it: a column of :meth:`FileFacts.to_row`."""

    name: str
    kind: str  # "numeric" | "categorical" (booleans are categorical 0/1)
    words: str  # how messages name it ("image size", "EXIF")
    group: str  # facts that say the same thing (the five size facts), for a display that folds them
    is_value: bool = False  # messages say "every fake is PNG" (True) or "every fake has JPEG quality 96"
    boolean: bool = False  # messages say "EXIF only on real images (98% vs 0%)"


FACT_COLUMNS: tuple[FactColumn, ...] = (
    FactColumn("format", "categorical", "format", "format", is_value=True),
    FactColumn("format_mismatch", "categorical", "a format differing from the file extension", "format",
               boolean=True),
    FactColumn("size", "categorical", "image size", "size", is_value=True),
    FactColumn("width", "numeric", "width", "size"),
    FactColumn("height", "numeric", "height", "size"),
    FactColumn("aspect", "numeric", "aspect ratio", "size"),
    FactColumn("pixels", "numeric", "pixel count", "size"),
    FactColumn("file_bytes", "numeric", "file size", "compression"),
    FactColumn("bytes_per_pixel", "numeric", "bytes per pixel", "compression"),
    FactColumn("jpeg_quality", "numeric", "JPEG quality", "compression"),
    FactColumn("jpeg_tables", "categorical", "JPEG quantisation tables", "compression"),
    FactColumn("subsampling", "categorical", "chroma subsampling", "compression"),
    FactColumn("progressive", "categorical", "progressive encoding", "compression", boolean=True),
    FactColumn("exif", "categorical", "EXIF", "metadata", boolean=True),
    FactColumn("camera_make", "categorical", "camera make", "metadata"),
    FactColumn("software", "categorical", "software tag", "metadata"),
    FactColumn("icc", "categorical", "an ICC profile", "metadata", boolean=True),
    FactColumn("dpi", "numeric", "DPI", "metadata"),
    FactColumn("text_keys", "categorical", "text metadata keys", "metadata"),
    FactColumn("generator_metadata", "categorical", "generator text metadata (prompts, parameters)",
               "metadata", boolean=True),
    FactColumn("mode", "categorical", "colour mode", "mode"),
    FactColumn("bit_depth", "numeric", "bit depth", "mode"),
)


# ---------------------------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------------------------
def _exif_of(im: Image.Image, png: dict | None) -> Image.Exif | None:
    """The EXIF block, parsed from the header only (``PngImageFile.getexif`` would decode pixels
    when the block is not before the image data, so PNGs use the chunk walk's copy; like Pillow,
    an ImageMagick "Raw profile type exif" text chunk counts)."""
    try:
        if png is not None:
            data = png["exif"] or im.info.get("exif")
            raw = png["texts"].get(_RAW_EXIF_KEY.decode())
            if data is None and raw:
                data = bytes.fromhex("".join(raw.split("\n")[3:]))
            if not data:
                return None
            exif = Image.Exif()
            exif.load(data)
            return exif if len(exif) else None
        exif = im.getexif()  # JPEG/WebP: from the APP1 segment already read; TIFF: from the IFD
        return exif if len(exif) else None
    except Exception:  # a malformed EXIF block is "no usable EXIF", never a failed scan
        return None


def _exif_text(exif: Image.Exif) -> dict[str, str]:
    out = {}
    for tag, name in ((0x010F, "Make"), (0x0131, "Software"), (0x010E, "ImageDescription"),
                      (0x013B, "Artist")):
        v = exif.get(tag)
        if v:
            out[name] = str(v).strip("\x00 ").strip()
    try:
        comment = exif.get_ifd(0x8769).get(0x9286)  # UserComment: 8-byte charset prefix + text
        if comment:
            raw = comment if isinstance(comment, bytes) else str(comment).encode("utf-8", "replace")
            text = raw[8:] if raw[:8] in (b"ASCII\x00\x00\x00", b"UNICODE\x00", b"\x00" * 8) else raw
            enc = "utf-16" if raw[:8] == b"UNICODE\x00" else "utf-8"
            out["UserComment"] = text.decode(enc, "replace").strip("\x00 ").strip()
    except Exception:
        pass
    return out


def _png_chunks(path: str | Path) -> dict:
    """Walk a PNG's chunk headers (seeking over the image data): text chunks anywhere in the file,
    the eXIf block, C2PA (``caBX``), IHDR bit depth and interlace."""
    texts: dict[str, str] = {}
    found = {"texts": texts, "exif": None, "c2pa": False, "bit_depth": None, "interlace": False}
    try:
        with open(path, "rb") as fh:
            if fh.read(8) != b"\x89PNG\r\n\x1a\n":
                return found
            while True:
                head = fh.read(8)
                if len(head) < 8:
                    break
                length, ctype = struct.unpack(">I4s", head)
                if ctype == b"IHDR" and length >= 13:
                    data = fh.read(13)
                    found["bit_depth"], found["interlace"] = data[8], data[12] == 1
                    fh.seek(length - 13 + 4, 1)
                elif ctype in (b"tEXt", b"zTXt", b"iTXt"):
                    data = fh.read(min(length, _MAX_TEXT))
                    limit = 4096
                    if data.startswith(_RAW_EXIF_KEY + b"\x00"):  # ImageMagick's EXIF: read it whole
                        data += fh.read(min(length, _MAX_EXIF) - len(data))
                        limit = _MAX_EXIF
                    fh.seek(length - len(data) + 4, 1)
                    key, value = _png_text(ctype, data, limit)
                    if key:
                        texts[key] = value
                elif ctype == b"eXIf":
                    found["exif"] = fh.read(min(length, _MAX_EXIF))
                    fh.seek(length - len(found["exif"]) + 4, 1)
                elif ctype == b"IEND":
                    break
                else:
                    found["c2pa"] |= ctype == b"caBX"
                    fh.seek(length + 4, 1)
    except OSError:
        pass
    return found


def _png_text(ctype: bytes, data: bytes, limit: int = 4096) -> tuple[str, str]:
    """(key, the first ``limit`` bytes of the text) of a tEXt / zTXt / iTXt chunk's data."""
    key, _, rest = data.partition(b"\x00")
    try:
        if ctype == b"tEXt":
            value = rest
        elif ctype == b"zTXt":
            value = zlib.decompressobj().decompress(rest[1:], limit)
        else:  # iTXt: flag, method, language\0, translated keyword\0, text
            flag, rest = rest[:1], rest[2:]
            rest = rest.split(b"\x00", 2)[-1]
            value = zlib.decompressobj().decompress(rest, limit) if flag == b"\x01" else rest
    except (zlib.error, IndexError):
        value = b""
    return key.decode("latin-1"), value[:limit].decode("utf-8" if ctype == b"iTXt" else "latin-1", "replace")


_SAMPLING = {((1, 1), (1, 1), (1, 1)): "4:4:4", ((2, 1), (1, 1), (1, 1)): "4:2:2",
             ((2, 2), (1, 1), (1, 1)): "4:2:0"}


def _subsampling(im: Image.Image) -> str:
    layers = getattr(im, "layer", None) or ()  # JPEG components: (id, h, v, table)
    return _sampling_of(tuple(layers))


@functools.lru_cache(maxsize=64)  # a data set has few component layouts; this runs once per file
def _sampling_of(layers: tuple) -> str:
    if len(layers) == 1:
        return "gray"
    return _SAMPLING.get(tuple((h, v) for _, h, v, _ in layers), "other")


def _dpi(im: Image.Image, exif: Image.Exif | None) -> float:
    dpi = im.info.get("dpi")
    if dpi:
        try:
            return round(float(dpi[0]), 2)
        except (TypeError, ValueError, IndexError):
            pass
    if exif is not None and exif.get(0x011A):
        try:
            unit = exif.get(0x0128, 2)
            return round(float(exif[0x011A]) * (2.54 if unit == 3 else 1.0), 2)
        except (TypeError, ValueError, ZeroDivisionError):
            pass
    return 0.0


def _text_facts(im: Image.Image, png: dict | None, exif_fields: dict[str, str]) -> tuple[str, str, str]:
    """(text keys, generator hint, software) from PNG text chunks, Pillow's info, XMP and EXIF."""
    info = im.info
    if png:
        texts = dict(png["texts"])
    else:  # JPEG comment, GIF comment, WebP/TIFF text Pillow put in info
        texts = {}
        for key in _INFO_TEXT_KEYS:
            v = info.get(key)
            if v:
                texts[key] = v.decode("latin-1", "replace") if isinstance(v, bytes) else str(v)
    xmp = texts.pop("XML:com.adobe.xmp", None) or info.get("xmp")
    c2pa = (png and png["c2pa"]) or any(m == "APP11" and b"c2pa" in d[:64] for m, d in getattr(im, "applist", ()))
    if not texts and not xmp and not exif_fields and not c2pa:
        return "", "", ""  # the common case: nothing to read
    hints = [f"{'PNG ' if png else ''}text '{k}'" for k in sorted(texts) if k.lower() in GENERATOR_KEYS]
    for where, value in [*((f"text '{k}'", v) for k, v in sorted(texts.items())
                           if k.lower() not in GENERATOR_KEYS),
                         *((f"EXIF {k}", v) for k, v in exif_fields.items() if k != "Make")]:
        word = _generator_word(value)
        if word:
            hints.append(f"{where} mentions '{word}'")
    if xmp:
        word = _generator_word(xmp.decode("utf-8", "replace") if isinstance(xmp, bytes) else str(xmp))
        if word:
            hints.append(f"XMP mentions '{word}'")
    if c2pa:
        hints.append("C2PA manifest")
    software = exif_fields.get("Software") or texts.get("Software") or texts.get("software") or ""
    keys = sorted(set(texts) | ({"xmp"} if xmp else set()))
    return ";".join(keys), "; ".join(hints[:3]), _clip(software)


_INFO_TEXT_KEYS = ("comment", "Comment", "parameters", "prompt", "Software", "Description")
_NO_EXIF_GATE = frozenset(("exif", "xmp", "XML:com.adobe.xmp", "Raw profile type exif"))
_TEXT_GATE = frozenset(_INFO_TEXT_KEYS + ("xmp",))  # any of these in Pillow's info: read the text metadata


def facts_from_image(im: Image.Image, path: str | Path, n_bytes: int) -> FileFacts:
    """Facts of one file from its open (not loaded) Pillow handle; never decodes pixels.

    Parameters
    ----------
    im : the handle ``Image.open(path)`` returned (``pipeline.data.scan`` opens every file once).
    path : the file (its extension; PNG chunks after the image data are read from it).
    n_bytes : the file's size in bytes.
    """
    path = os.fspath(path)  # str operations: this runs once per file of the scan
    fmt = (im.format or "").upper()
    ext_format = EXTENSION_FORMATS.get(os.path.splitext(path)[1].lower(), "")
    is_jpeg = _FAMILY.get(fmt, fmt) == "JPEG"
    png = _png_chunks(path) if fmt == "PNG" else None
    info = im.info

    # a JPEG without an EXIF, XMP or raw-profile block has no EXIF: skip building an empty one
    # (Pillow's getexif looks in exactly these; this runs once per file of the scan)
    exif = None if is_jpeg and _NO_EXIF_GATE.isdisjoint(info) else _exif_of(im, png)
    exif_fields = _exif_text(exif) if exif is not None else {}
    w, h = im.size
    if exif is not None and exif.get(0x0112, 1) in (5, 6, 7, 8):
        w, h = h, w
    if png or exif_fields or "APP11" in getattr(im, "app", ()) or not _TEXT_GATE.isdisjoint(info):
        text_keys, hint, software = _text_facts(im, png, exif_fields)
    else:  # the common case: no text metadata at all
        text_keys, hint, software = "", "", ""
    quality = estimate_jpeg_quality(getattr(im, "quantization", None) or {}) if is_jpeg else None
    progressive = bool(info.get("progressive") or info.get("progression") or info.get("interlace")
                       or (png and png["interlace"]))
    return _new_facts(fmt, ext_format, w, h, int(n_bytes), quality, _subsampling(im) if is_jpeg else "",
                      progressive, exif is not None, _clip(exif_fields.get("Make", "")), software,
                      bool(info.get("icc_profile")), im.mode,
                      int((png and png["bit_depth"]) or _MODE_BITS.get(im.mode, 8)), _dpi(im, exif), text_keys, hint)


_FIELD_NAMES = tuple(f.name for f in dataclasses.fields(FileFacts))


def _new_facts(*values) -> FileFacts:
    """``FileFacts(*values)`` without the frozen ``__init__``'s per-field ``object.__setattr__``
    (5x slower here, a fifth of the facts' cost per file in the scan); the result is the same."""
    facts = object.__new__(FileFacts)
    facts.__dict__.update(zip(_FIELD_NAMES, values))
    return facts


def _clip(text: str, n: int = 40) -> str:
    """Short, one-line, CSV-safe text for a categorical fact."""
    return re.sub(r"\s+", " ", text).strip()[:n] if text else ""


def read_facts(path: str | Path) -> FileFacts:
    """Facts of one file by path (opens it; for tools and tests, the scan uses the open handle)."""
    path = Path(path)
    with Image.open(path) as im:
        return facts_from_image(im, path, path.stat().st_size)
