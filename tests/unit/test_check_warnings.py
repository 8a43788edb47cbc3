"""Warnings only where an effect is outside chance, and the files behind a count named.

The case an analyst met: a 10,000-image set (3,000 held out) with 3 held-out near-duplicates of
training images and the held-out AUC unchanged without them (0.837 both) was told "WARNING, the answer
may be about the files". Here the same shape on generated features: the near-duplicates are found
and reported, but the AUC without them stays inside its 95% bootstrap interval, so nothing is
flagged. Where the near-duplicates carry the AUC, the warning stays."""
from __future__ import annotations

import numpy as np

from pipeline.checks.duplicates import exact_duplicates
from pipeline.checks.validity import flagged, near_duplicate_report, report_lines
from pipeline.config import Config


def generated_set(n=10_000, heldout=3_000, dim=64, n_near=3, near_correct=False, seed=0):
    """Unit features, a held-out split, labels and p(fake) of AUC ~0.84, and ``n_near`` held-out
    images that are copies (plus a little noise) of training images."""
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(n, dim)).astype(np.float32)
    labels = np.arange(n) % 2
    splits = np.array(["train"] * (n - heldout) + ["heldout"] * heldout)
    prob = 1 / (1 + np.exp(-(rng.normal(size=n) + 0.7 * (2 * labels - 1))))  # d' = 1.4: AUC ~0.84
    held = np.flatnonzero(splits == "heldout")
    near_rows = held[:n_near]
    for k, h in enumerate(near_rows):
        features[h] = features[k] + rng.normal(scale=0.01, size=dim)  # train row k
        if near_correct:  # the detector recognises what it saw in training: certain and right
            prob[h] = 0.999 if labels[h] else 0.001
    paths = [f"img_{i:05d}.jpg" for i in range(n)]
    return features, splits, labels, prob, paths


def checks_of(features, splits, labels, prob, paths):
    cfg = Config()
    near = near_duplicate_report(features, splits, labels, prob, paths, cfg)
    return {"near_duplicates": near}


def test_three_near_duplicates_among_3000_heldout_without_effect_are_reported_not_flagged():
    checks = checks_of(*generated_set())
    near = checks["near_duplicates"]
    assert near["n_heldout_with_near_duplicate"] == 3
    all_, without = near["metrics"]["all"], near["metrics"]["without_near_duplicates"]
    assert 0.8 < all_["auc"] < 0.9 and abs(all_["auc"] - without["auc"]) < 0.002
    assert flagged(checks) == []
    lines = report_lines({"checks": checks, "metrics": {"head": all_}})
    assert lines[0] == "data checks: nothing flagged"
    (line,) = [x for x in lines if "near-duplicates" in x]
    assert "3 held-out image(s)" in line and "inside the 95% interval" in line and "not a warning" in line


def test_near_duplicates_that_carry_the_auc_are_still_a_warning():
    # 600 of 1,000 held-out images are copies of training images, predicted with certainty:
    # without them the AUC drops far outside the interval
    checks = checks_of(*generated_set(n=4_000, heldout=1_000, n_near=600, near_correct=True))
    near = checks["near_duplicates"]
    lo, hi = near["metrics"]["all"]["ci95"]["auc"]
    assert not lo <= near["metrics"]["without_near_duplicates"]["auc"] <= hi
    (warning,) = flagged(checks)
    assert "600 held-out image(s) are near-duplicates" in warning and "outside the 95% interval" in warning


def test_a_run_without_intervals_keeps_its_warning():
    checks = checks_of(*generated_set(n=2_000, heldout=600))
    checks["near_duplicates"]["metrics"]["all"].pop("ci95")  # a run made before the intervals
    assert len(flagged(checks)) == 1


def test_info_names_the_files_under_both_labels_and_across_the_split():
    keys = ["a", "a", "b", "b", "c"]
    labels = [0, 1, 1, 1, 0]
    splits = ["train", "train", "train", "heldout", "train"]
    paths = ["real/cat.png", "fake/cat.png", "fake/dog.png", "fake/dog-copy.png", "real/x.png"]
    dup = exact_duplicates(keys, labels, splits).to_dict(paths=paths)
    lines = report_lines({"checks": {"duplicates": dup}, "metrics": {"head": {}}})
    assert any("1 file(s) appear under both labels" in x for x in lines)
    assert "    one file under both labels: real/cat.png (real), fake/cat.png (fake)" in lines
    assert "    on both sides of the split: fake/dog-copy.png (held-out) = fake/dog.png (train)" in lines
