"""The bias probe on real faces (../shared/data/faces, the stand-in encoder): a set whose fakes are
PNG while its reals are JPEG gives a detector that learned the compression, and the probe shows
the asymmetric shift (JPEG-compressed fakes turn "real", reals stay put); the same images with both
classes saved alike do not show it (issue 12).

Both sets are 128-px Lanczos reductions of the same faces (which removes the originals' own JPEG
traces); reals are then saved as JPEG quality 75, fakes either as JPEG 75 too (the control) or as
PNG. Measured on the 2-core machine (100 faces per class, 60 probed): control: JPEG 50/75/95 all
"stable" (|shift| <= 0.013); PNG fakes: held-out AUC 1.000, and JPEG 75 moved the fakes' p(fake)
by -0.906 (97% flipped) against -0.001 for the reals.
"""
from __future__ import annotations

import csv
from pathlib import Path

import pytest
from PIL import Image

from pipeline.config import REPO_ROOT, load_config, with_data
from pipeline.runner import run_pipeline
from pipeline.checks.validity import run_bias_probe

FACES = REPO_ROOT.parent / "shared" / "data" / "faces"
N_PER_CLASS = 60
pytestmark = [pytest.mark.slow, pytest.mark.realdata,
              pytest.mark.skipif(not FACES.is_dir(), reason=f"{FACES} is not there")]


def build(out: Path, fakes_as_png: bool) -> Path:
    rows = list(csv.DictReader(open(FACES / "manifest.csv")))
    lines = ["path,label,category"]
    for label in ("real", "fake"):
        (out / label).mkdir(parents=True, exist_ok=True)
        for r in [r for r in rows if r["label"] == label][:N_PER_CLASS]:
            im = Image.open(FACES / r["path"]).convert("RGB").resize((128, 128), Image.Resampling.LANCZOS)
            if label == "fake" and fakes_as_png:
                rel = f"{label}/{Path(r['path']).stem}.png"
                im.save(out / rel)
            else:
                rel = f"{label}/{Path(r['path']).stem}.jpg"
                im.save(out / rel, quality=75)
            lines.append(f"{rel},{label},face")
    (out / "manifest.csv").write_text("\n".join(lines) + "\n")
    return out


def probe(tmp_path, name, fakes_as_png) -> dict:
    cfg = load_config(REPO_ROOT / "configs" / "standin.yaml", [f"runs_dir={tmp_path / 'runs'}"])
    store = run_pipeline(with_data(cfg, build(tmp_path / name, fakes_as_png)))
    return {t["name"]: t for t in run_bias_probe(store.path)["transforms"]}, store.read_meta()


def test_the_probe_tells_a_learned_compression_shortcut_from_a_clean_detector(tmp_path):
    control, _ = probe(tmp_path, "both-jpeg", fakes_as_png=False)
    shortcut, meta = probe(tmp_path, "fakes-png", fakes_as_png=True)
    assert "format" in [f["fact"] for f in meta["checks"]["shortcuts"]["flags"]]
    for name in ("jpeg75", "jpeg50"):
        c, s = control[name], shortcut[name]
        assert c["verdict"] != "bias" and abs(c["fake"]["mean_shift"]) < 0.05, c
        assert s["verdict"] == "bias", s
        assert s["fake"]["mean_shift"] < -0.3 and abs(s["real"]["mean_shift"]) < 0.05, s
    assert shortcut["png"]["verdict"] == "stable"  # lossless: pixels unchanged, nothing moves
