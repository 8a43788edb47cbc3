"""Time to a finished run: the whole ``pipeline run`` on the same images, before and after.

*Before* is the pipeline as it was: the vision-only projection trained on each new data set
(``projection.train_on: data``) and fp32 everywhere (``encoder.precision: fp32``). *After* is the
default: the projection trained once per encoder on the background photo set and reused
(``train_on: background``) and ``precision: auto`` (bf16 where the CPU has it and the encoder
passed the agreement check, ``pipeline.model.encoders``). Each configuration starts from an empty
embedding cache, so both embed every image; *after* is timed twice: the first run on a machine
(it trains the background projection, once per encoder) and a later data set (projection cached).
Each stage's share comes from the runner's progress reports.

    python bench/run_time.py                  # 10,000 generated 256-px JPEGs, the stand-in
    python bench/run_time.py --quick          # 600 images
    python bench/run_time.py --data /work/shared/data/faces
"""
from __future__ import annotations

if not __package__:  # started as `python bench/run_time.py`
    import _path  # noqa: F401

import argparse
import os
import shutil
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
from PIL import Image

from bench._options import parse_args
from pipeline.config import REPO_ROOT, load_config, with_data
from pipeline.runner import run_pipeline


def make_images(root: Path, n: int, size: int, seed: int = 0) -> Path:
    """``n`` JPEGs in the CNNDetection layout: smooth real-like scenes vs the same with a periodic
    upsampling trace (half each); content, not file facts, tells them apart."""
    rng = np.random.default_rng(seed)
    for label in ("0_real", "1_fake"):
        (root / label).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        base = rng.normal(size=(size // 8, size // 8, 3)).cumsum(0).cumsum(1)
        base = (base - base.min()) / (np.ptp(base) + 1e-9)
        im = Image.fromarray((base * 255).astype(np.uint8)).resize((size, size), Image.Resampling.BICUBIC)
        a = np.asarray(im, dtype=np.float32)
        fake = i % 2 == 1
        if fake:
            a[::2, ::2] *= 0.92
        Image.fromarray(a.clip(0, 255).astype(np.uint8)).save(
            root / ("1_fake" if fake else "0_real") / f"{i:06d}.jpg", quality=90)
    return root


class StageClock:
    """Wall time per stage from the runner's ``progress(stage, done, total)`` reports."""

    def __init__(self):
        self.first, self.last = {}, {}
        self.t0 = time.perf_counter()

    def __call__(self, stage, done, total):
        now = time.perf_counter()
        self.first.setdefault(stage, now)
        self.last[stage] = now

    def shares(self, total: float) -> dict[str, float]:
        order = sorted(self.first, key=self.first.get)
        starts = [self.first[s] for s in order] + [self.t0 + total]
        return {s: starts[i + 1] - starts[i] for i, s in enumerate(order)}


def timed_run(data: Path, work: Path, encoder: str, overrides: list[str]) -> tuple[float, dict, dict]:
    cfg = load_config(REPO_ROOT / "configs" / "default.yaml",
                      [f"encoder.name={encoder}", f"runs_dir={work / 'runs'}", f"cache_dir={work / 'cache'}",
                       *overrides])
    cfg = with_data(cfg, data)
    clock = StageClock()
    t0 = time.perf_counter()
    store = run_pipeline(cfg, progress=clock)
    total = time.perf_counter() - t0
    return total, clock.shares(total), store.read_meta()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=10_000, help="generated images (half real, half fake)")
    ap.add_argument("--size", type=int, default=256, help="side of the generated JPEGs")
    ap.add_argument("--data", default=None, help="a data set instead of generated images")
    ap.add_argument("--encoder", default="dinov2_standin")
    ap.add_argument("--keep", action="store_true", help="keep the work folder")
    args = parse_args(ap, {"images": 600}, argv)
    work = Path(tempfile.mkdtemp(prefix="faxplainer-runtime-"))
    try:
        data = Path(args.data) if args.data else make_images(work / "data", args.images, args.size)
        n = sum(1 for _ in data.rglob("*.jpg")) if not args.data else "?"
        print(f"data {data} ({n} images), encoder {args.encoder}, load average {os.getloadavg()[0]:.1f}")
        # the background photo set and the stand-in's weights are built/converted outside the timing
        shared = REPO_ROOT / ".cache" / "faxplainer"
        rows = []
        plans = [("before: per-data projection, fp32", "before", ["projection.train_on=data", "encoder.precision=fp32"]),
                 ("after: background projection (first time), precision auto", "after",
                  ["projection.train_on=background", "encoder.precision=auto"]),
                 ("after: background projection cached, precision auto", "after-again",
                  ["projection.train_on=background", "encoder.precision=auto"])]
        for label, folder, overrides in plans:
            w = work / folder
            if folder == "after-again":  # a later data set: only the projection cache carries over
                (w / "cache").mkdir(parents=True)
                shutil.copytree(work / "after" / "cache" / "projection", w / "cache" / "projection")
            for sub in ("weights", "background", "demo_sources"):
                if (shared / sub).exists() and not (w / "cache" / sub).exists():
                    (w / "cache").mkdir(parents=True, exist_ok=True)
                    os.symlink(shared / sub, w / "cache" / sub)
            total, shares, meta = timed_run(data, w, args.encoder, overrides)
            h = meta["metrics"]["head"]
            rows.append((label, total, shares, h))
            parts = ", ".join(f"{s} {t:.0f} s ({t / total:.0%})" for s, t in shares.items())
            print(f"\n{label}: {total:.0f} s  [{parts}]\n  held-out accuracy {h['accuracy']:.3f}, "
                  f"AUC {h['auc']:.3f}; encoder precision {meta['encoder'].get('extra', {}).get('precision', '?')}"
                  f"; load average {os.getloadavg()[0]:.1f}")
        base = rows[0][1]
        print("\nratio before / after:")
        for label, total, _, _ in rows[1:]:
            print(f"  {label}: {base / total:.2f}x")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"work folder kept: {work}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
