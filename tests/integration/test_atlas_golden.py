"""Golden: are the decisive dimensions profiled where the detector's evidence is? (issue 25)

Two generated sets (``tests/golden_images.py``): a shaded ball (the subject, ~42% of the image) on a
dull ground, fine pixel noise on both; reals and fakes differ only in the fine texture of the
ground (first set) or of the ball (second). A random tiny encoder is at chance on such textures, so
the detector's encoder is the tiny CLIP architecture TRAINED for the test on a separate draw of
each set (``tests/trained_tiny.py``, 512 images, Adam until 99% training accuracy): a detector that
truly decides by the ground (or the ball). The real pipeline then runs on 120 fresh images per set
(projection, 16-d head, maps, DINOv2 subject masks, blur tests, profiles), and the 18 held-out
fakes are profiled. The three dimensions with the largest mean |contribution| are the decisive ones.

Measured (one torch thread, 2-core machine):

* preconditions: held-out AUC 1.00 (ground) and 0.94 (ball); the subject mask's IoU with the true
  ball >= 0.87 on every profiled fake.
* the blur test (``pipeline.explain.region_evidence``) follows the evidence: the decisive
  dimensions' subject odds (the subject's share of their moves under blur, against its area) are
  0.011, 0.020, 0.021 when the evidence is in the ground and 7.24, 7.70, 7.26 when it is on the
  ball; the margin asked is 3 (odds <= 1/3 and >= 3).
* the maps' subject shares do NOT: odds 1.48, 1.31, 1.05 (ground: the wrong side) and 1.05, 1.30,
  0.94 (ball). Chefer's rollout
  follows the class token's attention, which gathers on the ball's patches whatever the evidence
  (earlier measures, on the sets without noise on the other side: 1.66 / 1.48; the trained
  encoder's own classifier's map 0.35 / 2.2 after 3 epochs, drifting to 0.84 / 2.1 by 12). So the
  map test is a strict xfail: it records the measured failure and says so the day it holds, and
  the atlas reports both (where the map is, where the evidence is).
"""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from pipeline.config import REPO_ROOT, Config, load_config
from pipeline.explain.atlas_jobs import get_profiles
from pipeline.explain.contributions import column_order
from pipeline.explain.profiles import summarise
from pipeline.explain.subject_mask import read_subject_masks
from pipeline.runner import run_pipeline
from tests.golden_images import WHERE, golden_images, true_subject, write_golden_set
from tests.helpers import torch_threads
from tests.trained_tiny import train_tiny_detector, trained_tiny_encoder

pytestmark = pytest.mark.slow

TRAIN_PER_CLASS = 256  # the encoder's training images (a separate draw from the run's)
RUN_PER_CLASS = 60  # the run's images: 30% held out, so 18 held-out fakes are profiled
DECISIVE = 3  # dimensions with the largest mean |contribution| on the profiled fakes
MARGIN = 1.5  # decisive dimensions' mean subject odds ratio of the maps: <= 1/MARGIN (ground), >= MARGIN (ball)
EVIDENCE_MARGIN = 3.0  # ...of the blur test, for each decisive dimension


def odds_ratio(share: float, area: float) -> float:
    """How much denser the relevance is on the subject than on the background (1: a flat map)."""
    return (share / (1 - share)) / (area / (1 - area))


def _profiled(tmp, where: str) -> dict:
    checkpoint = tmp / "tiny.pt"
    images, labels = golden_images(where, TRAIN_PER_CLASS, seed=1)
    train_accuracy = train_tiny_detector(images, labels, checkpoint)
    data = write_golden_set(tmp / "data", where, RUN_PER_CLASS, seed=2)
    cfg = load_config(REPO_ROOT / "configs" / "test.yaml",
                      [f"data.root={data}", f"runs_dir={tmp / 'runs'}", f"cache_dir={Config().cache_path}",
                       *trained_tiny_encoder(checkpoint), "cells.n_cells=4"])
    store = run_pipeline(cfg)
    run, records = store.path, store.read_records()
    held = [i for i, r in enumerate(records) if r["split"] == "heldout"]
    fakes = [i for i in held if int(records[i]["label"]) == 1]
    profiles = list(get_profiles(run, fakes, with_blur_test=True).values())
    truth = true_subject()
    ious = [float((m.at(truth.shape) & truth).sum() / (m.at(truth.shape) | truth).sum())
            for m in read_subject_masks(run, fakes).values()]
    summaries = summarise(profiles)
    decisive = column_order(np.stack([p.contributions for p in profiles]))[:DECISIVE]
    return {"train_accuracy": train_accuracy, "n_fakes": len(fakes), "n_profiled": len(profiles), "ious": ious,
            "auc": roc_auc_score([int(records[i]["label"]) for i in held], [float(records[i]["prob_fake"]) for i in held]),
            "odds": [odds_ratio(summaries[k].subject_share, summaries[k].subject_area) for k in decisive],
            "evidence_odds": [odds_ratio(summaries[k].evidence_share, summaries[k].subject_area) for k in decisive],
            "evidence_verdicts": [summaries[k].evidence_verdict for k in decisive]}


@pytest.fixture(scope="module")
def profiled(tmp_path_factory):
    with torch_threads(1):  # tiny models: one thread is fastest, and the training is deterministic
        return {where: _profiled(tmp_path_factory.mktemp(where), where) for where in WHERE}


@pytest.mark.parametrize("where", WHERE)
def test_the_detector_and_the_masks_are_fit_to_judge_by(profiled, where):
    p = profiled[where]
    assert p["train_accuracy"] >= 0.99, p
    assert p["auc"] >= 0.9, p  # far from chance on held-out images: the maps explain a real decision
    assert p["n_profiled"] == p["n_fakes"] >= 10, p
    assert min(p["ious"]) >= 0.8, p  # the subject mask is the ball


def test_the_blur_test_finds_the_decisive_dimensions_evidence_where_it_is(profiled):
    """Each decisive dimension reads the region that tells the classes apart, not the other side's
    noise: by the margin, and in the atlas's own words."""
    ground, ball = profiled["background"], profiled["subject"]
    assert max(ground["evidence_odds"]) <= 1 / EVIDENCE_MARGIN, ground
    assert min(ball["evidence_odds"]) >= EVIDENCE_MARGIN, ball
    assert ground["evidence_verdicts"] == ["background"] * DECISIVE and ball["evidence_verdicts"] == ["subject"] * DECISIVE


@pytest.mark.xfail(strict=True, reason="measured: the decisive dimensions' maps put their relevance on the ball "
                                       "either way (subject odds ~1); the rollout follows the attention (docstring)")
def test_the_decisive_dimensions_maps_are_where_the_evidence_is(profiled):
    ground, ball = np.mean(profiled["background"]["odds"]), np.mean(profiled["subject"]["odds"])
    assert ground <= 1 / MARGIN and ball >= MARGIN, (ground, ball)
