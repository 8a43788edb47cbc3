"""Data sets: scan a CNNDetection-style folder or a CSV manifest into records; load images safely.

Layouts accepted (method.md section 7):

* folder: ``<root>/[<generator>/][<category>/]0_real|1_fake/<files>`` (``0_real`` = real, ``1_fake`` =
  fake; deeper sub-folders below the label folder are allowed);
* manifest: a CSV with columns ``path,label[,generator,category,source,split]``; ``path`` relative
  to the manifest's folder; ``label`` one of ``real``/``fake``/``0``/``1``. A ``manifest.csv`` at a
  folder's root is used automatically.

Scoring new images with a finished run (``pipeline.generalise.apply``) also accepts images without labels,
but only when asked for (``scan(..., allow_unlabelled=True)``): then image files outside any
``0_real``/``1_fake`` folder, manifest rows with an empty label and manifests without a ``label``
column give records labelled :data:`UNLABELLED`. A label is never guessed; a label that is present
but not one of the words above is still a bad entry.

Every file that cannot be used is reported with its reason (zero bytes, truncated, not an image, a
decompression bomb, a link leaving the root, a symbolic-link loop, a folder named like an image, a
missing manifest entry, a bad label) and skipped; the scan goes on. The scan also reads each file's
header facts (``pipeline.data.filefacts``) from the handle it opens anyway.
"""
from __future__ import annotations

import csv
import errno
import hashlib
import os
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image, ImageFile, ImageOps

from pipeline.config import DataConfig, resolve_path
from pipeline.data.filefacts import FileFacts, facts_from_image

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif"}
LABEL_DIRS = {"0_real": 0, "1_fake": 1}
UNLABELLED = -1  # Record.label of an image whose class is not known (scan(allow_unlabelled=True))
_LABEL_WORDS = {"real": 0, "0": 0, "0_real": 0, "fake": 1, "1": 1, "1_fake": 1}

# Never decode partially: a truncated file is an error, not a grey-bottomed image.
ImageFile.LOAD_TRUNCATED_IMAGES = False


class PathRefused(ValueError):
    """A path that would read a file outside a data root (or names no file of the run)."""


