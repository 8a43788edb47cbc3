"""What reading the file facts adds to the scan (issue 12's target: at most 10%).

Writes ``--files`` generated images in the CNNDetection layout under two generator folders,
``jpeg/`` (both classes JPEG, some with EXIF) and ``png/`` (both classes PNG, some fakes with a
``parameters`` text chunk), then times ``pipeline.data.scan.scan`` on each folder and on both, with the
facts (``with_facts=True``, what runs do) and without (the baseline, measured in the same run,
alternating, best of ``--repeats`` after one warm-up scan that fills the page cache). Both wall
time and this process's CPU time are printed: on a shared machine the CPU time is the steadier.

Note on PNG: without facts the scan's probe asks Pillow for the EXIF orientation, and for a PNG
without an eXIf chunk before its image data Pillow decodes the whole image to look further. With
facts the scan takes the oriented size from them (read from the chunk headers, never decoded), so
for PNG files "scan + facts" is faster than the baseline; the JPEG figure is the facts' real cost.

Usage: python bench/filefacts.py [--files 2000] [--repeats 3] [--work DIR]
       python -m bench.filefacts --files 100000          (the real target; ~1 GB, minutes to write)
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

if not __package__:  # started as `python bench/NAME.py`: the repository root on sys.path
    import _path  # noqa: F401

import numpy as np  # noqa: E402
from PIL import Image, PngImagePlugin  # noqa: E402

from bench._options import parse_args  # noqa: E402
from pipeline.config import DataConfig  # noqa: E402
from pipeline.data.scan import scan  # noqa: E402


def write_files(root: Path, n: int, seed: int = 0) -> None:
    """``n`` files: half under ``jpeg/``, half under ``png/``, each half split real / fake."""
    exif = Image.Exif()
    exif[0x010F] = "Canon"
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", "a photo, Steps: 20, Sampler: Euler a")

    def one(i: int) -> None:
        fmt = "jpeg" if i % 2 == 0 else "png"
        label = "1_fake" if (i // 2) % 2 else "0_real"
        path = root / fmt / label / f"{i:06d}.{'jpg' if fmt == 'jpeg' else 'png'}"
        if path.exists():
            return
        rng = np.random.default_rng(seed + i)
        side = int(rng.integers(128, 257))
        low = rng.random((4, 4, 3))
        im = Image.fromarray((low * 255).astype(np.uint8)).resize((side, side), Image.Resampling.BICUBIC)
        if fmt == "jpeg":
            kw = {"quality": int(rng.integers(70, 96))}
            if label == "0_real" and i % 3 == 0:
                kw["exif"] = exif.tobytes()
            im.save(path, "JPEG", **kw)
        else:
            im.save(path, "PNG", compress_level=1, **({"pnginfo": info} if label == "1_fake" and i % 3 else {}))

    for fmt in ("jpeg", "png"):
        for label in ("0_real", "1_fake"):
            (root / fmt / label).mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(max(1, os.cpu_count() or 1)) as pool:
        list(pool.map(one, range(n)))


def time_scan(cfg: DataConfig, with_facts: bool) -> tuple[float, float, int]:
    """(wall seconds, CPU seconds of this process, files scanned)."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = scan(cfg, with_facts=with_facts)
    return time.perf_counter() - wall, time.process_time() - cpu, len(result.records)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--files", type=int, default=2000, help="image files to write and scan (default 2000)")
    ap.add_argument("--repeats", type=int, default=3, help="timed scans per variant; the best is kept")
    ap.add_argument("--work", type=Path, default=None, help="folder for the files (kept; default: a temporary one)")
    args = parse_args(ap, {"files": 1000, "repeats": 2}, argv)

    work = args.work or Path(tempfile.mkdtemp(prefix="bench-filefacts-"))
    try:
        t0 = time.perf_counter()
        write_files(work, args.files)
        print(f"{args.files} files under {work} ({time.perf_counter() - t0:.1f} s to write or find)")
        print(f"load average before: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}")
        for name, generators in (("jpeg", ("jpeg",)), ("png", ("png",)), ("both", None)):
            cfg = DataConfig(root=str(work), generators=generators)
            time_scan(cfg, True)  # warm-up: page cache, imports
            wall = {True: float("inf"), False: float("inf")}
            cpu = dict(wall)
            for _ in range(args.repeats):
                for with_facts in (False, True):
                    w, c, n = time_scan(cfg, with_facts)
                    wall[with_facts], cpu[with_facts] = min(wall[with_facts], w), min(cpu[with_facts], c)
            print(f"{name:>5}: {n:7d} files | wall: scan {wall[False]:7.2f} s, + facts {wall[True]:7.2f} s, "
                  f"ratio {wall[True] / wall[False]:5.3f} | CPU: scan {cpu[False]:7.2f} s, + facts {cpu[True]:7.2f} s, "
                  f"ratio {cpu[True] / cpu[False]:5.3f} (target <= 1.10) | "
                  f"facts {1e6 * (cpu[True] - cpu[False]) / n:5.1f} us CPU/file")
        print(f"load average after: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}")
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
