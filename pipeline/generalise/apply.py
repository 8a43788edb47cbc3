"""Score new images with a finished run: ``python -m pipeline apply RUN --data FOLDER_OR_MANIFEST``.

The question of generalisation (Ojha et al., CVPR 2023: does what a detector learned carry over to
images it never saw?) asked of one run: a new batch of images, from a new generator or a new
source, is scored with the run's models as they are, without retraining, and placed among the
cells the analyst already knows.

:func:`apply_run` reuses the runner's stages and the run's models, not copies of them:

1. scan (``pipeline.runner.scan_stage`` with ``allow_unlabelled``: a folder without
   ``0_real``/``1_fake``, or a manifest without labels, gives predictions only; labels are never
   guessed); bad files are reported as in a run and skipped;
2. embed (``pipeline.runner.embed_stage``: the shared embedding cache, keyed by file content, so
   images a run has seen are not embedded again; the encoder is loaded only when some image is
   not cached, ``pipeline.model.run_models.EncoderOnDemand``);
3. score with the run's projection and head (``pipeline.model.run_models.RunModels.score``);
4. assign each image to the run's cell whose centroid in the 16-d space is nearest (centroids =
   the mean ``z16`` of the run's images in each cell; the run's cells do not change) and place it
   in the run's representation view (:func:`place_in_cells`);
5. with labels, metrics on the labelled images, overall and per generator
   (``pipeline.model.metrics``, the figures a run reports for its held-out split);
6. write the applied set under the run (``RunStore.write_applied``, atomic; format in
   ``pipeline.store.run_store``), keyed by the data's fingerprint and the run's models: applying unchanged
   data again returns the existing set.
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import logging
import re
from pathlib import Path
from typing import Callable

import numpy as np
from scipy.spatial import cKDTree

from pipeline import __version__
from pipeline.represent.cells import LayoutFrame, cell_centroids, cell_tallies
from pipeline.config import with_data
from pipeline.data.scan import UNLABELLED, ScanResult
from pipeline.store.locks import once, run_locks
from pipeline.model.head import sigmoid
from pipeline.model.metrics import binary_metrics, per_generator_metrics
from pipeline.model.run_models import load_run_models, model_fingerprint
from pipeline.runner import Embedded, Progress, embed_stage, reporter, scan_stage
from pipeline.store.run_store import AppliedStore, ArtifactError, RunStore, hash_obj

log = logging.getLogger("faxplainer")

APPLY_VERSION = 1  # bump when what an applied set holds changes: older sets are recomputed
FAR_PERCENTILE = 95.0  # an image is "far" beyond this percentile of its cell's own distances


def apply_run(run_dir: str | Path, data: str | Path, name: str | None = None,
              progress: Progress | None = None, should_cancel: Callable[[], bool] | None = None
              ) -> AppliedStore:
    """Score the images of ``data`` with the run in ``run_dir`` and keep them as an applied set.

    Parameters
    ----------
    run_dir : a complete run folder.
    data : an image folder (CNNDetection layout, or any folder of images: unlabelled) or a CSV
        manifest (``path[,label,generator,category,source,split]``; empty labels = unlabelled).
    name : the applied set's name (a folder name); default: :func:`default_name`.
    progress : ``progress(stage, done, total)``; stages ``scan``, ``embed``, ``score``, ``cells``,
        ``write`` (as ``pipeline.runner``, for the CLI's bars and the app's job panel).
    should_cancel : polled at each progress report; True stops with ``pipeline.runner.RunCancelled``.

    Returns
    -------
    AppliedStore
        The applied set (``run.applied(name)``), new or reused.

    Raises
    ------
    ValueError
        No usable image (every file bad), a bad name, or an encoder other than the run's.
    pipeline.store.run_store.ArtifactError
        The run is not complete or one of its files is damaged.
    """
    report = reporter(progress, should_cancel)
    run = RunStore(run_dir)
    if not run.exists() or run.read_meta().get("status") != "complete":
        raise ArtifactError(f"{run.path} is not a complete run")
    cfg = with_data(run.config(), data)  # the run's encoder, cache and limits; no generator filter
    scanned = scan_stage(cfg, report, allow_unlabelled=True)
    store = run.applied(name or default_name(scanned))
    key = hash_obj({"data": scanned.fingerprint, "models": model_fingerprint(run.path),
                    "version": APPLY_VERSION})

    def compute() -> AppliedStore:
        if (reused := _finished(store, key)) is not None:
            report("write", 1, 1)
            return reused
        return _score_and_write(run, store, key, scanned, cfg, report)

    return once(run_locks(run.path), f"applied-{store.name}", compute)


def default_name(scanned: ScanResult) -> str:
    """A manifest's name (unless it is ``manifest.csv``), else the folder's, as a folder name."""
    manifest = scanned.manifest
    text = manifest.stem if manifest and manifest.stem != "manifest" else scanned.root.name
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-.")[:80] or "applied"


def _finished(store: AppliedStore, key: str) -> AppliedStore | None:
    """``store`` when it holds a complete, undamaged set computed for ``key``."""
    if not store.exists():
        return None
    meta = store.read_meta()
    if meta.get("status") != "complete" or meta.get("key") != key:
        log.info("applied set %s is out of date (other data or models); scoring it again", store.name)
        return None
    if damaged := store.damaged():
        log.warning("applied set %s has damaged files (%s); scoring it again", store.name, "; ".join(damaged))
        return None
    log.info("applied set %s is up to date; reusing it", store.name)
    return store


def _score_and_write(run: RunStore, store: AppliedStore, key: str, scanned: ScanResult, cfg,
                     report: Progress) -> AppliedStore:
    models = load_run_models(run.path, lazy_encoder=True)
    embedded = embed_stage(models.encoder, scanned, cfg, report, check=False)
    if not embedded.records:
        raise ValueError(f"no usable image under {scanned.root}: all {len(embedded.bad)} file(s) were "
                         f"rejected (see the reasons logged above)")
    report("score", 0, 1)
    z16, logit = models.score(embedded.embeddings)
    report("score", 1, 1)
    report("cells", 0, 1)
    placed = place_in_cells(run, z16, logit, models.head.classifier.weight.detach().cpu().numpy())
    cells = applied_cells(run.read_cells(), placed, logit, embedded.labels)
    report("cells", 1, 1)
    report("write", 0, 1)
    meta = {
        "name": store.name, "run_id": run.run_id, "status": "complete", "key": key,
        "faxplainer_version": __version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "data": data_summary(scanned, embedded),
        "bad_files": embedded.bad,
        "metrics": applied_metrics(embedded, logit),
        "placement": placed.summary,
    }
    written = run.write_applied(store.name, meta=meta, records=applied_records(embedded, logit, placed),
                                cells=cells, arrays={"z16": z16.astype(np.float32),
                                                     "logit": logit.astype(np.float32)})
    report("write", 1, 1)
    return written


# -- placement among the run's cells ---------------------------------------------------------------

@dataclasses.dataclass
class Placement:
    """Where scored images fall among a run's cells (rows aligned with the images)."""

    cell: np.ndarray  # (N,) nearest run cell in the 16-d space
    distance: np.ndarray  # (N,) to that cell's centroid
    far: np.ndarray  # (N,) bool: farther than FAR_PERCENTILE of the run's own images in that cell
    xy: np.ndarray  # (N, 2) position in the run's representation view
    summary: dict  # JSON-able: method and counts (meta.json -> placement)


