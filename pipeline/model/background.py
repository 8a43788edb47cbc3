"""The background photo set the vision-only projection is trained on once per encoder.

Materzynska et al. train their "forget to spell" projection once, on a generic photo set, and use
it for every task; training it on each new data set instead costs the same fixed minutes (about
1,700 word-rendered images embedded, method.md section 2) for 800 images as for 100,000. With
``projection.train_on: background`` the projection is trained on a fixed set of real photos and
cached per encoder: ``projection.background``, a folder of the user's photos, or, when
none is configured, real crops of the photos that ship with registry packages (the demo set's
sources, ``pipeline.data.demo.sources``: scikit-image, scikit-learn and Debian wallpapers), cut
and resized as the demo set's real images are, without any generator. The default is ``train_on:
data`` (per data set): with the stand-in the background projection left the head 0.024 held-out
AUC below the reference probe on faces (README "Detector fidelity"); ``both`` trains on the two.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Callable

from pipeline.config import Config, resolve_path
from pipeline.data.scan import IMAGE_EXTENSIONS

MARKER = ".background.json"
Log = Callable[[str], None]


def _folder_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()
                  and not p.name.startswith("."))


def _fingerprint(paths: list[Path], root: Path) -> str:
    h = hashlib.sha256()
    for p in paths:
        st = p.stat()
        h.update(f"{p.relative_to(root).as_posix()}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def build_background(out: Path, size: int, cache_dir: Path, seed: int = 0, debian: bool = True,
                     log: Log = lambda _m: None) -> list[Path]:
    """Real crops of the registry packages' photos in ``out`` (built once, then reused)."""
    from pipeline.data.demo.build import collect_sources, plan_crops, png_bytes, render_real

    marker = out / MARKER
    key = {"size": size, "seed": seed, "debian": debian, "v": 1}
    if marker.is_file() and json.loads(marker.read_text()).get("key") == key:
        return _folder_images(out)
    skipped: list[str] = []
    sources, view_sizes = collect_sources([], cache_dir, debian, log, skipped)
    crops, _ = plan_crops(sources, view_sizes, size, ("background",), seed)
    reals = [c for c in crops if c.label == 0]
    if not reals:
        raise RuntimeError("no source photo for the background set (see the log for why each was "
                           "skipped); set projection.background to a folder of photos")
    tmp = out.parent / f".{out.name}.building-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        by_id = {s.id: s for s in sources}
        for sid in sorted({c.source for c in reals}):
            views = by_id[sid].load()
            for c in (c for c in reals if c.source == sid):
                (tmp / Path(c.path).name).write_bytes(png_bytes(render_real(views[c.view], c)))
        (tmp / MARKER).write_text(json.dumps({"key": key, "n": len(reals), "skipped": skipped}))
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log(f"background set: {len(reals)} real photo crops in {out}")
    return _folder_images(out)


def background_images(cfg: Config, log: Log = lambda _m: None) -> tuple[list[Path], str]:
    """(image files, fingerprint) of the configured background set.

    Raises
    ------
    ValueError
        ``projection.background`` names a folder that does not exist or holds no image.
    """
    pc = cfg.projection
    if pc.background:
        folder = resolve_path(pc.background)
        if not folder.is_dir():
            raise ValueError(f"projection.background {folder} is not a folder")
        paths = _folder_images(folder)
        if not paths:
            raise ValueError(f"projection.background {folder} holds no image")
        return paths, f"folder-{_fingerprint(paths, folder)}"
    out = cfg.cache_path / "background" / f"size{pc.background_size}-seed{pc.seed}"
    paths = build_background(out, pc.background_size, cfg.cache_path, seed=pc.seed, log=log)
    return paths, f"builtin-{_fingerprint(paths, out)}"
