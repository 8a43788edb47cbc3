"""Detection metrics on the held-out split: accuracy, average precision and ROC AUC (fake = positive),
overall and per generator. A generator's figures are computed on its fakes together with the real
images of the same generator folder (CNNDetection layout) or, where reals carry no generator, all
held-out reals, as in the usual per-generator benchmark tables."""
from __future__ import annotations

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score


def binary_metrics(y: np.ndarray, prob: np.ndarray) -> dict:
    y = np.asarray(y).astype(int)
    prob = np.asarray(prob, dtype=np.float64)
    out = {"n": int(len(y)), "n_real": int((y == 0).sum()), "n_fake": int((y == 1).sum()),
           "accuracy": float(((prob > 0.5).astype(int) == y).mean()) if len(y) else float("nan")}
    both = len(np.unique(y)) == 2
    out["ap"] = float(average_precision_score(y, prob)) if both else float("nan")
    out["auc"] = float(roc_auc_score(y, prob)) if both else float("nan")
    out["real_accuracy"] = float((prob[y == 0] <= 0.5).mean()) if (y == 0).any() else float("nan")
    out["fake_accuracy"] = float((prob[y == 1] > 0.5).mean()) if (y == 1).any() else float("nan")
    return out


def generator_rows(y: np.ndarray, generators: list[str]) -> dict[str, np.ndarray]:
    """Boolean row mask per generator that has fakes: its own rows, plus the reals without a
    generator where it has no reals of its own (the rule stated in the module docstring)."""
    y = np.asarray(y)
    gens = np.asarray(generators, dtype=object)
    result = {}
    for g in sorted({g for g, label in zip(gens, y) if label == 1 and g}):
        own = gens == g
        result[g] = own if (y[own] == 0).any() else own | ((y == 0) & (gens == ""))
    return result


def per_generator_metrics(y: np.ndarray, prob: np.ndarray, generators: list[str]) -> dict:
    return {g: binary_metrics(y[rows], prob[rows]) for g, rows in generator_rows(y, generators).items()}
