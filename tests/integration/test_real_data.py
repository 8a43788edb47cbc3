"""The pipeline with the offline stand-in encoder on the real-vs-AI sets in ../shared/data.

Bounds were chosen from measured runs with a margin (see the note beside each); they are far above
chance, so a broken stage (labels flipped, split leaking, features scrambled) fails them.
"""
from __future__ import annotations

import pytest

from pipeline.config import REPO_ROOT, load_config
from pipeline.runner import run_pipeline

SHARED = REPO_ROOT.parent / "shared" / "data"

pytestmark = [pytest.mark.realdata, pytest.mark.slow]


def _run(name, tmp_path_factory):
    root = SHARED / name
    if not root.exists():
        pytest.skip(f"{root} is absent")
    # the shared cache keeps the converted stand-in and embeddings across tests and sessions
    cfg = load_config(REPO_ROOT / "configs" / "standin.yaml",
                      [f"data.root={root}", f"runs_dir={tmp_path_factory.mktemp('runs')}"])
    store = run_pipeline(cfg)
    return {**store.read_meta(), "_path": str(store.path)}


def test_faces_stylegan2_detected_well_above_chance(tmp_path_factory):
    meta = _run("faces", tmp_path_factory)
    h = meta["metrics"]["head"]
    print("faces", {k: h[k] for k in ("accuracy", "ap", "auc", "n")})
    # measured 2026-12-02 with the defaults then (256-d background projection, bf16): accuracy 0.850,
    # AP 0.856, AUC 0.948 on 240 held-out faces (180 real, 60 StyleGAN2); with the defaults of issue 26
    # (768-d projection trained on faces, bf16): 0.863 / 0.915 / 0.969. Chance: accuracy 0.75 by always saying "real", AP 0.25, AUC 0.5.
    assert h["accuracy"] >= 0.80 and h["ap"] >= 0.75 and h["auc"] >= 0.88, h
    assert h["fake_accuracy"] >= 0.6 and h["real_accuracy"] >= 0.6, h  # not one-class guessing
    assert h["orthogonality"]["max_abs_cosine"] < 0.2
    assert meta["encoder"]["name"] == "dinov2_standin"
    # issue 26: the explained head detects as well as its embedding allows. Measured with the
    # defaults (768-d projection trained on faces): head AUC 0.969, reference probe 0.983 (gap 0.013);
    # before (256-d background projection) 0.947 against 0.983.
    assert h["reference_probe"]["auc"] - h["auc"] <= 0.015, (h["auc"], h["reference_probe"]["auc"])


def test_ml72_head_matches_a_linear_probe(tmp_path_factory):
    meta = _run("ml72", tmp_path_factory)
    h = meta["metrics"]["head"]
    print("ml72", {k: h[k] for k in ("accuracy", "ap", "auc", "n")})
    # 50 real vs 50 fake (diverse scenes, every fake 559x559), 30 held out. Measured: accuracy
    # 0.600, AP 0.669, AUC 0.644 (defaults); 0.533 / 0.665 / 0.653 with a per-data projection, fp32. The stand-in carries some signal here (5-fold CV of a logistic
    # regression on all 100 embeddings: 0.74) but 60 training images and 30 held-out ones make the
    # held-out figure noisy: a logistic regression on the same features and split also gets 0.53.
    # So the test checks that the 16-d head loses nothing against that probe; "well above chance"
    # is not reachable on this set with the stand-in.
    reference = _same_split_probe_accuracy(meta)
    assert h["accuracy"] >= reference - 0.1 and h["auc"] >= 0.55, (h, reference)


def _same_split_probe_accuracy(meta) -> float:
    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from pipeline.store.run_store import RunStore
    store = RunStore(meta["_path"])
    records = store.read_records()
    y = np.array([r["label"] for r in records])
    train = np.array([r["split"] == "train" for r in records])
    x = np.asarray(store.load_array("features"))
    probe = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=3000)).fit(x[train], y[train])
    return float(probe.score(x[~train], y[~train]))
