"""File facts: what an image *file* says about itself, read from its headers without decoding pixels.

A detector can learn the file instead of the image: in common benchmarks the real images are JPEGs
of one quality and the fakes PNGs of a few fixed sizes (Grommelt et al., "Fake or JPEG? Revealing
Common Biases in Generated Image Detection Datasets", 2024). These facts are what
``pipeline.shortcuts`` tests for such shortcuts: container format (from the bytes and from the file
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


_SCALED = {q: (ijg_table(IJG_LUMA, q), ijg_table(IJG_CHROMA, q)) for q in range(1, 101)}
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
    luma = np.asarray(list(tables[0]), dtype=np.int64)
    chroma = np.asarray(list(tables[1]), dtype=np.int64) if 1 in tables else None
    if luma.shape != (64,) or (chroma is not None and chroma.shape != (64,)):
        return None
    best, best_err = None, None
    for q, (ref_l, ref_c) in _SCALED.items():
        err = np.abs(luma - ref_l).sum() + (np.abs(chroma - ref_c).sum() if chroma is not None else 0)
        if best_err is None or err < best_err:
            best, best_err = q, err
    ref_l, ref_c = _SCALED[best]
    pairs = [(luma, ref_l)] + ([(chroma, ref_c)] if chroma is not None else [])
    close = all((np.abs(t - ref) <= np.maximum(_TOLERANCE_ABS, _TOLERANCE_REL * ref)).all() for t, ref in pairs)
    return best if close else None


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
    """Header facts of one image file. ``to_row`` / ``from_row`` round-trip through CSV text."""

    format: str  # container from the bytes (Pillow's format: JPEG, PNG, WEBP, MPO, ...)
    ext_format: str  # container the file name claims ("" when the extension is unknown)
    format_mismatch: bool  # the bytes are not what the extension says (a .png holding JPEG data)
    width: int  # after EXIF orientation, as the image is shown
    height: int
    aspect: float  # width / height
    pixels: int
    file_bytes: int
    bytes_per_pixel: float
    jpeg_quality: int | None  # IJG quality estimate; None when not JPEG or non-standard tables
    jpeg_tables: str  # "standard" (IJG-scaled) | "non-standard" | "" (not JPEG)
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
    def size(self) -> str:
        return f"{self.width}x{self.height}"

    @property
    def generator_metadata(self) -> bool:
        return bool(self.generator_hint)

    @property
    def jpeg_quality_text(self) -> str:
        """"q95", "non-standard" or "" (not JPEG), for messages."""
        return f"q{self.jpeg_quality}" if self.jpeg_quality is not None else self.jpeg_tables

    def to_row(self) -> dict[str, str | int | float]:
        """Flat, CSV-able: booleans as 0/1, a missing quality as "", plus the derived columns
        ``size`` ("WxH") and ``generator_metadata`` (0/1) that the shortcut check reads."""
        row: dict[str, str | int | float] = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            row[f.name] = "" if v is None else int(v) if isinstance(v, bool) else v
        row["size"] = self.size
        row["generator_metadata"] = int(self.generator_metadata)
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


_FIELD_KINDS = {"format_mismatch": bool, "progressive": bool, "exif": bool, "icc": bool,
                "width": int, "height": int, "pixels": int, "file_bytes": int, "bit_depth": int,
                "aspect": float, "bytes_per_pixel": float, "dpi": float, "jpeg_quality": "optional_int",
                **{n: str for n in ("format", "ext_format", "jpeg_tables", "subsampling", "camera_make",
                                    "software", "mode", "text_keys", "generator_hint")}}
ROW_COLUMNS = [f.name for f in dataclasses.fields(FileFacts)] + ["size", "generator_metadata"]


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
def _exif_of(im: Image.Image, png_exif: bytes | None) -> Image.Exif | None:
    """The EXIF block, parsed from the header only (``PngImageFile.getexif`` would decode pixels
    when the block is not before the image data, so PNGs use the chunk walk's copy)."""
    try:
        if im.format == "PNG":
            if png_exif is None and "exif" not in im.info:
                return None
            exif = Image.Exif()
            exif.load(png_exif if png_exif is not None else im.info["exif"])
            return exif
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


def _png_chunks(path: Path) -> dict:
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
                    fh.seek(length - len(data) + 4, 1)
                    key, value = _png_text(ctype, data)
                    if key:
                        texts[key] = value
                elif ctype == b"eXIf":
                    found["exif"] = fh.read(min(length, _MAX_TEXT))
                    fh.seek(length - len(found["exif"]) + 4, 1)
                elif ctype == b"IEND":
                    break
                else:
                    found["c2pa"] |= ctype == b"caBX"
                    fh.seek(length + 4, 1)
    except OSError:
        pass
    return found


def _png_text(ctype: bytes, data: bytes) -> tuple[str, str]:
    key, _, rest = data.partition(b"\x00")
    try:
        if ctype == b"tEXt":
            value = rest
        elif ctype == b"zTXt":
            value = zlib.decompressobj().decompress(rest[1:], 4096)
        else:  # iTXt: flag, method, language\0, translated keyword\0, text
            flag, rest = rest[:1], rest[2:]
            rest = rest.split(b"\x00", 2)[-1]
            value = zlib.decompressobj().decompress(rest, 4096) if flag == b"\x01" else rest
    except (zlib.error, IndexError):
        value = b""
    return key.decode("latin-1"), value[:4096].decode("utf-8" if ctype == b"iTXt" else "latin-1", "replace")


def _subsampling(im: Image.Image) -> str:
    layers = getattr(im, "layer", None) or []
    if len(layers) == 1:
        return "gray"
    if len(layers) != 3:
        return "other"
    (_, h0, v0, _), rest = layers[0], layers[1:]
    if any((h, v) != (1, 1) for _, h, v, _ in rest):
        return "other"
    return {(1, 1): "4:4:4", (2, 1): "4:2:2", (2, 2): "4:2:0"}.get((h0, v0), "other")


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


def facts_from_image(im: Image.Image, path: str | Path, n_bytes: int) -> FileFacts:
    """Facts of one file from its open (not loaded) Pillow handle; never decodes pixels.

    Parameters
    ----------
    im : the handle ``Image.open(path)`` returned (``pipeline.data`` opens every file once).
    path : the file (its extension; PNG chunks after the image data are read from it).
    n_bytes : the file's size in bytes.
    """
    path = Path(path)
    fmt = (im.format or "").upper()
    ext_format = EXTENSION_FORMATS.get(path.suffix.lower(), "")
    mismatch = bool(ext_format) and _FAMILY.get(fmt, fmt) != ext_format
    is_jpeg = _FAMILY.get(fmt, fmt) == "JPEG"
    png = _png_chunks(path) if fmt == "PNG" else None

    exif = _exif_of(im, png["exif"] if png else None)
    exif_fields = _exif_text(exif) if exif is not None else {}
    w, h = im.size
    if exif is not None and exif.get(0x0112, 1) in (5, 6, 7, 8):
        w, h = h, w

    texts: dict[str, str] = dict(png["texts"]) if png else {}
    if not png:  # JPEG comment, GIF comment, WebP/TIFF text Pillow put in info
        for key in ("comment", "Comment", "parameters", "prompt", "Software", "Description"):
            v = im.info.get(key)
            if v:
                texts[key] = v.decode("latin-1", "replace") if isinstance(v, bytes) else str(v)
    xmp = texts.pop("XML:com.adobe.xmp", None) or im.info.get("xmp")
    text_keys = set(texts) | ({"xmp"} if xmp else set())

    hints = [f"PNG text '{k}'" if png else f"text '{k}'" for k in sorted(texts) if k.lower() in GENERATOR_KEYS]
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
    if (png and png["c2pa"]) or any(m == "APP11" and b"c2pa" in d[:64] for m, d in getattr(im, "applist", [])):
        hints.append("C2PA manifest")

    quality = estimate_jpeg_quality(getattr(im, "quantization", None) or {}) if is_jpeg else None
    software = exif_fields.get("Software") or texts.get("Software") or texts.get("software") or ""
    progressive = bool(im.info.get("progressive") or im.info.get("progression") or im.info.get("interlace")
                       or (png and png["interlace"]))
    bit_depth = (png and png["bit_depth"]) or _MODE_BITS.get(im.mode, 8)
    pixels = w * h
    return FileFacts(
        format=fmt, ext_format=ext_format, format_mismatch=mismatch, width=w, height=h,
        aspect=round(w / h, 4) if h else 0.0, pixels=pixels, file_bytes=int(n_bytes),
        bytes_per_pixel=round(n_bytes / pixels, 5) if pixels else 0.0,
        jpeg_quality=quality,
        jpeg_tables=("standard" if quality is not None else "non-standard") if is_jpeg else "",
        subsampling=_subsampling(im) if is_jpeg else "", progressive=progressive,
        exif=exif is not None, camera_make=_clip(exif_fields.get("Make", "")), software=_clip(software),
        icc=bool(im.info.get("icc_profile")), mode=im.mode, bit_depth=int(bit_depth),
        dpi=_dpi(im, exif), text_keys=";".join(sorted(text_keys)), generator_hint="; ".join(hints[:3]))


def _clip(text: str, n: int = 40) -> str:
    """Short, one-line, CSV-safe text for a categorical fact."""
    return re.sub(r"\s+", " ", text).strip()[:n]


def read_facts(path: str | Path) -> FileFacts:
    """Facts of one file by path (opens it; for tools and tests, the scan uses the open handle)."""
    path = Path(path)
    with Image.open(path) as im:
        return facts_from_image(im, path, path.stat().st_size)
