"""Detection metrics on the held-out split: accuracy, average precision and ROC AUC (fake = positive),
overall and per generator. A generator's figures are computed on its fakes together with the real
images of the same generator folder (CNNDetection layout) or, where reals carry no generator, all
held-out reals, as in the usual per-generator benchmark tables.

Each figure comes with a 95% bootstrap interval (``ci95``): the held-out images are resampled with
replacement, reals and fakes separately so that every resample keeps the class counts (a stratified
percentile bootstrap, Efron & Tibshirani 1993), 1,000 times with a fixed seed. A difference that
stays inside the interval is no evidence of an effect; the checks warn only outside it."""
from __future__ import annotations

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score


N_BOOT = 1000
CI_SEED = 0


def binary_metrics(y: np.ndarray, prob: np.ndarray, *, n_boot: int = N_BOOT) -> dict:
    """Accuracy (threshold 0.5), AP and AUC of ``prob`` (p(fake)) against ``y`` (1 = fake), the
    class counts and per-class accuracy, and ``ci95``: their 95% bootstrap intervals
    (``n_boot`` = 0: none)."""
    y = np.asarray(y).astype(int)
    prob = np.asarray(prob, dtype=np.float64)
    out = {"n": int(len(y)), "n_real": int((y == 0).sum()), "n_fake": int((y == 1).sum()),
           "accuracy": float(((prob > 0.5).astype(int) == y).mean()) if len(y) else float("nan")}
    both = len(np.unique(y)) == 2
    out["ap"] = float(average_precision_score(y, prob)) if both else float("nan")
    out["auc"] = float(roc_auc_score(y, prob)) if both else float("nan")
    out["real_accuracy"] = float((prob[y == 0] <= 0.5).mean()) if (y == 0).any() else float("nan")
    out["fake_accuracy"] = float((prob[y == 1] > 0.5).mean()) if (y == 1).any() else float("nan")
    if n_boot and len(y):
        out["ci95"] = bootstrap_intervals(y, prob, n_boot=n_boot)
    return out


def bootstrap_intervals(y: np.ndarray, prob: np.ndarray, n_boot: int = N_BOOT,
                        seed: int = CI_SEED, level: float = 0.95) -> dict:
    """95% percentile intervals ``{"accuracy": [lo, hi], "ap": [...], "auc": [...], "n_boot": n}``
    of a stratified bootstrap (reals and fakes resampled separately). AP and AUC are None where a
    class is missing. One sort per resample, vectorised over the resamples."""
    y = np.asarray(y).astype(int)
    prob = np.asarray(prob, dtype=np.float64)
    rng = np.random.default_rng(seed)
    real, fake = np.flatnonzero(y == 0), np.flatnonzero(y == 1)
    take = np.concatenate([rng.choice(real, (n_boot, len(real))) if len(real) else np.empty((n_boot, 0), int),
                           rng.choice(fake, (n_boot, len(fake))) if len(fake) else np.empty((n_boot, 0), int)],
                          axis=1)
    p, t = prob[take], y[take]  # (n_boot, n), labels in the same columns in every resample
    q = [(1 - level) / 2 * 100, (1 + level) / 2 * 100]

    def interval(values):
        return [float(v) for v in np.percentile(values, q)]

    out = {"accuracy": interval(((p > 0.5) == (t == 1)).mean(axis=1)), "ap": None, "auc": None,
           "n_boot": int(n_boot)}
    if len(real) and len(fake):
        auc, ap = _ranked_rows(p, t[0])
        out["auc"], out["ap"] = interval(auc), interval(ap)
    return out


def _ranked_rows(p: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ROC AUC and average precision of each row of scores ``p`` against one label vector ``t``,
    from one sort per row. Tied scores count as ``roc_auc_score`` and ``average_precision_score``
    count them: a real tied with a fake counts half, and a run of ties is one threshold."""
    n = p.shape[1]
    order = np.argsort(-p, axis=1, kind="stable")
    s = np.take_along_axis(p, order, axis=1)
    hit = t[order]
    tp = np.cumsum(hit, axis=1)
    fp = np.arange(1, n + 1) - tp
    # first and last position of each run of tied scores
    new = np.ones_like(s, dtype=bool)
    new[:, 1:] = s[:, 1:] != s[:, :-1]
    start = np.maximum.accumulate(np.where(new, np.arange(n), 0), axis=1)
    last = np.ones_like(s, dtype=bool)
    last[:, :-1] = new[:, 1:]
    end = np.minimum.accumulate(np.where(last, np.arange(n), n)[:, ::-1], axis=1)[:, ::-1]
    n1 = int(t.sum())
    n0 = n - n1
    fp_end = np.take_along_axis(fp, end, axis=1)
    fp_before = np.where(start > 0, np.take_along_axis(fp, np.maximum(start - 1, 0), axis=1), 0)
    lower = n0 - fp_end + 0.5 * (fp_end - fp_before)  # reals below a fake's score, ties half
    auc = (lower * hit).sum(axis=1) / (n0 * n1)
    precision = np.take_along_axis(tp, end, axis=1) / (end + 1)
    ap = (precision * hit).sum(axis=1) / n1
    return auc, ap


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

def with_interval(m: dict, key: str, digits: int = 3) -> str:
    """``"0.947 [0.921, 0.968]"``: a figure of ``m`` with its 95% interval when it has one."""
    value = m.get(key)
    text = "n/a" if value is None or value != value else f"{value:.{digits}f}"
    ci = (m.get("ci95") or {}).get(key)
    return f"{text} [{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]" if ci else text
