"""Forensic validity of a run: is the detector's answer about the images or about the files?

The checks every run makes before anything is explained (method.md section 8), stored in
``meta.json`` under ``checks`` (see ``pipeline.store.run_store``):

* **duplicates and leakage** (``pipeline.checks.duplicates``): the same bytes under both labels are left
  out of training and metrics (``checks.exclude_conflicts``) and listed; the same bytes on both
  sides of the split are kept on the training side; held-out images that are near-duplicates of a
  training image (cosine of the vision-only features, ``checks.near_duplicate_cos``) are counted
  and the held-out metrics are reported with and without them;
* **shortcuts** (``pipeline.checks.shortcuts``): how well each file fact (``pipeline.data.filefacts``) alone,
  and all facts together, predict the label, next to the head's own AUC; a fact at or above
  ``checks.shortcut_auc`` is flagged with the reason in words;
* **the bias probe** (``pipeline.checks.bias_probe``, on demand: ``python -m pipeline probe RUN`` or the
  app's data-checks panel): class-neutral re-encodings of held-out images and how p(fake) moves for
  each class, kept in ``<run>/checks/bias-probe.json`` (a derived result: :func:`probe_result`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from pipeline.config import Config
from pipeline.store.sealed import read_sealed_json
from pipeline.data.splits import HELDOUT
from pipeline.store.run_store import RunStore

# The checks' own modules (torch, scikit-learn) are imported where they run: the app's web
# process reads the results (flagged, read_probe, the report lines) and must not load them.

PROBE_VERSION = 1
Progress = Callable[[int, int], None]


def leakage(keys: Sequence[str], labels: np.ndarray, splits: np.ndarray, paths: Sequence[str],
            exclude_conflicts: bool) -> tuple[np.ndarray, np.ndarray, dict]:
    """(new splits, keep mask, report) of the exact duplicates among a run's images."""
    from pipeline.checks.duplicates import exact_duplicates

    found = exact_duplicates(keys, labels, splits, exclude_conflicts=exclude_conflicts)
    new_splits, keep = found.apply(splits)
    return np.asarray(new_splits), keep, found.to_dict(paths=list(paths))


def shortcuts(facts: Sequence, labels: np.ndarray, splits: np.ndarray, generators: Sequence[str],
              sources: Sequence[str], cfg: Config) -> dict:
    """The shortcut check of the run's file facts (re-encoded fact groups reported, not flagged)."""
    from pipeline.checks.shortcuts import shortcut_check

    spec = cfg.data.reencode_spec
    return shortcut_check(facts, labels, splits, generators, groups=sources,
                          threshold=cfg.checks.shortcut_auc, seed=cfg.head.seed,
                          neutralised=spec.neutralised_groups() if spec else (),
                          neutralised_by=f"controlled re-encoding ({spec.words})" if spec else "")


def near_duplicate_report(features: np.ndarray, splits: np.ndarray, labels: np.ndarray, prob: np.ndarray,
                          paths: Sequence[str], cfg: Config, heldout_metrics: dict | None = None) -> dict:
    """Held-out images with a near-duplicate in training, and the held-out metrics without them
    (``heldout_metrics``: the head's metrics of every held-out image, when already computed).

    Cosines are taken after removing the training images' mean feature: every image shares a large
    common component, which would make unrelated images look alike."""
    from pipeline.checks.duplicates import metrics_with_and_without, near_duplicates

    centred = features - features[splits != HELDOUT].mean(axis=0)
    near = near_duplicates(centred, splits, threshold=cfg.checks.near_duplicate_cos)
    return {**near.to_dict(labels=labels, paths=list(paths)), "space": "vision-only features, centred",
            "metrics": metrics_with_and_without(labels, prob, splits == HELDOUT, near.mask, heldout_metrics)}


