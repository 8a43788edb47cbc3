"""Shortcut check: can the file facts alone tell real from fake?

If the format, the size or the JPEG quality of a file predicts its label, a detector trained on the
data can reach a high accuracy without looking at generation traces, and its explanations describe
the files (Grommelt et al., "Fake or JPEG? Revealing Common Biases in Generated Image Detection
Datasets", 2024: removing those biases from GenImage moved cross-generator accuracy by more than
11 points). This module measures, for each fact of ``pipeline.filefacts.FACT_COLUMNS`` alone and for
all of them together, how well it predicts the label:

* **cross-validated AUC on the training split** (stratified folds, grouped by source photo when the
  data has sources, seeded), the figure a shortcut flag rests on;
* **AUC on the held-out split** of a model fitted on the whole training split, to be shown next to
  the detector's own held-out AUC.

Models: a numeric fact gets a depth-3 decision tree (it can carve out "exactly 512 px wide" as well
as "wider than 1000"); a categorical fact a smoothed per-value fake rate fitted on the training folds
(a value never seen in training gets the prior, so a fact whose every value is unique predicts
nothing); all facts together a small histogram gradient-boosting model.

False alarms matter as much as misses: a fact that is the same for every image is reported as
constant, never scored; a split with fewer than ``min_per_class`` training images of a class is
reported as too small and flags nothing.
"""
from __future__ import annotations

from collections import Counter
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold
from sklearn.tree import DecisionTreeClassifier
from threadpoolctl import threadpool_limits

from .filefacts import FACT_COLUMNS, FactColumn, FileFacts
from .metrics import generator_rows

DEFAULT_THRESHOLD = 0.8
TRAIN, HELDOUT = "train", "heldout"
_SMOOTHING = 2.0  # prior pseudo-images per value of a categorical fact
_TOP_CATEGORIES = 50  # values kept per categorical fact in the all-facts model (others pooled)


# ---------------------------------------------------------------------------------------------
# Fact table
# ---------------------------------------------------------------------------------------------
def fact_table(facts: Sequence[FileFacts | Mapping[str, Any]],
               columns: Sequence[FactColumn] = FACT_COLUMNS) -> dict[str, np.ndarray]:
    """Column arrays from facts or their rows: numeric facts float (NaN where missing), categorical
    facts strings."""
    rows = [f.to_row() if isinstance(f, FileFacts) else f for f in facts]
    table = {}
    for col in columns:
        raw = [r.get(col.name, "") for r in rows]
        if col.kind == "numeric":
            table[col.name] = np.array([float(v) if v not in ("", None) else np.nan for v in raw], dtype=np.float64)
        elif col.boolean:  # 0/1 from to_row, "0"/"1" or "True"/"False" from a CSV
            table[col.name] = np.array(["1" if str(v).strip().lower() in ("1", "true") else "0" for v in raw],
                                       dtype=object)
        else:
            table[col.name] = np.array(["" if v is None else str(v) for v in raw], dtype=object)
    return table


# ---------------------------------------------------------------------------------------------
# Models: fit on some rows, score others
# ---------------------------------------------------------------------------------------------
def _target_encode(fit: np.ndarray, y_fit: np.ndarray, test: np.ndarray) -> np.ndarray:
    cats, inv = np.unique(np.concatenate([fit, test]), return_inverse=True)
    inv_fit, inv_test = inv[:len(fit)], inv[len(fit):]
    sums = np.bincount(inv_fit, weights=y_fit, minlength=len(cats))
    counts = np.bincount(inv_fit, minlength=len(cats))
    prior = y_fit.mean()
    return ((sums + _SMOOTHING * prior) / (counts + _SMOOTHING))[inv_test]


