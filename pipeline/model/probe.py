"""The reference linear probe: how good a detector the run's embedding allows.

The analyst explains the run's 16-d head; if that head were much weaker than a plain linear
classifier on the same embeddings, the explanations would describe a detector nobody would use.
The reference is the usual linear probe of frozen features (UniversalFakeDetect, Ojha et al., CVPR
2023, probe a frozen CLIP embedding linearly): a standardised logistic regression with a fixed,
strong L2 penalty (``C`` = 0.01, no tuning on the held-out split), fitted on the run's training
split of the full encoder embedding and measured on its held-out split with the head's metrics.
Seconds for thousands of images.
"""
from __future__ import annotations

import time

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from pipeline.data.splits import HELDOUT, TRAIN
from pipeline.model.metrics import binary_metrics

C = 0.01


def fit_reference_probe(x: np.ndarray, y: np.ndarray, c: float = C) -> Pipeline:
    """Standardised logistic regression (L2, ``C`` = ``c``) of ``y`` (1 = fake) on ``x``."""
    return make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=5000)).fit(
        np.asarray(x, np.float64), np.asarray(y).astype(int))


def reference_probe(embeddings: np.ndarray, labels: np.ndarray, splits: np.ndarray, c: float = C,
                    blas_threads: int | None = None) -> dict:
    """Held-out metrics (``pipeline.model.metrics.binary_metrics`` keys, with 95% intervals) of the
    reference probe fitted on the training split, plus ``C`` and ``input_dim``. ``blas_threads``
    caps the BLAS threads while it fits (the run fits it on one core beside the head's).

    Raises
    ------
    ValueError
        The training split holds one class only.
    """
    labels = np.asarray(labels).astype(int)
    train, held = splits == TRAIN, splits == HELDOUT
    if len(np.unique(labels[train])) < 2:
        raise ValueError("the reference probe needs both classes in the training split")
    started = time.perf_counter()
    with threadpool_limits(blas_threads, "blas"):
        probe = fit_reference_probe(embeddings[train], labels[train], c)
        scores = probe.predict_proba(np.asarray(embeddings[held], np.float64))[:, 1]
    metrics = binary_metrics(labels[held], scores)
    metrics.update({"C": c, "input_dim": int(embeddings.shape[1]),
                    "seconds": round(time.perf_counter() - started, 3)})
    return metrics


FIDELITY_GAP = 0.015  # head AUC this far below the reference probe's: the explained detector is weaker


def fidelity_words(head_metrics: dict) -> tuple[str, bool] | None:
    """("the embedding allows AUC 0.982, the 16-d head reaches 0.975 (gap 0.007)", weaker) from a
    run's head metrics; ``weaker``: the gap exceeds :data:`FIDELITY_GAP`. None for runs made before
    the reference probe was measured."""
    probe = head_metrics.get("reference_probe")
    if not probe or probe.get("auc") is None or head_metrics.get("auc") is None:
        return None
    ref, auc = float(probe["auc"]), float(head_metrics["auc"])
    if ref != ref or auc != auc:  # NaN: one class in the held-out split
        return None
    gap = ref - auc
    return (f"the embedding allows AUC {ref:.3f} (linear probe on all {probe.get('input_dim', '?')} "
            f"dimensions), the 16-d head reaches {auc:.3f} (gap {gap:+.3f})", gap > FIDELITY_GAP)
