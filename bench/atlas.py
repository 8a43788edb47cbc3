"""Benchmark: the dimension atlas of a run (issue 25), stage by stage, against the maps alone.

On a run whose sampled images have no kept maps yet (``--fresh`` removes the kept maps, masks and
atlas of a *copy* of the run; ``--in-place`` computes into the run itself, so its atlas is kept
there), measured in the same process, in this order:

* maps:      ``get_maps`` of the atlas's sample (the baseline stage: what explaining the same
             images costs without the atlas);
* masks:     the DINOv2 subject masks of the same images (maps already kept);
* blur:      the blur tests of the same images (``pipeline.explain.region_evidence``: three
             forwards per image through the run's models; maps and masks kept);
* atlas:     ``get_atlas`` with maps, masks and blur tests kept: profiles, examples, words (and CLIP names);
* click:     ``read_profiles`` of 3 images with kept maps and masks (the attention matrix's
             header counts; torch-free, what a click waits for).

Prints seconds per image and in all, the atlas's extra cost over the maps as a ratio, the CPU
(model, bf16/avx512 flags, load average) and the torch threads.

Usage: ``python bench/atlas.py --run RUN [--images 64] [--in-place | --fresh] [--threads 2]``
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

if not __package__:  # started as `python bench/NAME.py`: the repository root on sys.path
    import _path  # noqa: F401

from bench._options import parse_args  # noqa: E402
from bench._bf16_agreement import machine  # noqa: E402
from bench._demo_run import demo_run  # noqa: E402
from pipeline.config import load_config  # noqa: E402
from pipeline.explain.atlas import ATLAS_IMAGES, atlas_result  # noqa: E402
from pipeline.explain.atlas_jobs import get_atlas, get_profiles, get_subject_masks  # noqa: E402
from pipeline.explain.cache import get_maps  # noqa: E402
from pipeline.explain.profiles import read_profiles  # noqa: E402
from pipeline.model.encoders.precision import cpu_flags  # noqa: E402
from pipeline.model.run_models import load_run_models  # noqa: E402

KEPT = ("relevance", "subject", "evidence", "atlas")  # what --fresh removes from the copy


def _run_folder(run: str) -> Path:
    path = Path(run)
    return path if (path / "meta.json").exists() else load_config().runs_path / run


def _timed(label: str, n: int, fn):
    t = time.perf_counter()
    out = fn()
    s = time.perf_counter() - t
    print(f"{label:<8} {s:8.1f} s in all, {s / max(n, 1):6.2f} s per image ({n} images)", flush=True)
    return out, s


def class_lines(run: Path, indices: list[int]) -> list[str]:
    """Per class of the sample: the maps' subject share (each dimension weighted by its
    |contribution|) against the subject's area, and the blur test on the logit (issue 25's faces
    figure: are the fakes' maps, and the fakes' decision, on the face?)."""
    from pipeline.explain.profiles import profile_kept
    from pipeline.explain.region_evidence import evidence_derived
    from pipeline.explain.subject_mask import read_maps_and_masks
    from pipeline.store.run_store import open_store

    records = open_store(run).read_records()
    kept = read_maps_and_masks(run, indices)
    lines = []
    for label, name in ((1, "fakes"), (0, "reals")):
        share, area, on_subject, on_background = [], [], [], []
        for i, (maps, mask) in kept.items():
            if int(records[i].get("label", -1)) != label:
                continue
            subject = mask.at(maps.rgb.shape[:2])
            p = profile_kept(maps, mask)
            weight = np.abs(p.contributions)
            share.append(float((p.subject * weight).sum() / max(weight.sum(), 1e-12)))
            area.append(float(subject.mean()))
            e = evidence_derived(run, i, records[i]["id"], maps.rgb, subject).read()
            if e is not None:
                on_subject.append(e.logit_subject)
                on_background.append(e.logit_background)
        if not share:
            continue
        a = float(np.mean(area))
        text = (f"{name} ({len(share)}): maps {100 * np.mean(share):.1f}% of their relevance on the subject "
                f"(|contribution|-weighted), which covers {100 * a:.1f}%")
        if on_subject:
            s_, b_ = float(np.mean(on_subject)), float(np.mean(on_background))
            frac = s_ / (s_ + b_) if s_ + b_ > 0 else 0.5
            odds = (frac / (1 - frac)) / (a / (1 - a)) if 0 < frac < 1 else float("nan")
            text += (f"; blur test on the logit: subject blurred {s_:.3f}, background blurred {b_:.3f} "
                     f"({100 * frac:.0f}% of the moves on the subject, odds {odds:.2f})")
        lines.append(text)
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", default=None, help="run folder or id (default: the demo run, built when missing)")
    parser.add_argument("--images", type=int, default=ATLAS_IMAGES)
    parser.add_argument("--threads", type=int, default=2)
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--in-place", action="store_true", help="compute into the run (its atlas is kept)")
    where.add_argument("--fresh", action="store_true", help="a copy of the run without kept maps (default)")
    args = parse_args(parser, {"images": 4}, argv)
    torch.set_num_threads(args.threads)
    run = _run_folder(args.run) if args.run else demo_run()
    tmp = None
    if not args.in_place:
        tmp = Path(tempfile.mkdtemp(prefix="atlas-bench-"))
        shutil.copytree(run, tmp / run.name, ignore=shutil.ignore_patterns(*KEPT))
        run = tmp / run.name
    try:
        flags = sorted(f for f in cpu_flags() if f.startswith(("avx512", "avx2", "amx")))
        print(f"machine: {machine()}\ncpu flags: {' '.join(flags)}")
        indices = atlas_result(run, args.images).inputs["indices"]
        print(f"run {run.name}: atlas sample of {len(indices)} held-out images")
        (models, load_s) = _timed("load", 1, lambda: load_run_models(run))
        _, maps_s = _timed("maps", len(indices), lambda: get_maps(run, indices, models=models))
        _, masks_s = _timed("masks", len(indices), lambda: get_subject_masks(run, indices, models=models))
        _, blur_s = _timed("blur", len(indices),
                           lambda: get_profiles(run, indices, models=models, with_blur_test=True))
        atlas, atlas_s = _timed("atlas", len(indices), lambda: get_atlas(run, n_images=args.images, models=models))
        _, click_s = _timed("click", 3, lambda: read_profiles(run, indices[:3]))
        total = maps_s + masks_s + blur_s + atlas_s
        print(f"atlas in all (maps + masks + blur tests + profiles/words): {total:.1f} s, "
              f"{total / len(indices):.2f} s per image; {total / maps_s:.2f}x the maps alone (masks "
              f"{masks_s / maps_s:.3f}x, blur tests {blur_s / maps_s:.3f}x, profiles and words "
              f"{atlas_s / maps_s:.3f}x of the maps' time)")
        print(f"click (3 images' profiles from kept maps and masks): {click_s * 1000:.0f} ms")
        print(f"atlas kept: {atlas['n_images']} images profiled, {len(atlas['skipped'])} skipped")
        for line in class_lines(run, indices):
            print(line)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
