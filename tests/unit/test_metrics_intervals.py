"""95% bootstrap intervals of the held-out figures (``pipeline.model.metrics``): the vectorised AUC
and AP equal scikit-learn's on every resample (ties included), the intervals hold the figure and
have the width statistics predicts, and they narrow as the held-out set grows."""
from __future__ import annotations

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score

from pipeline.model.metrics import _ranked_rows, binary_metrics, bootstrap_intervals, with_interval


def test_ranked_rows_equal_scikit_learn_with_ties():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 400)
    rows = np.stack([np.round(rng.random(400) * 0.5 + y * 0.3, 2),  # many ties
                     rng.random(400),  # none
                     np.round(rng.random(400), 1),  # eleven distinct values
                     np.full(400, 0.5)])  # one threshold
    auc, ap = _ranked_rows(rows, y)
    np.testing.assert_allclose(auc, [roc_auc_score(y, r) for r in rows], atol=1e-12)
    np.testing.assert_allclose(ap, [average_precision_score(y, r) for r in rows], atol=1e-12)


def test_intervals_hold_the_figures_and_have_the_expected_width():
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 1000)
    prob = np.clip(rng.normal(0.35 + 0.3 * y, 0.2), 0, 1)
    m = binary_metrics(y, prob)
    for key in ("accuracy", "ap", "auc"):
        lo, hi = m["ci95"][key]
        assert lo < m[key] < hi, key
    # accuracy of 2,000 images near 0.77: binomial standard error sqrt(p(1-p)/n) ~ 0.0094, so the
    # 95% interval is ~ +-1.96 x 0.0094 = 0.037 wide in all
    lo, hi = m["ci95"]["accuracy"]
    assert 0.030 < hi - lo < 0.045
    # the same separation on 200 images: about sqrt(10) times wider
    small = np.r_[0:100, 1000:1100]
    m_small = binary_metrics(y[small], prob[small])
    ratio = np.diff(m_small["ci95"]["auc"])[0] / np.diff(m["ci95"]["auc"])[0]
    assert 2.3 < ratio < 4.3


def test_a_perfect_detector_has_a_point_interval_and_one_class_has_no_auc():
    y = np.repeat([0, 1], 50)
    m = binary_metrics(y, np.where(y == 1, 0.9, 0.1))
    assert m["ci95"]["auc"] == [1.0, 1.0] and m["ci95"]["accuracy"] == [1.0, 1.0]
    prob = np.linspace(0.2, 0.9, 30)
    only_fakes = bootstrap_intervals(np.ones(30, int), prob)
    assert only_fakes["auc"] is None and only_fakes["ap"] is None
    assert only_fakes["accuracy"][0] < (prob > 0.5).mean() < only_fakes["accuracy"][1]


def test_resamples_keep_the_class_counts_so_the_interval_is_reproducible():
    rng = np.random.default_rng(1)
    y = (rng.random(300) < 0.2).astype(int)  # imbalanced: every resample still has 20% fakes
    prob = rng.random(300) * 0.5 + 0.4 * y
    assert bootstrap_intervals(y, prob) == bootstrap_intervals(y, prob)  # fixed seed
    assert binary_metrics(y, prob, n_boot=0).get("ci95") is None


def test_with_interval_text():
    assert with_interval({"auc": 0.9474, "ci95": {"auc": [0.9211, 0.9683]}}, "auc") == "0.947 [0.921, 0.968]"
    assert with_interval({"auc": 0.9474}, "auc") == "0.947"  # a run made before the intervals
    assert with_interval({"auc": float("nan")}, "auc") == "n/a"
