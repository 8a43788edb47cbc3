"""``bench/gpu.py --device cpu --quick`` runs end to end, so the GPU script cannot rot unnoticed.

It checks each section of the summary for figures that mean something: throughputs that are
positive and finite, decoding on the "device" (torchvision) that gives the same embeddings as
Pillow's (cosine), batched maps equal to the per-dimension ones, and a run over every file.
"""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_gpu_bench_quick_on_cpu(tmp_path):
    out = tmp_path / "gpu.json"
    proc = subprocess.run([sys.executable, "bench/gpu.py", "--device", "cpu", "--quick",
                           "--json", str(out), "--work", str(tmp_path / "work")],
                          cwd=REPO, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for header in ("== embedding", "== relevance", "== run", "JSON summary"):
        assert header in proc.stdout
    summary = json.loads(out.read_text())
    assert summary["quick"] and summary["device"].startswith("cpu")

    rows = {(r["encoder"], r["precision"]): r for r in summary["embedding"]}
    expected = [("vit_b32", p) for p in ("fp32", "bf16")]
    if "embedding standin" not in summary["skipped"]:  # its weights may be unobtainable offline
        expected += [("standin", p) for p in ("fp32", "bf16")]
    assert sorted(rows) == sorted(expected)
    for row in rows.values():
        for key in ("forward_img_s", "cpu_decode_img_s", "device_decode_img_s",
                    "device_decode_only_img_s"):
            assert 0 < row[key] < 1e6 and math.isfinite(row[key]), (key, row)
        assert row["images"] == 8 and row["batch"] == 8
        assert row["device_decode_img_s"] < row["device_decode_only_img_s"]  # it adds the forward
        # torchvision's JPEG decoder and resize feed the model nearly the same pixels as Pillow's
        assert row["device_vs_cpu_decode_cosine_min"] > 0.99, row

    maps = summary["relevance"]
    assert {r["encoder"] for r in maps} >= {"vit_b32"}
    for row in maps:
        assert row["batched_s_per_image"] > 0 and row["per_dimension_s_per_image"] > 0
        assert row["max_relative_difference"] < 1e-4  # the two paths compute the same maps
        assert row["ratio"] == pytest.approx(row["per_dimension_s_per_image"]
                                             / row["batched_s_per_image"], rel=0.05)

    run = summary["run"]
    assert run["files"] == 400 and run["run_s"] > 0
    assert {"scan", "projection", "head", "write"} <= set(run["stages_s"])
    assert run["stages_s"].get("embed", 0) < 5  # embeddings were supplied, not computed
    runs = list((tmp_path / "work" / "run" / "runs").glob("*/meta.json"))
    assert len(runs) == 1
    assert json.loads(runs[0].read_text())["data"]["n_images"] == 400
