"""The offline demo as `make serve` builds it (400 real + 400 GAN-regenerated crops) through the
pipeline with the stand-in encoder: detection is above chance overall and for every generator.

Measured (2026-12-02, seed 0, the defaults: projection trained once on the background photo set,
bf16 embeddings): held-out accuracy 0.600, AP 0.623, AUC 0.663 on 240 images; per generator AUC:
realesr-animevideov3 0.766, realesrgan-x4plus 0.643, realsr-df2k 0.577 (with the projection trained
on the demo set and fp32: 0.629 / 0.668 / 0.675; 0.771 / 0.633 / 0.606).
``bench/standin_probe.py`` puts the stand-in's ceiling per generator at 0.904 / 0.771 / 0.676 (the
best of 240 linear probes on DINOv2 features, chosen on the held-out split), so the limit is what
DINOv2 ViT-S sees of super-resolution traces, not the head. Bounds below keep a margin; RealSR is
above chance but not well above it with this encoder (the open point of issue 3).
"""
from __future__ import annotations

import time

import pytest

from pipeline.config import REPO_ROOT, load_config
from pipeline.data.demo.builtin import ensure_demo_config
from pipeline.runner import run_pipeline

pytestmark = pytest.mark.slow


def test_demo_run_detects_each_generator_above_chance(tmp_path):
    cfg = load_config(REPO_ROOT / "configs" / "default.yaml",
                      ["encoder.name=dinov2_standin", f"runs_dir={tmp_path / 'runs'}"])
    start = time.perf_counter()
    cfg = ensure_demo_config(cfg, log=print)
    built = time.perf_counter()
    meta = run_pipeline(cfg).read_meta()
    done = time.perf_counter()
    print(f"demo data {built - start:.0f} s, pipeline {done - built:.0f} s (both cached after a first start)")
    h = meta["metrics"]["head"]
    assert meta["data"]["n_real"] == meta["data"]["n_fake"] == 400
    assert h["accuracy"] >= 0.58 and h["ap"] >= 0.6 and h["auc"] >= 0.62, h
    assert set(h["per_generator"]) == {"realesrgan-x4plus", "realesr-animevideov3", "realsr-df2k"}
    for name, m in h["per_generator"].items():
        assert m["auc"] >= 0.55 and m["n_real"] > 0 and m["n_fake"] > 0, (name, m)
