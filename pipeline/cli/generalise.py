"""What ``python -m pipeline apply|matrix`` and ``info`` print about applied sets and the
cross-generator matrix (the commands themselves are in ``pipeline.cli.main``)."""
from __future__ import annotations

import math
import sys
from typing import TextIO

from pipeline.store.run_store import AppliedStore, RunStore

CELLS_SHOWN = 12  # cells listed per applied set unless all are asked for


def _fig(value) -> str:
    return "  -  " if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.3f}"


def metrics_lines(m: dict, indent: str = "") -> list[str]:
    """Accuracy per class, AP and AUC, overall and per generator (a run's or an applied set's)."""
    lines = [f"{indent}accuracy {_fig(m['accuracy'])} (real {_fig(m['real_accuracy'])}, fake "
             f"{_fig(m['fake_accuracy'])})  AP {_fig(m['ap'])}  AUC {_fig(m['auc'])}  "
             f"(n={m['n']}: {m['n_real']} real, {m['n_fake']} fake)"]
    for g, pg in (m.get("per_generator") or {}).items():
        lines.append(f"{indent}  {g:<24} accuracy {_fig(pg['accuracy'])} (real {_fig(pg['real_accuracy'])}, "
                     f"fake {_fig(pg['fake_accuracy'])})  AP {_fig(pg['ap'])}  AUC {_fig(pg['auc'])}  (n={pg['n']})")
    return lines


def print_applied(applied: AppliedStore, out: TextIO | None = None, all_cells: bool = False) -> None:
    """An applied set: its data, metrics (or predictions only), where it falls, its bad files."""
    out = out or sys.stdout
    meta = applied.read_meta()
    d = meta["data"]
    print(f"applied set {meta['name']} of run {meta['run_id']}  ({d['n_images']} images: {d['n_real']} real, "
          f"{d['n_fake']} fake, {d['n_unlabelled']} unlabelled; {d['n_bad']} skipped)", file=out)
    print(f"data     {d['manifest'] or d['root']}", file=out)
    if meta["metrics"] is None:
        records = applied.read_records()
        n_fake = sum(r["pred"] for r in records)
        print(f"no labels: predictions only ({n_fake} predicted fake, {len(records) - n_fake} predicted real)",
              file=out)
    else:
        for line in metrics_lines(meta["metrics"]):
            print(line, file=out)
        if meta["metrics"].get("n_unlabelled"):
            print(f"  ({meta['metrics']['n_unlabelled']} unlabelled images are not in these figures)", file=out)
    print_placement(applied, out, all_cells)
    for b in meta.get("bad_files", [])[:20]:
        print(f"  skipped {b['path']}: {b['reason']}", file=out)
    if len(meta.get("bad_files", [])) > 20:
        print(f"  ... and {len(meta['bad_files']) - 20} more (see {applied.path / 'meta.json'})", file=out)


def print_placement(applied: AppliedStore, out: TextIO, all_cells: bool = False) -> None:
    """Which of the run's cells the set's images land in, against the run's own images there."""
    meta = applied.read_meta()
    placement = meta["placement"]
    mine = [c for c in applied.read_cells()["cells"] if c["n"]]
    run_cells = {c["id"]: c for c in applied.run.read_cells()["cells"]}
    n = meta["data"]["n_images"]
    print(f"cells: the images land in {len(mine)} of the run's {len(run_cells)} cells; "
          f"{placement['n_far']} ({placement['n_far'] / max(n, 1):.0%}) lie farther from their cell's "
          f"centroid than {placement['far_percentile']:.0f} % of the run's own images in it", file=out)
    print(f"  {'cell':>4} | {'applied: n':>10} {'real':>5} {'fake':>5} {'unlab':>5} {'acc':>6} {'p(fake)':>7} "
          f"{'far':>4} | {'run: n':>6} {'real':>5} {'fake':>5} {'acc':>6} {'p(fake)':>7}", file=out)
    shown = sorted(mine, key=lambda c: -c["n"])
    for c in shown if all_cells else shown[:CELLS_SHOWN]:
        r = run_cells[c["id"]]
        real = c["real_correct"] + c["real_wrong"]
        fake = c["fake_correct"] + c["fake_wrong"]
        unlabelled = c["unlabelled_pred_real"] + c["unlabelled_pred_fake"]
        print(f"  {c['id']:>4} | {c['n']:>10} {real:>5} {fake:>5} {unlabelled:>5} {_fig(c['accuracy']):>6} "
              f"{_fig(c['mean_prob_fake']):>7} {c['n_far']:>4} | {r['n']:>6} {r['real_correct'] + r['real_wrong']:>5} "
              f"{r['fake_correct'] + r['fake_wrong']:>5} {_fig(r['accuracy']):>6} {_fig(r['mean_prob_fake']):>7}",
              file=out)
    if not all_cells and len(shown) > CELLS_SHOWN:
        print(f"  ... {len(shown) - CELLS_SHOWN} more cells (info RUN --applied {meta['name']} --all-cells)", file=out)


def print_applied_sets(run: RunStore, out: TextIO | None = None) -> None:
    """One or two lines per applied set of ``run`` (for ``pipeline info``)."""
    out = out or sys.stdout
    sets = run.applied_sets()
    if not sets:
        return
    print(f"applied sets ({len(sets)}):", file=out)
    for applied in sets:
        meta = applied.read_meta()
        d = meta["data"]
        head = f"  {applied.name:<20} {d['n_images']} images ({d['n_real']} real, {d['n_fake']} fake, " \
               f"{d['n_unlabelled']} unlabelled; {d['n_bad']} skipped) from {d['manifest'] or d['root']}"
        print(head, file=out)
        if meta["metrics"] is None:
            print("    no labels: predictions only", file=out)
        else:
            for line in metrics_lines(meta["metrics"], indent="    "):
                print(line, file=out)


def print_matrix_if_kept(run: RunStore, out: TextIO | None = None) -> None:
    """The run's cross-generator matrix when it has been computed (for ``pipeline info``)."""
    from pipeline.generalise.run_matrix import cached_matrix, matrix_text
    matrix = cached_matrix(run.path)
    if matrix is not None:
        print("cross-generator matrix (held-out images):", file=out or sys.stdout)
        print(matrix_text(matrix), file=out or sys.stdout)
