"""Golden: are the decisive dimensions profiled where the detector's evidence is? (issue 25)

Two generated sets (``tests/golden_images.py``): a shaded ball (the subject, ~42% of the image) on a
dull ground; reals and fakes differ only in the fine texture of the ground (first set) or of the
ball (second). A random tiny encoder is at chance on such textures, so the detector's encoder is the
tiny CLIP architecture TRAINED for the test on a separate draw of each set (``tests/trained_tiny.py``,
512 images, Adam until 99% training accuracy: 2 epochs / 7 epochs): a detector that truly decides by
the ground (or the ball). The real pipeline then runs on 80 fresh images per set (projection, 16-d
head, maps, DINOv2 subject masks, profiles), and the 12 held-out fakes are profiled.

Measured (one torch thread, 2-core machine; the whole module takes ~35 s):

* preconditions hold: held-out AUC 1.00 (ground) and 0.92 (ball); the subject mask's IoU with the
  true ball 0.91-0.97 on every profiled fake.
* the claim does NOT hold: the three dimensions with the largest mean |contribution| have subject
  odds ratios 1.44, 0.83, 2.71 (mean 1.66) when the evidence is in the ground and 1.47, 0.66, 2.32
  (mean 1.48) when it is on the ball (subject area 0.42). Other training lengths gave the same
  picture (3 epochs: means 1.03 / 1.12; 6 epochs: 1.08 / 1.66), and so did the run's decision map
  itself (``decision_relevance`` through projection and head: odds 1.06 / 1.62).
* what does follow the evidence is the trained encoder's OWN classifier's decision map (same
  rollout, true-disc mask, 24 held-out fakes): odds 0.35 (ground) and 2.2 (ball) after 3 epochs,
  drifting to 0.84 / 2.1 by 12 epochs. The run's head finds another separating direction in the
  32-d embedding, and its dimensions' maps mix the ball's content (relevance piles on the centre
  patches) with the evidence.

So the verdict test is a strict xfail: it records the measured failure and says so the day it holds.
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
RUN_PER_CLASS = 40  # the run's images: 30% held out, so 12 held-out fakes are profiled
DECISIVE = 3  # dimensions with the largest mean |contribution| on the profiled fakes
MARGIN = 1.5  # decisive dimensions' mean subject odds ratio: <= 1/MARGIN (ground), >= MARGIN (ball)


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
    profiles = list(get_profiles(run, fakes).values())
    truth = true_subject()
    ious = [float((m.at(truth.shape) & truth).sum() / (m.at(truth.shape) | truth).sum())
            for m in read_subject_masks(run, fakes).values()]
    summaries = summarise(profiles)
    decisive = column_order(np.stack([p.contributions for p in profiles]))[:DECISIVE]
    return {"train_accuracy": train_accuracy, "n_fakes": len(fakes), "n_profiled": len(profiles), "ious": ious,
            "auc": roc_auc_score([int(records[i]["label"]) for i in held], [float(records[i]["prob_fake"]) for i in held]),
            "odds": [odds_ratio(summaries[k].subject_share, summaries[k].subject_area) for k in decisive]}


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


@pytest.mark.xfail(strict=True, reason="measured: decisive dimensions' mean subject odds 1.66 (ground) and "
                                       "1.48 (ball); the run's head does not follow the evidence (docstring)")
def test_the_decisive_dimensions_are_profiled_where_the_evidence_is(profiled):
    ground, ball = np.mean(profiled["background"]["odds"]), np.mean(profiled["subject"]["odds"])
    assert ground <= 1 / MARGIN and ball >= MARGIN, (ground, ball)
