"""The precision benchmark's agreement harness (``bench/_bf16_agreement.py``, issue 27) on
embeddings whose answer is known: classes 5 standard deviations apart along one direction of a
64-d embedding, so both the logistic probe and the pipeline's projection + head must score them
almost perfectly on the held-out split, and a shuffled labelling must not."""
from __future__ import annotations

import numpy as np

from bench._bf16_agreement import LabelledSet, heldout_metrics


def _labelled(n: int = 240, seed: int = 0, shuffle: bool = False) -> tuple[np.ndarray, LabelledSet]:
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    emb = rng.normal(size=(n, 64)).astype(np.float32)
    emb[:, 0] += 5.0 * labels  # Bayes AUC: Phi(5 / sqrt 2) = 0.9998
    heldout = rng.random(n) < 0.3
    used = rng.permutation(labels) if shuffle else labels
    return emb, LabelledSet("known", [], used, heldout, ["g"] * n)


def test_separable_embeddings_are_scored_near_perfectly_by_probe_and_head():
    emb, data = _labelled()
    m = heldout_metrics(emb, data)
    assert m["logistic"]["auc"] > 0.97 and m["head"]["auc"] > 0.97, m


def test_labels_that_say_nothing_are_scored_near_chance():
    emb, data = _labelled(shuffle=True)
    m = heldout_metrics(emb, data)
    assert abs(m["logistic"]["auc"] - 0.5) < 0.2 and abs(m["head"]["auc"] - 0.5) < 0.2, m