def _tree_scores(fit: np.ndarray, y_fit: np.ndarray, test: np.ndarray, seed: int) -> np.ndarray:
    tree = DecisionTreeClassifier(max_depth=3, min_samples_leaf=max(3, len(fit) // 100), random_state=seed)
    tree.fit(fit.reshape(-1, 1), y_fit)
    return tree.predict_proba(test.reshape(-1, 1))[:, 1]


def _codes(fit: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Integer codes of the most frequent values in ``fit``; other and unseen values share one code."""
    top = [v for v, _ in Counter(fit.tolist()).most_common(_TOP_CATEGORIES)]
    index = {v: i for i, v in enumerate(top)}
    other = len(top)
    return (np.array([index.get(v, other) for v in fit], dtype=np.float64),
            np.array([index.get(v, other) for v in test], dtype=np.float64))


def _all_facts_scores(table: dict, names: list[str], fit_rows: np.ndarray, y_fit: np.ndarray,
                      test_rows: np.ndarray, seed: int) -> np.ndarray:
    cols_fit, cols_test, categorical = [], [], []
    kinds = {c.name: c.kind for c in FACT_COLUMNS}
    for name in names:
        values = table[name]
        if kinds.get(name) == "numeric":
            cols_fit.append(values[fit_rows])
            cols_test.append(values[test_rows])
            categorical.append(False)
        else:
            a, b = _codes(values[fit_rows], values[test_rows])
            cols_fit.append(a)
            cols_test.append(b)
            categorical.append(True)
    # sklearn's default leaf size (20) cannot carve out a value held by 15 of 60 images
    model = HistGradientBoostingClassifier(max_iter=60, max_depth=3, learning_rate=0.1,
                                           min_samples_leaf=max(3, len(fit_rows) // 100),
                                           categorical_features=np.array(categorical), random_state=seed)
    with threadpool_limits(1, "openmp"):  # small fits: OpenMP barriers cost more than they save
        model.fit(np.column_stack(cols_fit), y_fit)
        return model.predict_proba(np.column_stack(cols_test))[:, 1]


def _scores(table: dict, name: str | None, names: list[str], fit_rows, y_fit, test_rows, seed) -> np.ndarray:
    if name is None:
        return _all_facts_scores(table, names, fit_rows, y_fit, test_rows, seed)
    kind = next(c.kind for c in FACT_COLUMNS if c.name == name)
    values = table[name]
    if kind == "numeric":
        return _tree_scores(values[fit_rows], y_fit, values[test_rows], seed)
    return _target_encode(values[fit_rows], y_fit, values[test_rows])


# ---------------------------------------------------------------------------------------------
# Words
# ---------------------------------------------------------------------------------------------
def _fmt(v: Any) -> str:
    if isinstance(v, float):
        if np.isnan(v):
            return "none"
        return f"{v:.0f}" if abs(v) >= 100 or v == int(v) else f"{v:.3g}"
    return str(v)


def _phrase(col: FactColumn, cls: str, value: str, share: float) -> str:
    one = share >= 0.9995
    who = f"every {cls}" if one else f"{share:.0%} of {cls}s"
    if value in ("", "none"):
        return f"{who} {'has' if one else 'have'} no {col.words}"
    if col.is_value:
        return f"{who} {'is' if one else 'are'} {value}"
    return f"{who} {'has' if one else 'have'} {col.words} {value}"


def describe(col: FactColumn, real: np.ndarray, fake: np.ndarray) -> str:
    """How the fact differs between the classes, in words ("every fake is PNG, every real is JPEG")."""
    if len(real) == 0 or len(fake) == 0:
        return ""
    if col.boolean:
        pr = float(np.mean(np.asarray(real) == "1"))
        pf = float(np.mean(np.asarray(fake) == "1"))
        hi, lo = max(pr, pf), min(pr, pf)
        if lo <= 0.02 and hi >= 0.1:
            return f"{col.words} only on {'real' if pr > pf else 'fake'} images ({hi:.0%} vs {lo:.0%})"
        return f"{col.words} on {pr:.0%} of reals vs {pf:.0%} of fakes"
    numeric = col.kind == "numeric"
    shown = {"real": [_fmt(float(v)) if numeric else str(v) for v in real],
             "fake": [_fmt(float(v)) if numeric else str(v) for v in fake]}
    counts = {c: Counter(v) for c, v in shown.items()}
    top = {c: counts[c].most_common(1)[0] for c in counts}
    share = {c: top[c][1] / len(shown[c]) for c in counts}
    primary = "fake" if share["fake"] >= share["real"] else "real"
    other = "real" if primary == "fake" else "fake"
    if numeric and share[primary] < 0.9:
        med = {c: _fmt(float(np.nanmedian(v))) if np.isfinite(v).any() else "none"
               for c, v in (("real", np.asarray(real, float)), ("fake", np.asarray(fake, float)))}
        return f"median {col.words}: fakes {med['fake']}, reals {med['real']}"
    value = top[primary][0]
    text = _phrase(col, primary, value, share[primary])
    if top[other][0] != value and share[other] >= 0.5:
        return f"{text}, {_phrase(col, other, top[other][0], share[other])}"
    return f"{text} ({counts[other][value] / len(shown[other]):.0%} of {other}s)"


def _histogram(col: FactColumn, values: np.ndarray, y: np.ndarray, bins: int = 10) -> dict:
    """Per-class counts for a small histogram of the fact (top values, or numeric bins)."""
    if col.kind == "numeric" and len(np.unique(values[np.isfinite(values)])) > bins:
        finite = np.isfinite(values)
        edges = np.histogram_bin_edges(values[finite], bins=bins)
        out = {"bins": [f"{_fmt(float(a))}-{_fmt(float(b))}" for a, b in zip(edges[:-1], edges[1:])],
               "real": np.histogram(values[finite & (y == 0)], edges)[0].tolist(),
               "fake": np.histogram(values[finite & (y == 1)], edges)[0].tolist()}
        if not finite.all():
            out["bins"].append("none")
            out["real"].append(int((~finite & (y == 0)).sum()))
            out["fake"].append(int((~finite & (y == 1)).sum()))
        return out
    shown = np.array([_fmt(float(v)) if col.kind == "numeric" else (str(v) or "none") for v in values], dtype=object)
    top = [v for v, _ in Counter(shown.tolist()).most_common(bins)]
    rest = ~np.isin(shown, top)
    out = {"bins": top, "real": [int(((shown == v) & (y == 0)).sum()) for v in top],
           "fake": [int(((shown == v) & (y == 1)).sum()) for v in top]}
    if rest.any():
        out["bins"].append("other")
        out["real"].append(int((rest & (y == 0)).sum()))
        out["fake"].append(int((rest & (y == 1)).sum()))
    return out


# ---------------------------------------------------------------------------------------------
# The check
# ---------------------------------------------------------------------------------------------
def _auc(y: np.ndarray, s: np.ndarray) -> float | None:
    return float(roc_auc_score(y, s)) if len(np.unique(y)) == 2 else None


def _round(x: float | None) -> float | None:
    return None if x is None or not np.isfinite(x) else round(float(x), 4)


def _check(table: dict, y: np.ndarray, splits: np.ndarray, groups: np.ndarray, *, threshold: float,
           min_per_class: int, folds: int, seed: int, max_train_rows: int, neutralised: set[str],
           neutralised_by: str) -> dict:
    train = np.flatnonzero(splits == TRAIN)
    held = np.flatnonzero(splits == HELDOUT)
    n_train = {c: int((y[train] == i).sum()) for i, c in enumerate(("real", "fake"))}
    n_held = {c: int((y[held] == i).sum()) for i, c in enumerate(("real", "fake"))}
    out: dict[str, Any] = {"threshold": threshold, "n_train": n_train, "n_heldout": n_held,
                           "facts": [], "all_facts": None, "flags": []}
    if min(n_train.values()) < min_per_class:
        out["status"] = "too few"
        out["reason"] = (f"too few training images to test for shortcuts ({n_train['real']} real, "
                         f"{n_train['fake']} fake; at least {min_per_class} of each needed)")
        return out
    out["status"] = "ok"

    rng = np.random.default_rng(seed)
    if len(train) > max_train_rows:  # a stratified sample keeps the fits fast; AUC needs no more
        keep = np.concatenate([rng.choice(train[y[train] == c], size=min(int((y[train] == c).sum()),
                               max(1, round(max_train_rows * (y[train] == c).mean()))), replace=False)
                               for c in (0, 1)])
        train = np.sort(keep)
    n_groups = {c: len(np.unique(groups[train][y[train] == c])) for c in (0, 1)}
    k = min(folds, *n_groups.values())
    if k < 2:
        out["status"] = "too few"
        out["reason"] = "too few source groups per class in the training split to cross-validate"
        return out
    splitter = (StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
                if len(np.unique(groups[train])) < len(train) else
                StratifiedKFold(n_splits=k, shuffle=True, random_state=seed))
    fold_rows = [(train[a], train[b]) for a, b in splitter.split(
        train, y[train], groups[train] if isinstance(splitter, StratifiedGroupKFold) else None)]
    scored_held = min(n_held.values()) >= 5
    all_rows = np.concatenate([train, held])

    def evaluate(name: str | None, names: list[str]) -> tuple[float | None, float | None]:
        aucs = [_auc(y[b], _scores(table, name, names, a, y[a], b, seed)) for a, b in fold_rows]
        aucs = [a for a in aucs if a is not None]
        cv = float(np.mean(aucs)) if aucs else None
        ho = _auc(y[held], _scores(table, name, names, train, y[train], held, seed)) if scored_held else None
        return cv, ho

    varying = []
    for col in FACT_COLUMNS:
        values = table[col.name]
        here = values[all_rows]
        distinct = np.unique(here[~np.isnan(here)] if col.kind == "numeric" else here)
        entry: dict[str, Any] = {"fact": col.name, "words": col.words, "kind": col.kind, "group": col.group,
                                 "n_values": int(len(distinct) + (col.kind == "numeric" and np.isnan(here).any())),
                                 "cv_auc": None, "heldout_auc": None, "flagged": False}
        real, fake = here[y[all_rows] == 0], here[y[all_rows] == 1]
        if entry["n_values"] <= 1:
            entry["status"] = "constant"
            entry["reason"] = f"{col.words}: the same for every image ({_fmt(here[0]) if len(here) else ''})"
        else:
            varying.append(col.name)
            cv, ho = evaluate(col.name, [])
            entry.update(cv_auc=_round(cv), heldout_auc=_round(ho), status="ok")
            detail = describe(col, real, fake)
            if col.group in neutralised:
                entry["status"] = "neutralised"
                entry["reason"] = f"{col.words}: made the same for every image by {neutralised_by}; {detail}"
            elif cv is not None and cv >= threshold:
                entry["flagged"] = True
                entry["reason"] = f"{col.words} alone separates real from fake: AUC {cv:.2f}; {detail}"
                entry["histogram"] = _histogram(col, values[all_rows], y[all_rows])
            else:
                entry["reason"] = f"{col.words}: AUC {cv:.2f}; {detail}" if cv is not None else detail
        out["facts"].append(entry)

    usable = [n for n in varying if next(c.group for c in FACT_COLUMNS if c.name == n) not in neutralised]
    if usable:
        cv, ho = evaluate(None, usable)
        top = sorted((e for e in out["facts"] if e["fact"] in usable and e["cv_auc"] is not None),
                     key=lambda e: -e["cv_auc"])[:3]
        flagged = cv is not None and cv >= threshold
        out["all_facts"] = {"cv_auc": _round(cv), "heldout_auc": _round(ho), "flagged": flagged,
                            "facts": usable,
                            "reason": (f"all file facts together {'separate' if flagged else 'predict'} real "
                                       f"from fake{'' if flagged else ' weakly'}: AUC {cv:.2f}"
                                       f" (strongest alone: {', '.join(e['words'] for e in top)})")
                            if cv is not None else ""}
    else:
        out["all_facts"] = {"cv_auc": None, "heldout_auc": None, "flagged": False, "facts": [],
                            "reason": "no file fact varies between images"}
    out["flags"] = [{"fact": e["fact"], "group": e["group"], "cv_auc": e["cv_auc"],
                     "heldout_auc": e["heldout_auc"], "reason": e["reason"]}
                    for e in sorted(out["facts"], key=lambda e: -(e["cv_auc"] or 0)) if e["flagged"]]
    if out["all_facts"]["flagged"]:
        out["flags"].append({"fact": "all", "group": "all", "cv_auc": out["all_facts"]["cv_auc"],
                             "heldout_auc": out["all_facts"]["heldout_auc"], "reason": out["all_facts"]["reason"]})
    return out


def shortcut_check(facts: Sequence[FileFacts | Mapping[str, Any]], labels: Sequence[int],
                   splits: Sequence[str], generators: Sequence[str] | None = None,
                   groups: Sequence[str] | None = None, *, threshold: float = DEFAULT_THRESHOLD,
                   min_per_class: int = 20, folds: int = 5, seed: int = 0, max_train_rows: int = 20_000,
                   neutralised: Iterable[str] = (), neutralised_by: str = "controlled re-encoding") -> dict:
    """How well each file fact, and all of them together, predict the label.

    Parameters
    ----------
    facts : one :class:`FileFacts` (or its ``to_row()`` dict, e.g. read back from CSV) per image.
    labels : 0 real / 1 fake per image.
    splits : ``"train"`` / ``"heldout"`` per image (other values are left out).
    generators : generator per image; each generator's fakes are also checked against the reals
        (``pipeline.metrics.generator_rows``).
    groups : source per image (crops of one photo); folds never split a group. "" = its own group.
    threshold : a cross-validated AUC at or above it flags the fact as a shortcut risk.
    min_per_class : fewer training images of a class than this: nothing is scored or flagged.
    folds, seed : cross-validation folds and their seed (the same seed gives the same result).
    max_train_rows : training rows used for the fits (a stratified sample beyond that).
    neutralised : fact groups (``FactColumn.group``, e.g. "format", "size", "compression") that
        the encoder cannot see because every image was re-encoded alike; reported, never flagged.

    Returns
    -------
    dict (JSON-able)
        ``status`` ("ok" | "too few"), ``threshold``, ``n_train`` / ``n_heldout`` ({"real", "fake"}),
        ``facts``: one entry per fact {``fact``, ``words``, ``kind``, ``group``, ``n_values``,
        ``status`` ("ok" | "constant" | "neutralised"), ``cv_auc``, ``heldout_auc`` (None when not
        scored), ``flagged``, ``reason``, and for flagged facts ``histogram`` {``bins``, ``real``,
        ``fake``}}; ``all_facts`` {``cv_auc``, ``heldout_auc``, ``flagged``, ``facts``, ``reason``};
        ``flags``: the flagged facts (and "all" when the combined model is flagged), strongest first,
        each {``fact``, ``group``, ``cv_auc``, ``heldout_auc``, ``reason``}; ``per_generator``:
        {generator: the same structure without ``per_generator``}.
    """
    y = np.asarray(labels, dtype=int)
    splits_arr = np.asarray(splits, dtype=object)
    if not (len(facts) == len(y) == len(splits_arr)):
        raise ValueError(f"facts ({len(facts)}), labels ({len(y)}) and splits ({len(splits_arr)}) "
                         "must have one entry per image")
    table = fact_table(facts)
    grp = np.array([g if g else f"#row{i}" for i, g in enumerate(groups)] if groups is not None
                   else [f"#row{i}" for i in range(len(y))], dtype=object)
    kwargs = dict(threshold=threshold, min_per_class=min_per_class, folds=folds, seed=seed,
                  max_train_rows=max_train_rows, neutralised=set(neutralised), neutralised_by=neutralised_by)
    result = _check(table, y, splits_arr, grp, **kwargs)
    result["per_generator"] = {}
    if generators is not None:
        for g, rows in generator_rows(y, list(generators)).items():
            idx = np.flatnonzero(rows)
            if len(idx) == len(y):  # the only generator: its check is the overall one
                result["per_generator"][g] = {k: v for k, v in result.items() if k != "per_generator"}
                continue
            sub = {k: v[idx] for k, v in table.items()}
            result["per_generator"][g] = _check(sub, y[idx], splits_arr[idx], grp[idx], **kwargs)
    return result
