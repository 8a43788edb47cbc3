"""Time to a finished run: the whole ``pipeline run`` on the same images, fp32 against the default.

Two legs in one bench run, on the same images, each from an empty embedding cache: ``fp32``
(``encoder.precision=fp32``) and the default (``encoder.precision=auto``: int8 or bf16 where the
CPU has them and the encoder passed its agreement gates, ``pipeline.model.encoders.precision``).
Each leg is the whole run with the default settings, the vision-only projection included (trained
on the data set's own images with words drawn on them: about 1,200 more images through the
encoder, embedded before the data set so that the projection's fit runs beside the data set's
embedding, ``pipeline.projection_stage``); only the encoder's weights and the int8 export come
from the shared cache, and a warm-up run on 20 images loads the model first. Printed per leg: the wall time, each stage's
share (the run's ``meta.json -> timing``, ``pipeline.stage_times``), the time in the encoder's
forward (the data set's and the word images') and its share of the whole run (target >= 90% at
10,000 images), and beside it the forward-only ceiling (images / forward seconds); then the ratio
fp32 / default (target >= 2x). The CPU's flags and the load average at the start and end of each
leg are printed, because other jobs on the machine distort timings.

    python bench/run_time.py                  # 10,000 generated 256-px JPEGs, the stand-in
    python bench/run_time.py --quick          # 600 images
    python bench/run_time.py --data /work/shared/data/faces
    python bench/run_time.py --precisions fp32,bf16,auto   # any legs; the first is the baseline
"""
from __future__ import annotations

if not __package__:  # started as `python bench/run_time.py`
    import _path  # noqa: F401

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from bench._bf16_agreement import cpu_flags_line
from bench._options import parse_args
from pipeline.config import REPO_ROOT, Config, load_config, with_data
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


SHARED_CACHE = Config().cache_path  # read before any leg points the environment at its own folders


def leg_config(data: Path, work: Path, encoder: str, precision: str):
    """The default configuration with this leg's encoder, precision and folders (the environment's
    folders win over the config's, so they are set too: each leg starts from an empty embedding
    cache and never writes into the user's runs or cache)."""
    os.environ["FAXPLAINER_CACHE_DIR"], os.environ["FAXPLAINER_RUNS_DIR"] = str(work / "cache"), str(work / "runs")
    cfg = load_config(REPO_ROOT / "configs" / "default.yaml",
                      [f"encoder.name={encoder}", f"encoder.precision={precision}", f"runs_dir={work / 'runs'}",
                       f"cache_dir={work / 'cache'}"])
    return with_data(cfg, data)


def link_shared_cache(cache: Path) -> None:
    """Weights (and the int8 export) come from the shared cache: downloads, not the run's work."""
    shared = SHARED_CACHE
    cache.mkdir(parents=True, exist_ok=True)
    for sub in ("weights",):
        (shared / sub).mkdir(parents=True, exist_ok=True)
        if not (cache / sub).exists():
            os.symlink(shared / sub, cache / sub)


def timed_run(cfg) -> tuple[float, dict]:
    t0 = time.perf_counter()
    store = run_pipeline(cfg)
    return time.perf_counter() - t0, store.read_meta()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=10_000, help="generated images (half real, half fake)")
    ap.add_argument("--size", type=int, default=256, help="side of the generated JPEGs")
    ap.add_argument("--data", default=None, help="a data set instead of generated images")
    ap.add_argument("--encoder", default="dinov2_standin")
    ap.add_argument("--precisions", default="fp32,auto", help="comma list of legs; the first is the baseline")
    ap.add_argument("--keep", action="store_true", help="keep the work folder")
    args = parse_args(ap, {"images": 600}, argv)
    work = Path(tempfile.mkdtemp(prefix="faxplainer-runtime-"))
    try:
        data = Path(args.data) if args.data else make_images(work / "data", args.images, args.size)
        warm = make_images(work / "warm", 20, args.size, seed=1)
        n = sum(1 for _ in data.rglob("*.jpg")) if not args.data else "?"
        print(f"{cpu_flags_line()}\ndata {data} ({n} images), encoder {args.encoder}")
        rows = []
        for precision in args.precisions.split(","):
            w = work / precision
            link_shared_cache(w / "cache")
            run_pipeline(leg_config(warm, w, args.encoder, precision))  # loads the model (not timed)
            load_start = os.getloadavg()[0]
            total, meta = timed_run(leg_config(data, w, args.encoder, precision))
            h, t = meta["metrics"]["head"], meta["timing"]
            forward, n_fwd, n_done = t["forward_seconds"], t["forward_images"], meta["data"]["n_images"]
            rows.append((precision, total))
            stages = {**dict(t["stages"]), "write": total - t["seconds"]}  # the run's timing ends where the write begins
            parts = ", ".join(f"{s} {x:.1f} s ({x / total:.0%})" for s, x in stages.items())
            e = meta["embedding"]
            print(f"\n{precision}: {total:.0f} s, {n_done / total:.1f} img/s  [{parts}]\n"
                  f"  encoder forward {forward:.0f} s = {forward / total:.1%} of the run (target >= 90%), "
                  f"{n_fwd} images ({n_done} of the data set, {n_fwd - n_done} word images of the projection); "
                  f"forward-only ceiling {n_fwd / forward:.1f} img/s; "
                  f"not forward {total - forward:.1f} s (embed stage {e['seconds'] - e['forward_seconds']:.1f} s, "
                  f"projection before the embedding {stages.get('projection', 0) - (forward - e['forward_seconds']):.1f} s, "
                  f"waiting for its fit {stages.get('projection fit', 0):.1f} s)\n"
                  f"  chosen precision {meta['encoder'].get('extra', {}).get('precision', '?')}: "
                  f"{meta['encoder'].get('extra', {}).get('precision_reason', '')}\n"
                  f"  head: {h.get('epochs')} epochs; reference probe {h.get('reference_probe', {}).get('seconds', '?')} s "
                  f"(beside the head's fit)\n"
                  f"  held-out accuracy {h['accuracy']:.3f}, AUC {h['auc']:.3f}; load average "
                  f"{load_start:.2f} at start, {os.getloadavg()[0]:.2f} at end")
        base_label, base = rows[0]
        print(f"\nratio {base_label} / leg (whole run):")
        for label, total in rows[1:]:
            print(f"  {label}: {base / total:.2f}x (target >= 2x)")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"work folder kept: {work}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
