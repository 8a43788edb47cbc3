"""Detector fidelity (issue 26): the reference linear probe measures what the embedding allows, the
run keeps it beside the head's figures, and the projection's width follows the encoder."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import norm

from pipeline.config import ProjectionConfig
from pipeline.model.probe import fidelity_words, reference_probe
from pipeline.model.projection import VisionOnlyProjection, projection_dim


def _gaussian_classes(n: int, d: int, shift: float, seed: int = 0):
    """Two unit Gaussians ``shift`` apart along the first axis: the best possible AUC of any
    classifier is Phi(shift / sqrt(2)); the other ``d - 1`` dimensions are noise."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    x = rng.standard_normal((n, d))
    x[:, 0] += shift * y
    return x, y


def test_reference_probe_reaches_the_known_best_auc_on_the_held_out_split():
    x, y = _gaussian_classes(4000, 20, shift=1.5)
    splits = np.where(np.arange(len(y)) < 2000, "train", "heldout")
    m = reference_probe(x, y, splits)
    best = norm.cdf(1.5 / np.sqrt(2))  # 0.855
    assert abs(m["auc"] - best) < 0.02, (m["auc"], best)
    assert m["n"] == 2000 and m["input_dim"] == 20 and m["C"] == 0.01
    assert m["ci95"]["auc"][0] < m["auc"] < m["ci95"]["auc"][1]
    # fitted on the training split only: flipping the held-out labels flips the AUC exactly
    flipped = np.where(splits == "heldout", 1 - y, y)
    assert reference_probe(x, flipped, splits)["auc"] == pytest.approx(1 - m["auc"], abs=1e-12)


def test_reference_probe_needs_both_classes_to_train():
    x, y = _gaussian_classes(40, 4, shift=1.0)
    y[:20] = 0
    with pytest.raises(ValueError, match="both classes"):
        reference_probe(x, y, np.where(np.arange(40) < 20, "train", "heldout"))


def test_fidelity_words_name_both_figures_and_flag_a_weak_head():
    head = {"auc": 0.948, "reference_probe": {"auc": 0.982, "input_dim": 1536}}
    text, weaker = fidelity_words(head)
    assert text == ("the embedding allows AUC 0.982 (linear probe on all 1536 dimensions), the 16-d "
                    "head reaches 0.948 (gap +0.034)")
    assert weaker
    assert fidelity_words({"auc": 0.975, "reference_probe": {"auc": 0.982, "input_dim": 1536}})[1] is False
    assert fidelity_words({"auc": 0.9}) is None  # runs made before the probe
    assert fidelity_words({"auc": float("nan"), "reference_probe": {"auc": 0.9}}) is None


def test_projection_width_is_the_papers_for_clip_and_half_a_wider_embedding():
    auto = ProjectionConfig(dim=None)
    assert projection_dim(auto, 512) == 256  # CLIP ViT-B/32: the paper's 512 -> 256
    assert projection_dim(auto, 1536) == 768  # the stand-in's four CLS tokens
    assert projection_dim(auto, 32) == 32  # never wider than the embedding (the tiny test encoder)
    assert projection_dim(ProjectionConfig(dim=256), 1536) == 256  # a configured width wins
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 768)).astype(np.float32)
    proj = VisionOnlyProjection(dim=None, epochs=1).fit(x, x, x)
    assert proj.transform(x).shape == (64, 384)


def test_a_run_keeps_the_reference_probe_and_info_prints_it(tmp_path):
    """A tiny run with the projection trained on a photo folder and the data set together
    (``projection.train_on: both``): the head's metrics hold the reference probe on the full
    32-d embedding, measured on the same held-out images, and ``pipeline info`` prints both AUCs."""
    import io

    from PIL import Image

    from pipeline import runner
    from pipeline.cli.main import print_metrics
    from pipeline.config import REPO_ROOT, load_config
    from tests.integration.test_pipeline_tiny import make_dataset

    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    for i in range(30):
        Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(photos / f"{i}.png")
    data = make_dataset(tmp_path / "data", n_per_class=20, salt=False)
    cfg = load_config(REPO_ROOT / "configs" / "test.yaml", [
        f"data.root={data}", f"runs_dir={tmp_path / 'runs'}", f"cache_dir={tmp_path / 'cache'}",
        "projection.train_on=both", f"projection.background={photos}"])
    meta = runner.run_pipeline(cfg).read_meta()
    proj, head = meta["metrics"]["projection"], meta["metrics"]["head"]
    assert proj["trained_on"].startswith("folder-") and "+data-" in proj["trained_on"]
    assert proj["n_images"] == 30 + 40
    probe = head["reference_probe"]
    assert probe["input_dim"] == 32 and probe["n"] == head["n"] and probe["n_fake"] == head["n_fake"]
    assert probe["auc"] > 0.9  # the generated classes differ plainly (test_pipeline_tiny)
    out = io.StringIO()
    print_metrics(meta, out=out)
    assert f"the embedding allows AUC {probe['auc']:.3f}" in out.getvalue()
    assert f"the 16-d head reaches {head['auc']:.3f}" in out.getvalue()
