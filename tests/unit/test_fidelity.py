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
