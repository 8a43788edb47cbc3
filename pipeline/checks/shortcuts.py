"""Shortcut check: can the file facts alone tell real from fake?

If the format, the size or the JPEG quality of a file predicts its label, a detector trained on the
data can reach a high accuracy without looking at generation traces, and its explanations describe
the files (Grommelt et al., "Fake or JPEG? Revealing Common Biases in Generated Image Detection
Datasets", 2024: removing those biases from GenImage moved cross-generator accuracy by more than
11 points). This module measures, for each fact of ``pipeline.data.filefacts.FACT_COLUMNS`` alone and for
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
from scipy.stats import rankdata
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold
from sklearn.tree import DecisionTreeClassifier
from threadpoolctl import threadpool_limits

from pipeline.data.filefacts import FACT_COLUMNS, FactColumn, FileFacts
from pipeline.model.metrics import generator_rows

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
    facts strings (booleans "0" / "1")."""
    def values(name: str) -> list:
        return [getattr(f, name) if isinstance(f, FileFacts) else f.get(name, "") for f in facts]

    table = {}
    for col in columns:
        raw = values(col.name)
        if col.kind == "numeric":
            table[col.name] = np.array([float(v) if v not in ("", None) else np.nan for v in raw], dtype=np.float64)
        elif col.boolean:  # True/False or 0/1 from facts, "0"/"1" or "True"/"False" from a CSV
            table[col.name] = np.array(["1" if v is True or str(v).strip().lower() in ("1", "true") else "0"
                                        for v in raw], dtype=object)
        else:
            table[col.name] = np.array(["" if v is None else str(v) for v in raw], dtype=object)
    return table


