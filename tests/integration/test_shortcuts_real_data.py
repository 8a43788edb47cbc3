"""File facts + shortcut check on the real-vs-AI sets in ../shared/data (no encoder needed, fast).

ml72's README names its confound: every fake is 559x559, no real is. faces was built to have none:
both classes resized to 256x256 and saved as JPEG q95 the same way, so nothing may be flagged.
"""
from __future__ import annotations

import numpy as np
import pytest

from pipeline.config import REPO_ROOT, DataConfig
from pipeline.data.scan import scan
from pipeline.checks.shortcuts import shortcut_check
from pipeline.data.splits import assign_splits

SHARED = REPO_ROOT.parent / "shared" / "data"

pytestmark = pytest.mark.realdata


def _check(name):
    root = SHARED / name
    if not (root / "manifest.csv").exists():
        pytest.skip(f"{root} is absent")
    scanned = scan(DataConfig(manifest=str(root / "manifest.csv")))
    labels = np.array([r.label for r in scanned.records])
    generators = [r.generator for r in scanned.records]
    splits = assign_splits(labels, generators, [r.source for r in scanned.records],
                           [r.split for r in scanned.records], holdout_fraction=0.3, seed=0)
    return scanned, shortcut_check(scanned.facts, labels, splits, generators, seed=0)


def test_ml72_flags_the_image_size():
    scanned, result = _check("ml72")
    assert len(scanned.facts) == len(scanned.records) == 100
    flagged = {f["fact"]: f for f in result["flags"]}
    assert "size" in flagged, result["flags"]
    assert flagged["size"]["cv_auc"] >= 0.95 and flagged["size"]["heldout_auc"] >= 0.95
    assert "every fake is 559x559" in flagged["size"]["reason"]
    # both classes are JPEG q75 4:2:0: the format and the JPEG settings must not be blamed
    for fact in ("format", "jpeg_quality", "subsampling", "progressive", "exif"):
        assert fact not in flagged
    entry = {e["fact"]: e for e in result["facts"]}
    assert entry["jpeg_quality"]["status"] == "constant"
    # 10 fakes per generator (7 in training): too few to score each generator on its own
    assert result["per_generator"] and all(g["status"] == "too few" and not g["flags"]
                                           for g in result["per_generator"].values())


def test_faces_flags_nothing():
    scanned, result = _check("faces")
    assert result["status"] == "ok" and result["flags"] == [], result["flags"]
    assert not result["all_facts"]["flagged"]
    entry = {e["fact"]: e for e in result["facts"]}
    for fact in ("format", "size", "jpeg_quality", "subsampling"):
        assert entry[fact]["status"] == "constant"
    # file size does vary (the content does) and was scored, weakly
    assert entry["file_bytes"]["status"] == "ok" and entry["file_bytes"]["cv_auc"] < 0.8