def flagged(checks: dict | None) -> list[str]:
    """One line per thing an analyst must know before reading the explanations."""
    checks = checks or {}
    out = [f["reason"] for f in (checks.get("shortcuts") or {}).get("flags", [])]
    dup = checks.get("duplicates") or {}
    if dup.get("n_conflicts"):
        out.append(f"{dup['n_conflicts']} file(s) appear under both labels ({dup.get('n_excluded', 0)} "
                   f"copies left out of training and metrics)")
    if dup.get("n_cross_split"):
        out.append(f"{dup['n_cross_split']} file(s) were on both sides of the split "
                   f"({dup.get('n_moved_to_train', 0)} held-out copies moved to training)")
    near = checks.get("near_duplicates") or {}
    if near.get("n_heldout_with_near_duplicate") and near_duplicate_effect(near) is not False:
        out.append(near_duplicate_words(near))
    for name in (checks.get("bias_probe") or {}).get("bias", []):
        out.append(f"bias under {name}: see the bias probe")
    return out


def near_duplicate_effect(near: dict) -> bool | None:
    """Whether leaving out the held-out near-duplicates moves the held-out AUC outside its 95%
    bootstrap interval (True), inside it (False: no evidence of an effect, so no warning), or
    None when it cannot be said (no interval: a run made before the intervals; no AUC)."""
    m = near.get("metrics") or {}
    b = (m.get("without_near_duplicates") or {}).get("auc")
    ci = ((m.get("all") or {}).get("ci95") or {}).get("auc")
    if b is None or b != b or not ci:
        return None
    return not ci[0] <= b <= ci[1]


def near_duplicate_words(near: dict) -> str:
    m = near.get("metrics") or {}
    a, b = (m.get("all") or {}).get("auc"), (m.get("without_near_duplicates") or {}).get("auc")
    ci = ((m.get("all") or {}).get("ci95") or {}).get("auc")
    change = ""
    if near.get("n_heldout_with_near_duplicate") and a is not None and b is not None and a == a and b == b:
        change = f"; held-out AUC {a:.3f} with them, {b:.3f} without"
        if ci:
            change += (f" ({'outside' if near_duplicate_effect(near) else 'inside'} the 95% interval "
                       f"[{ci[0]:.3f}, {ci[1]:.3f}])")
    return (f"{near['n_heldout_with_near_duplicate']} held-out image(s) are near-duplicates of "
            f"training images (cosine >= {near.get('threshold')}){change}")


# -- the bias probe of a run -----------------------------------------------------------------------

PROBE_FILE = "checks/bias-probe.json"


def probe_path(run_dir: str | Path) -> Path:
    return Path(run_dir) / PROBE_FILE


def read_probe(run_dir: str | Path) -> dict | None:
    data = read_sealed_json(probe_path(run_dir))
    return data if isinstance(data, dict) and data.get("version") == PROBE_VERSION else None


def probe_sample(records: list[dict], n: int, seed: int = 0) -> list[int]:
    """Up to ``n`` held-out images, half real and half fake where there are enough (seeded)."""
    from pipeline.data.as_run import balanced_sample

    held = [i for i, r in enumerate(records) if r["split"] == HELDOUT]
    return balanced_sample([r["label"] for r in records], n, seed, among=held)


def probe_result(run_dir: str | Path, n_images: int | None = None):
    """The bias probe of a run as a derived result (:class:`pipeline.store.derived.Derived`):
    ``<run>/checks/bias-probe.json``, keyed by the run's models, the sampled held-out images
    (``inputs["indices"]``) and the run's re-encoding."""
    from pipeline.store.derived import Derived

    store = RunStore(run_dir)
    cfg = store.config()
    indices = probe_sample(store.read_records(), int(n_images or cfg.checks.bias_images), seed=cfg.head.seed)
    inputs = {"v": PROBE_VERSION, "indices": indices, "reencode": cfg.data.reencode}
    extra = [t.name for t in flagged_fact_transforms(run_dir)]
    if extra:  # only then: the kept probes of runs that flag nothing stay valid
        inputs["transforms"] = extra
    return Derived(run_dir, PROBE_FILE, inputs)


def flagged_fact_transforms(run_dir: str | Path) -> tuple:
    """The probe's transformations that equalise the run's flagged file facts (both classes to one
    size when the size is flagged...: ``pipeline.checks.confound``), added to the default ones."""
    from pipeline.checks.confound import equalising_transforms, run_fix

    try:
        return equalising_transforms(run_fix(run_dir))
    except ValueError:  # e.g. a run without facts.csv: the default transformations only
        return ()