class BadImageError(Exception):
    """An image file that cannot be used; ``reason`` says why in words a user can act on."""

    def __init__(self, path: str | Path, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


@dataclass
class Record:
    id: str  # stable: hash of the path relative to the data root
    path: str  # relative to the data root, with forward slashes
    label: int  # 0 real, 1 fake, UNLABELLED (-1) unknown (only from scan(allow_unlabelled=True))
    generator: str = ""
    category: str = ""
    source: str = ""  # e.g. the source photo of a demo-set crop (split groups)
    split: str = ""  # preset split from a manifest ("train"/"heldout"); empty = assigned later
    width: int = 0
    height: int = 0
    format: str = ""
    bytes: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class ScanResult:
    root: Path
    records: list[Record]
    bad: list[dict]  # {"path": ..., "reason": ...}
    fingerprint: str  # changes when any used file's path, size or mtime changes
    manifest: Path | None = None
    facts: list[FileFacts] = field(default_factory=list)  # header facts, parallel to ``records``

    def path(self, record: Record) -> Path:
        """The file of ``record`` (checked to stay under the root, :func:`image_file`)."""
        return image_file(self.root, record.path)

    @property
    def name(self) -> str:
        """Short name of the data set: its folder, or the manifest's name when it lives elsewhere."""
        return self.root.name if not self.manifest or self.manifest.parent == self.root \
            else self.manifest.stem


def record_id(rel_path: str) -> str:
    return hashlib.sha1(rel_path.encode("utf-8")).hexdigest()[:12]


# ---------------------------------------------------------------------------------------------
# Image loading
# ---------------------------------------------------------------------------------------------
def _check_file(path: Path) -> None:
    if not path.exists():
        raise BadImageError(path, "file does not exist")
    if not path.is_file():
        raise BadImageError(path, "not a regular file")
    if path.stat().st_size == 0:
        raise BadImageError(path, "zero-byte file")


def _open_checked(path: Path, max_pixels: int) -> Image.Image:
    _check_file(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(path)
            if im.width * im.height > max_pixels:
                raise BadImageError(path, f"decompression bomb: {im.width}x{im.height} pixels exceeds "
                                          f"the limit of {max_pixels} (data.max_image_pixels)")
            return im
    except BadImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise BadImageError(path, f"decompression bomb: {e}") from e
    except Exception as e:  # PIL raises UnidentifiedImageError, OSError, SyntaxError, ...
        what = "truncated image file" if "truncated" in str(e).lower() else "not a readable image"
        raise BadImageError(path, f"{what} ({type(e).__name__}: {e})") from e


def to_rgb(im: Image.Image) -> Image.Image:
    """Normalise any mode to 8-bit RGB: palette+alpha and alpha composited on white, 16-bit scaled,
    CMYK converted, grayscale replicated."""
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(im, dtype=np.float64)
        hi = 65535.0 if im.mode.startswith("I;16") or arr.max() > 255 else 255.0
        im = Image.fromarray(np.clip(arr / hi * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
    if im.mode == "F":
        arr = np.asarray(im, dtype=np.float64)
        im = Image.fromarray(np.clip(arr * (255.0 if arr.max() <= 1.0 else 1.0), 0, 255).astype(np.uint8), "L")
    if im.mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    if im.mode in ("RGBA", "LA", "PA"):
        im = im.convert("RGBA")
        background = Image.new("RGBA", im.size, (255, 255, 255, 255))
        im = Image.alpha_composite(background, im)
    return im.convert("RGB") if im.mode != "RGB" else im


def load_image_rgb(path: str | Path, max_pixels: int = DataConfig.max_image_pixels,
                   min_side: int | None = None) -> Image.Image:
    """Decode ``path`` fully into an upright 8-bit RGB image, or raise :class:`BadImageError`.

    ``min_side``: a JPEG may be decoded at a reduced DCT scale (1/2, 1/4, 1/8) as long as both
    sides stay at least this large. Encoders resize to ~224 px anyway, and a 4000-px photo then
    decodes ~6x faster, which is what lets decoding hide behind the model on 2 cores.
    """
    path = Path(path)
    im = _open_checked(path, max_pixels)
    try:
        if min_side and im.format == "JPEG":
            im.draft("RGB", (min_side, min_side))
        im.load()
        im = ImageOps.exif_transpose(im)
        return to_rgb(im)
    except BadImageError:
        raise
    except Exception as e:
        reason = "truncated or corrupted image data" if "truncated" in str(e).lower() or \
            isinstance(e, (OSError, SyntaxError)) else "cannot decode"
        raise BadImageError(path, f"{reason} ({type(e).__name__}: {e})") from e


def probe_image(path: Path, max_pixels: int) -> tuple[int, int, str]:
    """(width, height, format) after EXIF orientation, without decoding the pixels."""
    with _open_checked(path, max_pixels) as im:
        return _probe_open(im, path)


def _probe_open(im: Image.Image, path: Path) -> tuple[int, int, str]:
    w, h = im.size
    try:
        orientation = im.getexif().get(0x0112, 1)
    except Exception:
        orientation = 1
    if orientation in (5, 6, 7, 8):
        w, h = h, w
    return w, h, (im.format or path.suffix.lstrip(".")).upper()


# ---------------------------------------------------------------------------------------------
# Scanning
# ---------------------------------------------------------------------------------------------
def image_file(root: str | Path, rel: str, what: str = "image") -> Path:
    """``root / rel`` resolved (links followed), refused unless it stays inside ``root``.

    Every image path of a data set or a run goes through here: the scan, the runner, the
    explanations, thumbnails and note exports, so none can be steered outside the data root by
    an absolute path, ``..`` or a link.

    Raises
    ------
    PathRefused
        ``rel`` is empty or absolute, or resolves outside ``root``; the message names ``what``.
    """
    root = Path(root).resolve()
    if not rel or Path(rel).is_absolute() or ".." in Path(rel).parts:
        raise PathRefused(f"{what} ({rel!r}) is an absolute, empty or '..' path; only paths under "
                          f"the data root {root} are read")
    path = (root / rel).resolve()
    try:
        path.relative_to(root)
    except ValueError:
        raise PathRefused(f"{what} ({rel!r}) resolves outside the data root {root}") from None
    return path


def _link_loop(path: Path) -> bool:
    """True when ``path`` is a symbolic link that leads, directly or through others, back to itself."""
    try:
        os.stat(path)
    except OSError as e:
        return e.errno == errno.ELOOP
    return False


_LOOP_REASON = "symbolic link loop (the link leads back to itself); not followed"


def _parse_label(value: str) -> int | None:
    return _LABEL_WORDS.get(str(value).strip().lower())


def _folder_entries(root: Path, bad: list[dict], allow_unlabelled: bool = False) -> list[dict]:
    """Entries from the CNNDetection layout: the label folder decides the label; the folders above
    it are ``[generator/][category/]``. ``allow_unlabelled``: files outside every label folder are
    entries too, labelled :data:`UNLABELLED`, with no generator or category (none is guessed from
    their folders); otherwise they are not looked at."""
    entries = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames.sort()
        rel_dir = Path(dirpath).relative_to(root)
        for d in [d for d in dirnames if (Path(dirpath) / d).is_symlink()]:
            bad.append({"path": str((rel_dir / d).as_posix()), "reason": "linked folder not followed "
                        "(links may leave the data root)"})
        parts = rel_dir.parts
        label_pos = next((i for i, p in enumerate(parts) if p in LABEL_DIRS), None)
        if label_pos is None and not allow_unlabelled:
            continue
        for d in dirnames:
            if Path(d).suffix.lower() in IMAGE_EXTENSIONS and not (Path(dirpath) / d).is_symlink():
                bad.append({"path": str((rel_dir / d).as_posix()), "reason": "a folder named like an "
                            "image file, not an image (files inside it are scanned as a sub-folder)"})
        above = parts[:label_pos] if label_pos is not None else ()
        generator = above[0] if len(above) >= 1 else ""
        category = above[1] if len(above) >= 2 else ""
        label = LABEL_DIRS[parts[label_pos]] if label_pos is not None else UNLABELLED
        for name in sorted(filenames):
            if _link_loop(Path(dirpath) / name):  # os.walk lists a looping link as a file
                bad.append({"path": str((rel_dir / name).as_posix()), "reason": _LOOP_REASON})
                continue
            if Path(name).suffix.lower() not in IMAGE_EXTENSIONS and not name.lower().endswith(".csv"):
                bad.append({"path": str(rel_dir / name), "reason": "not an image file extension"})
                continue
            if name.lower().endswith(".csv"):
                continue
            entries.append({"path": str((rel_dir / name).as_posix()), "label": label,
                            "generator": generator, "category": category})
    return entries


def _manifest_entries(manifest: Path, bad: list[dict], allow_unlabelled: bool = False) -> list[dict]:
    """Entries from a CSV manifest. ``allow_unlabelled``: the ``label`` column may be missing and a
    row's label empty (:data:`UNLABELLED`); a label that is there must still be a known word."""
    entries = []
    needed = ("path",) if allow_unlabelled else ("path", "label")
    try:
        with open(manifest, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            if not reader.fieldnames or any(c not in reader.fieldnames for c in needed):
                raise ValueError(f"manifest {manifest} must have a header with at least "
                                 f"{' and '.join(repr(c) for c in needed)} column(s) (found {reader.fieldnames})")
            for line_no, row in enumerate(reader, start=2):
                rel = (row.get("path") or "").strip()
                text = (row.get("label") or "").strip()
                label = UNLABELLED if allow_unlabelled and not text else _parse_label(text)
                if not rel:
                    bad.append({"path": f"{manifest.name}:{line_no}", "reason": "manifest row has no path"})
                    continue
                if label is None:
                    bad.append({"path": rel, "reason": f"{manifest.name} line {line_no}: bad label "
                                f"{row.get('label')!r} (expected real/fake/0/1)"})
                    continue
                entries.append({"path": Path(rel).as_posix(), "label": label,
                                "generator": (row.get("generator") or "").strip(),
                                "category": (row.get("category") or "").strip(),
                                "source": (row.get("source") or "").strip(),
                                "split": (row.get("split") or "").strip()})
    except UnicodeDecodeError as e:
        raise ValueError(f"manifest {manifest} is not UTF-8 text: {e}") from e
    return entries


def scan(cfg: DataConfig, progress: Callable[[int, int], None] | None = None, *,
         with_facts: bool = True, allow_unlabelled: bool = False) -> ScanResult:
    """Scan the configured folder or manifest into records, reporting bad files instead of failing.

    ``with_facts``: also read each file's header facts (``pipeline.data.filefacts``) from the handle the
    probe opens anyway; ``ScanResult.facts`` is then parallel to ``records`` (empty otherwise).
    ``allow_unlabelled``: images without a label are kept, labelled :data:`UNLABELLED` (see the
    module docstring); a run needs labels and leaves it off.
    """
    if cfg.manifest:
        manifest = resolve_path(cfg.manifest)
        if not manifest.is_file():
            raise FileNotFoundError(f"manifest {manifest} does not exist")
        root = resolve_path(cfg.root) if cfg.root else manifest.parent
    elif cfg.root:
        root = resolve_path(cfg.root)
        if not root.is_dir():
            raise FileNotFoundError(f"data folder {root} does not exist")
        manifest = root / "manifest.csv" if (root / "manifest.csv").is_file() else None
    else:
        raise ValueError("no data configured: set data.root (a folder) or data.manifest (a CSV)")

    bad: list[dict] = []
    entries = (_manifest_entries(manifest, bad, allow_unlabelled) if manifest
               else _folder_entries(root, bad, allow_unlabelled))
    if cfg.generators:
        entries = [e for e in entries if e["generator"] in cfg.generators]
    if cfg.categories:
        entries = [e for e in entries if e["category"] in cfg.categories]

    records: list[Record] = []
    facts: list[FileFacts] = []
    h = hashlib.sha256()
    seen: set[str] = set()
    for i, e in enumerate(entries):
        rel = e["path"]
        path = root / rel
        if progress:
            progress(i, len(entries))
        if rel in seen:
            bad.append({"path": rel, "reason": "listed twice in the manifest"})
            continue
        seen.add(rel)
        if _link_loop(path):  # also a manifest entry; resolve() would raise "Symlink loop"
            bad.append({"path": rel, "reason": _LOOP_REASON})
            continue
        try:
            image_file(root, rel)
        except PathRefused:
            bad.append({"path": rel, "reason": "path leaves the data root (symlink or '..')"})
            continue
        try:
            st = path.stat()
            with _open_checked(path, cfg.max_image_pixels) as im:
                if with_facts:  # the facts hold the oriented size too, read without decoding a PNG
                    f = _facts_or_fallback(im, path, st.st_size)
                    facts.append(f)
                    w, hgt, fmt = f.width, f.height, f.format or path.suffix.lstrip(".").upper()
                else:
                    w, hgt, fmt = _probe_open(im, path)
        except FileNotFoundError:
            bad.append({"path": rel, "reason": "file does not exist"})
            continue
        except BadImageError as err:
            bad.append({"path": rel, "reason": err.reason})
            continue
        records.append(Record(id=record_id(rel), path=rel, label=e["label"], generator=e["generator"],
                              category=e["category"], source=e.get("source", ""), split=e.get("split", ""),
                              width=w, height=hgt, format=fmt, bytes=st.st_size))
        h.update(f"{rel}\0{e['label']}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    if progress:
        progress(len(entries), len(entries))
    if not records:
        raise ValueError(f"no usable images found under {root}"
                         f"{' (manifest ' + str(manifest) + ')' if manifest else ''}; "
                         f"expected <root>/[generator/][category/]0_real|1_fake/ or a manifest.csv"
                         f"{' (or, unlabelled, image files anywhere under it)' if allow_unlabelled else ''}"
                         f" ({len(bad)} file(s) rejected)")
    return ScanResult(root=root, records=records, bad=bad, fingerprint=h.hexdigest()[:16], manifest=manifest,
                      facts=facts)


def _facts_or_fallback(im: Image.Image, path: Path, n_bytes: int) -> FileFacts:
    """The file's facts; a metadata block that trips the reader must not cost a usable image, so
    it gets the probe's size and format and empty metadata."""
    try:
        return facts_from_image(im, path, n_bytes)
    except Exception:
        w, h, _ = _probe_open(im, path)
        return FileFacts(format=(im.format or "").upper(), ext_format="", width=w, height=h, file_bytes=n_bytes,
                         jpeg_quality=None, subsampling="", progressive=False, exif=False, camera_make="",
                         software="", icc=False, mode=im.mode, bit_depth=8, dpi=0.0, text_keys="",
                         generator_hint="")