def place_in_cells(run: RunStore, z16: np.ndarray, logit: np.ndarray, classifier_weight: np.ndarray) -> Placement:
    """Nearest run cell (16-d centroid) and a position in the run's representation view.

    The run's cells were placed by ``pipeline.represent.cells.build_cells`` in a frame (``LayoutFrame``:
    x = asinh(logit), y = a fixed linear map of the 16-d point), then pushed apart so glyphs do not
    overlap. An image's offset from its cell in that frame (its logit against the cell's mean
    logit, its 16-d point against the centroid) is scaled so that the cell's glyph radius is the
    95th percentile of the offsets of the run's own images in the cell, and added to the glyph's
    drawn centre; an offset beyond the glyph is shrunk onto its rim. So the run's own images fill
    their glyphs, a new image sits where it falls among them (right = more fake than the cell's
    images, as the x axis), and one that deviates more than nearly all of them is on the rim, on
    the side it deviates to (``n_on_rim``). Deterministic (no randomness), and the same for an
    image of the run itself.
    ``classifier_weight``: the run's head's last layer (it fixes the frame's axes, as for the run).
    """
    run_z = np.asarray(run.load_array("z16"), dtype=np.float64)
    run_logit = np.asarray(run.load_array("logit"), dtype=np.float64)
    run_cell = np.array([r["cell"] for r in run.read_records()])
    drawn = run.read_cells()["cells"]
    n_cells = len(drawn)
    centroids = cell_centroids(run_z, run_cell, n_cells)
    mean_logit = np.bincount(run_cell, weights=run_logit, minlength=n_cells) / np.bincount(run_cell, minlength=n_cells)
    frame = LayoutFrame.fit(centroids, mean_logit, classifier_weight)  # the run's own frame

    z = np.asarray(z16, dtype=np.float64)
    distance, cell = cKDTree(centroids).query(z) if len(z) else (np.zeros(0), np.zeros(0, int))
    own = np.linalg.norm(run_z - centroids[run_cell], axis=1)
    typical = np.array([np.percentile(own[run_cell == k], FAR_PERCENTILE) for k in range(n_cells)])
    far = distance > typical[cell]

    cell_xy = frame.place(centroids, mean_logit)
    own_offset = np.linalg.norm(frame.place(run_z, run_logit) - cell_xy[run_cell], axis=1)
    spread = np.array([np.percentile(own_offset[run_cell == k], FAR_PERCENTILE) for k in range(n_cells)])
    radius = np.array([c.get("r", 0.0) for c in drawn])
    scale = (radius / np.where(spread > 0, spread, 1.0))[cell]
    offset = (frame.place(z, logit) - cell_xy[cell]) * scale[:, None]
    length = np.linalg.norm(offset, axis=1)
    on_rim = length > radius[cell]
    shrink = np.where(on_rim, radius[cell] / np.maximum(length, 1e-12), 1.0)
    centre = np.array([[c["x"], c["y"]] for c in drawn])[cell]
    xy = centre + offset * shrink[:, None]
    summary = {"cells": "nearest run cell centroid (mean z16 of the run's images in the cell), Euclidean",
               "position": "cell centre + own offset in the view's frame (pipeline.represent.cells.LayoutFrame), "
                           "scaled so that the glyph radius is the run's own images' 95th percentile "
                           "offset in the cell, shrunk onto the glyph rim beyond it",
               "far_percentile": FAR_PERCENTILE, "n_far": int(far.sum()),
               "n_on_rim": int(on_rim.sum()), "n_cells_reached": int(len(np.unique(cell)))}
    return Placement(cell=cell.astype(int), distance=distance, far=far, xy=xy, summary=summary)