def probe_transforms(run_dir: str | Path) -> tuple:
    """Every transformation the bias probe of a run applies: the defaults, then the equalising ones."""
    from pipeline.checks.bias_probe import DEFAULT_TRANSFORMS

    return tuple(DEFAULT_TRANSFORMS) + flagged_fact_transforms(run_dir)


def run_bias_probe(run_dir: str | Path, n_images: int | None = None, progress: Progress | None = None,
                   models=None, should_cancel: Callable[[], bool] | None = None) -> dict:
    """The bias probe of a run's detector on its held-out images (kept with the run, computed
    once across processes: :func:`probe_result`).

    Each sampled image is loaded as the run saw it (:func:`pipeline.data.as_run.load_as_run`: with
    the run's controlled re-encoding, if any), transformed class-neutrally (:func:`probe_transforms`:
    the default transformations, and those that equalise a flagged file fact, e.g. both classes to
    one size when the size is flagged) and scored by the run's own encoder, projection and head.
    """
    result = probe_result(run_dir, n_images)

    def compute(progress: Progress | None) -> dict:
        from pipeline.checks.bias_probe import bias_probe
        from pipeline.data.as_run import load_as_run
        from pipeline.data.scan import BadImageError, PathRefused
        from pipeline.model.run_models import load_run_models

        store = RunStore(run_dir)
        cfg = store.config()
        records = store.read_records()
        indices = result.inputs["indices"]
        m = models or load_run_models(run_dir)

        def load(i: int):
            try:
                path = store.image_path(i)
            except PathRefused as e:
                raise BadImageError(records[i]["path"], str(e)) from e
            return load_as_run(path, cfg)

        def score(images):
            from pipeline.model.head import sigmoid  # torch: only where the probe computes

            return sigmoid(m.score_images(images)[1])

        with m.lock:
            probe = bias_probe(load, indices, [records[i]["label"] for i in indices], score,
                               transforms=probe_transforms(run_dir), progress=progress)
        return {**probe, "version": PROBE_VERSION, "indices": indices}

    return result.get(compute, progress, should_cancel)


# -- in words, for `pipeline info` and `pipeline compare` -------------------------------------------

def _auc(x) -> str:
    return "–" if x is None or x != x else f"{x:.3f}"


def report_lines(meta: dict, probe: dict | None = None) -> list[str]:
    """The data checks of a run as text lines (``pipeline info``)."""
    checks = meta.get("checks")
    if checks is None:
        return ["data checks: none (a run made before they were part of every run)"]
    lines = []
    warnings = flagged({**checks, "bias_probe": probe or {}})
    lines.append("data checks: " + ("WARNING, the answer may be about the files, not the images:"
                                    if warnings else "nothing flagged"))
    lines += [f"  ! {w}" for w in warnings]
    sc = checks.get("shortcuts") or {}
    if sc.get("status") == "too few":
        lines.append(f"  shortcut check: not scored ({sc.get('reason')})")
    elif sc:
        head_auc = ((meta.get("metrics") or {}).get("head") or {}).get("auc")
        scored = sorted((f for f in sc.get("facts", []) if f.get("cv_auc") is not None),
                        key=lambda f: -f["cv_auc"])
        allf = sc.get("all_facts") or {}
        lines.append(f"  file facts predicting the label (AUC, cross-validated on train / held-out; the head's "
                     f"held-out AUC is {_auc(head_auc)}): all facts together {_auc(allf.get('cv_auc'))} / "
                     f"{_auc(allf.get('heldout_auc'))}")
        for f in scored[:5]:
            lines.append(f"    {f['fact']:<18} {_auc(f['cv_auc'])} / {_auc(f['heldout_auc'])}"
                         f"{'  FLAGGED' if f.get('flagged') else ''}")
        for g, sub in (sc.get("per_generator") or {}).items():
            for f in sub.get("flags", []):
                lines.append(f"    generator {g}: {f['reason']}")
    dup = checks.get("duplicates") or {}
    if dup:
        lines.append(f"  exact duplicates: {dup.get('n_groups', 0)} group(s); {dup.get('n_conflicts', 0)} under "
                     f"both labels; {dup.get('n_cross_split', 0)} across the split")
        lines += duplicate_file_lines(dup)
    near = checks.get("near_duplicates") or {}
    if near:
        effect = near_duplicate_effect(near)
        lines.append(f"  near-duplicates: {near_duplicate_words({**near, 'n_heldout_with_near_duplicate': near.get('n_heldout_with_near_duplicate', 0)})}"
                     + ("; no effect beyond chance, not a warning" if effect is False and
                        near.get("n_heldout_with_near_duplicate") else ""))
    lines += probe_lines(probe)
    return lines