def _factorize(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(integer code per row, the distinct values in first-seen order)."""
    index: dict = {}
    codes = np.fromiter((index.setdefault(v, len(index)) for v in values.tolist()), dtype=np.int64, count=len(values))
    return codes, np.array(list(index), dtype=object)


# ---------------------------------------------------------------------------------------------
# Models: fit on some rows, score others (categorical facts arrive as integer codes)
# ---------------------------------------------------------------------------------------------
def _target_encode(fit: np.ndarray, y_fit: np.ndarray, test: np.ndarray) -> np.ndarray:
    n = int(max(fit.max(initial=0), test.max(initial=0))) + 1
    sums = np.bincount(fit, weights=y_fit, minlength=n)
    counts = np.bincount(fit, minlength=n)
    prior = y_fit.mean()
    return ((sums + _SMOOTHING * prior) / (counts + _SMOOTHING))[test]


def _tree_scores(fit: np.ndarray, y_fit: np.ndarray, test: np.ndarray, seed: int) -> np.ndarray:
    tree = DecisionTreeClassifier(max_depth=3, min_samples_leaf=max(3, len(fit) // 100), random_state=seed)
    tree.fit(fit.reshape(-1, 1), y_fit)
    return tree.predict_proba(test.reshape(-1, 1))[:, 1]


def _codes(fit: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Codes 0..K-1 of the K most frequent values in ``fit``; other and unseen values share code K."""
    n = int(max(fit.max(initial=0), test.max(initial=0))) + 1
    counts = np.bincount(fit, minlength=n)
    top = np.argsort(-counts, kind="stable")[:_TOP_CATEGORIES]
    top = top[counts[top] > 0]
    lookup = np.full(n, len(top), dtype=np.float64)
    lookup[top] = np.arange(len(top))
    return lookup[fit], lookup[test]


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


def _top_value(values: np.ndarray) -> tuple[Any, float]:
    """The most frequent value and its share (numeric NaNs count as one value)."""
    if values.dtype == object:
        value, count = Counter(values.tolist()).most_common(1)[0]
        return value, count / len(values)
    uniq, counts = np.unique(values, return_counts=True)
    i = int(np.argmax(counts))
    return float(uniq[i]), counts[i] / len(values)


def _share(values: np.ndarray, value: Any) -> float:
    if isinstance(value, float) and np.isnan(value):
        return float(np.isnan(values).mean())
    return float((values == value).mean())


def describe(col: FactColumn, real: np.ndarray, fake: np.ndarray) -> str:
    """How the fact differs between the classes, in words ("every fake is PNG, every real is JPEG").

    ``real`` / ``fake``: the fact's values for each class (floats for numeric facts, strings else).
    """
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
    vals = {"real": np.asarray(real, dtype=np.float64 if numeric else object),
            "fake": np.asarray(fake, dtype=np.float64 if numeric else object)}
    top = {c: _top_value(v) for c, v in vals.items()}
    primary = "fake" if top["fake"][1] >= top["real"][1] else "real"
    other = "real" if primary == "fake" else "fake"
    show = _fmt if numeric else str
    if numeric and top[primary][1] < 0.9:
        med = {c: _fmt(float(np.nanmedian(v))) if np.isfinite(v).any() else "none" for c, v in vals.items()}
        return f"median {col.words}: fakes {med['fake']}, reals {med['real']}"
    value, share = top[primary]
    text = _phrase(col, primary, show(value), share)
    other_value, other_share = top[other]
    if show(other_value) != show(value) and other_share >= 0.5:
        return f"{text}, {_phrase(col, other, show(other_value), other_share)}"
    return f"{text} ({_share(vals[other], value):.0%} of {other}s)"


def _histogram(col: FactColumn, values: np.ndarray, y: np.ndarray, bins: int = 10) -> dict:
    """Per-class counts for a small histogram of the fact (top values, or numeric bins)."""
    numeric = col.kind == "numeric"
    if numeric and len(np.unique(values[np.isfinite(values)])) > bins:
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
    if numeric:
        uniq, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
        names = [_fmt(float(u)) for u in uniq]
    else:
        inverse, uniq = _factorize(values)
        counts = np.bincount(inverse)
        names = [str(u) or "none" for u in uniq]
    order = np.argsort(-counts, kind="stable")[:bins]
    out = {"bins": [names[i] for i in order],
           "real": [int(((inverse == i) & (y == 0)).sum()) for i in order],
           "fake": [int(((inverse == i) & (y == 1)).sum()) for i in order]}
    rest = ~np.isin(inverse, order)
    if rest.any():
        out["bins"].append("other")
        out["real"].append(int((rest & (y == 0)).sum()))
        out["fake"].append(int((rest & (y == 1)).sum()))
    return out


# ---------------------------------------------------------------------------------------------
# The check
# ---------------------------------------------------------------------------------------------
def _auc(y: np.ndarray, s: np.ndarray) -> float | None:
    """ROC AUC (fake = positive) from mid-ranks: sklearn's result, without its per-call overhead."""
    pos = y == 1
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if not n_pos or not n_neg:
        return None
    ranks = rankdata(s)
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _round(x: float | None) -> float | None:
    return None if x is None or not np.isfinite(x) else round(float(x), 4)


def _check(table: dict, categories: dict, y: np.ndarray, splits: np.ndarray, groups: np.ndarray, *,
           threshold: float, min_per_class: int, folds: int, seed: int, max_train_rows: int,
           neutralised: set[str], neutralised_by: str) -> dict:
    """One shortcut check on rows; ``table``: numeric facts as floats, categorical ones as codes
    into ``categories[name]``."""
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
        here = table[col.name][all_rows]
        if col.kind == "numeric":
            n_values = len(np.unique(here[~np.isnan(here)])) + int(np.isnan(here).any())
            shown = here
        else:
            n_values = len(np.unique(here))
            shown = categories[col.name][here]
        entry: dict[str, Any] = {"fact": col.name, "words": col.words, "kind": col.kind, "group": col.group,
                                 "n_values": n_values, "cv_auc": None, "heldout_auc": None, "flagged": False}
        real, fake = shown[y[all_rows] == 0], shown[y[all_rows] == 1]
        if n_values <= 1:
            entry["status"] = "constant"
            entry["reason"] = f"{col.words}: the same for every image ({_fmt(shown[0]) if len(shown) else ''})"
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
                entry["histogram"] = _histogram(col, shown, y[all_rows])
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
                   min_per_class: int = 20, folds: int = 5, seed: int = 0, max_train_rows: int = 10_000,
                   neutralised: Iterable[str] = (), neutralised_by: str = "controlled re-encoding") -> dict:
    """How well each file fact, and all of them together, predict the label.

    Parameters
    ----------
    facts : one :class:`FileFacts` (or its ``to_row()`` dict, e.g. read back from CSV) per image.
    labels : 0 real / 1 fake per image.
    splits : ``"train"`` / ``"heldout"`` per image (other values are left out).
    generators : generator per image; each generator's fakes are also checked against the reals
        (``pipeline.model.metrics.generator_rows``).
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
    categories = {}
    for col in FACT_COLUMNS:  # categorical facts as integer codes: every model and count runs on ints
        if col.kind != "numeric":
            table[col.name], categories[col.name] = _factorize(table[col.name])
    grp = np.array([g if g else f"#row{i}" for i, g in enumerate(groups)] if groups is not None
                   else [f"#row{i}" for i in range(len(y))], dtype=object)
    kwargs = dict(threshold=threshold, min_per_class=min_per_class, folds=folds, seed=seed,
                  max_train_rows=max_train_rows, neutralised=set(neutralised), neutralised_by=neutralised_by)
    result = _check(table, categories, y, splits_arr, grp, **kwargs)
    result["per_generator"] = {}
    if generators is not None:
        for g, rows in generator_rows(y, list(generators)).items():
            idx = np.flatnonzero(rows)
            if len(idx) == len(y):  # the only generator: its check is the overall one
                result["per_generator"][g] = {k: v for k, v in result.items() if k != "per_generator"}
                continue
            sub = {k: v[idx] for k, v in table.items()}
            result["per_generator"][g] = _check(sub, categories, y[idx], splits_arr[idx], grp[idx], **kwargs)
    return result
