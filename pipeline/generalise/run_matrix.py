"""The cross-generator matrix of a run, from its cached features, kept with the run.

``pipeline.generalise.crossgen.cross_generator_matrix`` computes the train-on-one and leave-one-out tables
from features, labels, generators and splits; this module feeds it a run's own ``features.npy``
and ``records.csv`` (labels, generators and the splits the run used) and the run's head settings,
and keeps the answer in the run folder (``crossgen.json``, a derived result: ``pipeline.store.derived``). The key is the
checksums the run recorded for those two files, the head settings and :data:`MATRIX_VERSION`,
so the matrix is computed once per run; no image is read or embedded.

Reading a kept matrix (:func:`cached_matrix`) imports no torch (the app's web process calls it);
the training code (``pipeline.generalise.crossgen``) is imported when a matrix is computed or printed.
"""
from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Callable

import numpy as np

from pipeline.store.derived import Derived
from pipeline.store.run_store import MATRIX, RECORDS, RunStore, json_default, sha256_file

log = logging.getLogger("faxplainer")

MATRIX_VERSION = 2  # bump when the matrix's method changes: kept matrices are recomputed (2: intervals)


def matrix_inputs(store: RunStore) -> dict:
    """What the run's matrix depends on (see the module docstring); not the run's models."""
    checksums = store.read_meta().get("checksums") or {}
    inputs = {name: checksums.get(name) or sha256_file(store.path / name)
              for name in ("features.npy", RECORDS)}
    return {"inputs": inputs, "head": dataclasses.asdict(store.config().head), "version": MATRIX_VERSION}


def _dump(matrix: dict, key: str) -> bytes:  # the file keeps the matrix under "matrix"
    return json.dumps({"key": key, "matrix": matrix}, indent=1, sort_keys=True, default=json_default).encode()


def _load(data: bytes, key: str) -> dict | None:
    saved = json.loads(data)
    return saved.get("matrix") if isinstance(saved, dict) and saved.get("key") == key else None


def matrix_result(run_dir: str | Path) -> Derived:
    """The run's matrix as a derived result (:class:`pipeline.store.derived.Derived`): ``crossgen.json``,
    sealed, keyed by :func:`matrix_inputs` (the matrix trains its own heads: no model fingerprint)."""
    store = RunStore(run_dir)
    return Derived(store.path, MATRIX, matrix_inputs(store), model=False, dump=_dump, load=_load)


def matrix_key(store: RunStore) -> str:
    """The key the run's kept matrix must carry."""
    return matrix_result(store.path).key


def cached_matrix(run_dir: str | Path) -> dict | None:
    """The run's kept matrix if it is current, else None (nothing is computed)."""
    if not RunStore(run_dir).has_array("features"):
        return None
    return matrix_result(run_dir).read()


def run_matrix(run_dir: str | Path, progress: Callable[[int, int], None] | None = None,
               recompute: bool = False, should_cancel: Callable[[], bool] | None = None) -> dict:
    """The run's cross-generator matrix: kept one if current, else computed (once across
    processes) and kept.

    Parameters
    ----------
    run_dir : a complete run folder with ``features.npy``.
    progress : ``progress(done, total)`` over the heads' epochs (``pipeline.generalise.stacked_heads``).
    recompute : compute it again even if a current one is kept.
    should_cancel : polled at each progress report; True stops with
        ``pipeline.store.derived.Cancelled``.

    Returns
    -------
    dict
        ``pipeline.generalise.crossgen.cross_generator_matrix``'s result (``seconds``: the time it took when
        it was computed).

    Raises
    ------
    ValueError
        The run has fakes of fewer than two generators, or no head can be trained.
    pipeline.store.run_store.ArtifactError
        ``features.npy`` or ``records.csv`` is missing or damaged.
    """
    store = RunStore(run_dir)

    def compute(progress) -> dict:
        from pipeline.generalise import crossgen  # torch: only when a matrix is computed

        records = store.read_records()
        features = np.asarray(store.load_array("features", mmap=False), dtype=np.float32)
        matrix = crossgen.cross_generator_matrix(
            features, [r["label"] for r in records], [r["generator"] for r in records],
            [r["split"] for r in records], store.config().head, progress=progress)
        log.info("cross-generator matrix of run %s: %.1f s", store.run_id, matrix["seconds"])
        return matrix

    return matrix_result(store.path).get(compute, progress, should_cancel, recompute=recompute)


def _entry(cell: dict | None, figure: str) -> str:
    """``0.756 [0.51, 0.93]``: a pair's figure with its 95% bootstrap interval (none in old matrices)."""
    if cell is None or cell.get(figure) is None:
        return "-"
    ci = (cell.get("ci95") or {}).get(figure)
    return f"{cell[figure]:.3f}" + (f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "")


def matrix_text(matrix: dict) -> str:
    """The matrix as plain-text tables: AUC and accuracy with their 95% intervals, rows = trained on,
    columns = tested on."""
    from pipeline.generalise.crossgen import TABLES

    gens = matrix["generators"]
    width = max(12, *(len(g) + 4 for g in gens)) + 1  # row labels (+ "not " of the leave-one-out rows)
    col = max(7, *(len(g) for g in gens)) + 2
    titles = {"one": "trained on one generator (row), tested on each generator's held-out images (column)",
              "all_but_one": "trained on all generators but the row's, tested on each (the diagonal is "
                             "the generator left out)"}
    lines, corner = [], "train \\ test"
    for table in TABLES:
        for figure in ("auc", "accuracy"):
            lines.append(f"{figure.upper() if figure == 'auc' else figure}: {titles[table]}")
            lines.append(f"{corner:<{width}}" + "".join(f"{g:>{col + 14}}" for g in gens))
            for g in gens:
                row = matrix[table].get(g)
                label = g if table == "one" else f"not {g}"
                if row is None:
                    lines.append(f"{label:<{width}}  not trained: {matrix['skipped'][table].get(g, '')}")
                    continue
                cells = [row.get(t) for t in gens]
                lines.append(f"{label:<{width}}" + "".join(f"{_entry(c, figure):>{col + 14}}" for c in cells))
            lines.append("")
    lines.append(f"reals: {matrix['reals']}")
    lines += [f"note: {n}" for n in matrix.get("notes", [])]
    lines.append(f"computed in {matrix['seconds']:.1f} s ({sum(len(t) for t in matrix['heads'].values())} heads)")
    return "\n".join(lines)