def duplicate_file_lines(dup: dict, limit: int = 10) -> list[str]:
    """The files behind the exact-duplicate counts, by name: each file under both labels (its
    copies and their labels) and each file on both sides of the split."""
    words = {0: "real", 1: "fake"}
    lines = []
    for c in (dup.get("conflicts") or [])[:limit]:
        copies = ", ".join(f"{f.get('path', 'row ' + str(f['row']))} ({words.get(int(v), v)})"
                           for f, v in zip(c.get("files", []), c.get("labels", [])))
        lines.append(f"    one file under both labels: {copies}")
    for c in (dup.get("cross_split") or [])[:limit]:
        train = ", ".join(f.get("path", f"row {f['row']}") for f in c.get("train", []))
        held = ", ".join(f.get("path", f"row {f['row']}") for f in c.get("heldout", []))
        lines.append(f"    on both sides of the split: {held} (held-out) = {train} (train)")
    shown = min(len(dup.get("conflicts") or []), limit) + min(len(dup.get("cross_split") or []), limit)
    total = int(dup.get("n_conflicts", 0)) + int(dup.get("n_cross_split", 0))
    if total > shown:
        lines.append(f"    ... and {total - shown} more (meta.json -> checks.duplicates)")
    return lines


def probe_lines(probe: dict | None) -> list[str]:
    """The bias probe as a table: per transformation and class, mean shift of p(fake) and flips."""
    if not probe:
        return ["  bias probe: not run yet (python -m pipeline probe RUN)"]
    lines = [f"  bias probe on {probe['n']} held-out images ({probe['n_real']} real, {probe['n_fake']} "
             f"fake) in {probe.get('seconds', 0):.0f} s: mean shift of p(fake) and decisions flipped",
             f"    {'transformation':<34} {'real: shift':>11} {'flips':>6}  {'fake: shift':>11} {'flips':>6}  verdict"]
    for t in probe.get("transforms", []):
        r, f = t.get("real") or {}, t.get("fake") or {}

        def cols(c):
            return (f"{c['mean_shift']:+11.3f} {c['flip_fraction']:6.0%}" if c.get("n") else f"{'–':>11} {'–':>6}")

        lines.append(f"    {t['words'][:34]:<34} {cols(r)}  {cols(f)}  {t['verdict']}")
    if probe.get("bias"):
        lines.append(f"    bias (one class moves towards the other): {', '.join(probe['bias'])}")
    if probe.get("slight"):
        lines.append(f"    slight (the same, by less than {probe.get('min_effect', 0.1):.2f}; not a warning): "
                     f"{', '.join(probe['slight'])}")
    return lines


COMPARED_METRICS = ("accuracy", "real_accuracy", "fake_accuracy", "ap", "auc", "n")