def applied_cells(run_cells: dict, placed: Placement, logit: np.ndarray, labels: np.ndarray) -> dict:
    """``cells.json`` of an applied set: the run's cells (ids, positions) with this set's tallies."""
    drawn = run_cells["cells"]
    t = cell_tallies(placed.cell, len(drawn), logit, labels)
    n_far = np.bincount(placed.cell, weights=placed.far.astype(float), minlength=len(drawn))
    out = []
    for k, c in enumerate(drawn):
        labelled = t["real_correct"][k] + t["real_wrong"][k] + t["fake_correct"][k] + t["fake_wrong"][k]
        counts = {name: int(t[name][k]) for name in ("n", "real_correct", "real_wrong", "fake_correct",
                                                     "fake_wrong", "unlabelled_pred_real", "unlabelled_pred_fake")}
        out.append({"id": c["id"], "x": c["x"], "y": c["y"], "run_r": c.get("r"), **counts,
                    "n_far": int(n_far[k]),
                    "mean_confidence": _defined(t["mean_confidence"][k]),
                    "mean_prob_fake": _defined(t["mean_prob_fake"][k]),
                    "accuracy": float((t["real_correct"][k] + t["fake_correct"][k]) / labelled)
                    if labelled else None})
    return {**{k: v for k, v in run_cells.items() if k != "cells"}, "cells": out}


def _defined(value: float) -> float | None:
    return None if not np.isfinite(value) else float(value)


# -- records, metrics, summary ---------------------------------------------------------------------

def applied_records(embedded: Embedded, logit: np.ndarray, placed: Placement) -> list[dict]:
    """``records.csv`` rows: each scan record with its prediction, cell and position."""
    prob = sigmoid(logit)
    pred = (logit > 0).astype(int)
    rows = []
    for i, r in enumerate(embedded.records):
        known = r.label != UNLABELLED
        rows.append({**r.to_dict(), "label": r.label if known else None,
                     "prob_fake": round(float(prob[i]), 6), "pred": int(pred[i]),
                     "correct": int(pred[i] == r.label) if known else None, "cell": int(placed.cell[i]),
                     "x": round(float(placed.xy[i, 0]), 6), "y": round(float(placed.xy[i, 1]), 6),
                     "distance": round(float(placed.distance[i]), 6), "far": int(placed.far[i])})
    return rows


def applied_metrics(embedded: Embedded, logit: np.ndarray) -> dict | None:
    """Metrics on the labelled images (a run's head-metrics keys), or None when none is labelled."""
    labels = embedded.labels
    known = labels != UNLABELLED
    if not known.any():
        return None
    prob = sigmoid(logit)
    metrics = binary_metrics(labels[known], prob[known])
    metrics["per_generator"] = per_generator_metrics(
        labels[known], prob[known], [r.generator for r, k in zip(embedded.records, known) if k])
    metrics["n_unlabelled"] = int((~known).sum())
    return metrics


def data_summary(scanned: ScanResult, embedded: Embedded) -> dict:
    labels = embedded.labels
    return {"root": str(scanned.root), "manifest": str(scanned.manifest) if scanned.manifest else None,
            "fingerprint": scanned.fingerprint, "n_images": len(embedded.records), "n_bad": len(embedded.bad),
            "n_real": int((labels == 0).sum()), "n_fake": int((labels == 1).sum()),
            "n_unlabelled": int((labels == UNLABELLED).sum()), "n_embedded": embedded.n_computed,
            "labelled": bool(len(labels) and (labels != UNLABELLED).all())}