def compare_rows(meta_a: dict, meta_b: dict) -> dict:
    """Two runs side by side as data (``pipeline compare`` prints it, the app's compare view shows it).

    Returns
    -------
    dict
        ``names`` [A, B] (run ids); ``reencode`` [A, B] (spec or "off"); ``metrics``: one row per
        held-out figure of :data:`COMPARED_METRICS` {``key``, ``a``, ``b``, ``ci_a``, ``ci_b``}
        (value or None; the 95% interval [lo, hi] or None); ``generators``: one row per generator of
        either run {``generator``, ``a``, ``b``, ``ci_a``, ``ci_b``} (AUC); ``flags`` [A's, B's]
        (:func:`flagged` lines).
    """
    def head(m):
        return (m.get("metrics") or {}).get("head") or {}

    def ci(m, key):
        return (m.get("ci95") or {}).get(key)

    a, b = head(meta_a), head(meta_b)
    data_a, data_b = meta_a.get("config", {}).get("data", {}), meta_b.get("config", {}).get("data", {})
    metrics = [{"key": k, "a": a.get(k), "b": b.get(k), "ci_a": ci(a, k), "ci_b": ci(b, k)}
               for k in COMPARED_METRICS]
    gens = []
    for g in sorted(set(a.get("per_generator", {})) | set(b.get("per_generator", {}))):
        ga, gb = a.get("per_generator", {}).get(g, {}), b.get("per_generator", {}).get(g, {})
        gens.append({"generator": g, "a": ga.get("auc"), "b": gb.get("auc"),
                     "ci_a": ci(ga, "auc"), "ci_b": ci(gb, "auc")})
    return {"names": [meta_a.get("run_id", "A"), meta_b.get("run_id", "B")],
            "reencode": [str(data_a.get("reencode") or "off"), str(data_b.get("reencode") or "off")],
            "metrics": metrics, "generators": gens,
            "flags": [flagged(meta_a.get("checks")), flagged(meta_b.get("checks"))]}


def cell_shift_rows(records_a: Sequence[dict], records_b: Sequence[dict]) -> list[dict]:
    """Per cell of run A, how its images fare in run B (matched by path): the share predicted
    fake in A and, among those also in B, in B.

    Returns one row per cell of A, by cell id: {``cell``, ``n`` (images of A in it), ``n_real``,
    ``n_fake`` (true labels), ``n_in_b``, ``fake_share_a``, ``fake_share_b`` (None when no image
    of the cell is in B)}.
    """
    pred_b = {r["path"]: int(r["pred"]) for r in records_b if str(r.get("pred", "")) != ""}
    cells: dict[int, list[dict]] = {}
    for r in records_a:
        if str(r.get("cell", "")) != "":
            cells.setdefault(int(r["cell"]), []).append(r)
    rows = []
    for cell in sorted(cells):
        members = cells[cell]
        in_b = [pred_b[r["path"]] for r in members if r["path"] in pred_b]
        labels = [int(r["label"]) for r in members]
        rows.append({"cell": cell, "n": len(members), "n_real": labels.count(0), "n_fake": labels.count(1),
                     "n_in_b": len(in_b),
                     "fake_share_a": round(float(np.mean([int(r["pred"]) for r in members])), 4),
                     "fake_share_b": round(float(np.mean(in_b)), 4) if in_b else None})
    return rows


def compare_lines(meta_a: dict, meta_b: dict) -> list[str]:
    """Two runs' held-out metrics and flags side by side (``pipeline compare``; the data:
    :func:`compare_rows`)."""
    rows = compare_rows(meta_a, meta_b)
    name_a, name_b = rows["names"]
    w = max(len(name_a), len(name_b), 12)
    lines = [f"{'':<26} {name_a:>{w}} {name_b:>{w}}"]
    lines.append(f"{'re-encoding':<26} {rows['reencode'][0]:>{w}} {rows['reencode'][1]:>{w}}")
    for row in rows["metrics"]:
        key = row["key"]
        fmt = (lambda v: "–" if v is None else (f"{v}" if key == "n" else _auc(v)))
        lines.append(f"{'held-out ' + key:<26} {fmt(row['a']):>{w}} {fmt(row['b']):>{w}}")
    for row in rows["generators"]:
        lines.append(f"{'  ' + row['generator'] + ' AUC':<26} {_auc(row['a']):>{w}} {_auc(row['b']):>{w}}")
    fa, fb = rows["flags"]
    lines.append(f"{'flagged checks':<26} {len(fa):>{w}} {len(fb):>{w}}")
    for name, flags in ((name_a, fa), (name_b, fb)):
        lines += [f"  {name}: {x}" for x in flags]
    return lines
