"""The pipeline from an image folder to a run folder, as a list of stages.

:func:`run_pipeline` reads as the stages it runs: scan (with each file's facts) -> encoder ->
projection (its sample and word images embedded, its fit started on a worker thread:
``pipeline.projection_stage``) -> embed -> split -> checks (duplicates and leakage, shortcuts:
``pipeline.checks.validity``) -> the projection's fit joined -> head (fit, held-out metrics) ->
near-duplicates beside cells -> write. Each stage is a function of what the earlier
ones produced, so other commands reuse them (scoring new data with a run: the scan, the embedding
and the run's models). Stages talk through files where the work is worth keeping: embeddings are
cached per (encoder, file content) by ``pipeline.model.embed``, the projection per (encoder, data,
projection settings), and the run folder is written by ``pipeline.store.run_store.write_run`` under a
temporary name and renamed when complete, so a crash or a kill never leaves a half run that looks
finished. Re-running an unchanged configuration on unchanged data returns the existing run.
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import logging
import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from pipeline import __version__

from pipeline.checks import validity
from pipeline.projection_stage import projection_ahead
from pipeline.represent.cells import build_cells
from pipeline.stage_times import StageTimes
from pipeline.config import Config, to_dict
from pipeline.data.scan import Record, ScanResult, scan
from pipeline.store.diskcheck import writable_folder
from pipeline.model.encoders import shared_encoder
from pipeline.model.encoders.base import Encoder
from pipeline.model.embed import embed_paths_for
from pipeline.model.head import DistilledHead, orthogonality_report, sigmoid
from pipeline.model.metrics import binary_metrics, per_generator_metrics
from pipeline.model.probe import reference_probe
from pipeline.model.stopwatch import Stopwatch
from pipeline.model.projection import VisionOnlyProjection
from pipeline.data.splits import HELDOUT, TRAIN, assign_splits, validation_mask
from pipeline.store.run_store import HEAD, PROJECTION, RunStore, hash_obj, write_run

log = logging.getLogger("faxplainer")

Progress = Callable[[str, int, int], None]
MIN_IMAGES = 10


class RunCancelled(Exception):
    """Raised inside a run when ``should_cancel()`` turns true; nothing finished is lost."""


@dataclass
class Embedded:
    """The usable images of a scan with their embeddings (rows aligned)."""

    records: list[Record]
    paths: list[Path]
    embeddings: np.ndarray  # (N, D) float32
    bad: list[dict]  # the scan's bad files plus those that failed to decode: {"path", "reason"}
    facts: list = dataclasses.field(default_factory=list)  # pipeline.data.filefacts.FileFacts per image
    keys: list[str] = dataclasses.field(default_factory=list)  # sha256 of each file's bytes
    n_computed: int = 0  # images that went through the encoder (the rest came from the cache)
    timing: dict = dataclasses.field(default_factory=dict)  # the embedding's seconds, forward and whole

    @property
    def labels(self) -> np.ndarray:
        return np.array([r.label for r in self.records])

    def subset(self, keep: np.ndarray) -> "Embedded":
        """The images where ``keep`` is true (the bad files stay as they are)."""
        pick = lambda items: [x for x, k in zip(items, keep) if k]  # noqa: E731
        return Embedded(pick(self.records), pick(self.paths), self.embeddings[keep], self.bad,
                        pick(self.facts) if self.facts else [], pick(self.keys) if self.keys else [],
                        self.n_computed, self.timing)


@dataclass
class HeadFit:
    """The trained head, the split it was trained on and its scores of every image."""

    head: DistilledHead
    splits: np.ndarray  # "train" | "heldout" per image
    z: np.ndarray  # (N, 16)
    logit: np.ndarray  # (N,)
    metrics: dict  # held-out metrics, per generator, train metrics, orthogonality, epochs
    heldout: dict = dataclasses.field(default_factory=dict)  # binary_metrics of the held-out split alone

    @property
    def prob(self) -> np.ndarray:
        return sigmoid(self.logit)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-")[:40] or "data"


def run_id_for(cfg: Config, data_fingerprint: str, encoder_fingerprint: str, data_name: str) -> str:
    key = {"cfg": cfg.fingerprint("data", "projection", "head", "cells", "checks"), "enc": encoder_fingerprint,
           "data": data_fingerprint}
    return f"{_slug(data_name)}-{hash_obj(key)[:10]}"


def reporter(progress: Progress | None, should_cancel: Callable[[], bool] | None) -> Progress:
    """``progress(stage, done, total)`` that first raises :class:`RunCancelled` when asked to."""

    def report(stage: str, done: int, total: int) -> None:
        if should_cancel and should_cancel():
            raise RunCancelled(f"run cancelled during {stage}")
        if progress:
            progress(stage, done, total)

    return report


# -- stages ----------------------------------------------------------------------------------------

def scan_stage(cfg: Config, report: Progress, allow_unlabelled: bool = False) -> ScanResult:
    """The data set's usable images and the files that cannot be used (logged, kept in the run).

    Everything the scan can decide fails here, before any encoder is loaded: a data set with one
    class only, or too few usable images. ``allow_unlabelled`` (scoring new images with a run,
    ``pipeline.generalise.apply``): images without labels are kept and neither check is made.
    """
    report("scan", 0, 1)
    scanned = scan(cfg.data, progress=lambda d, t: report("scan", d, t), allow_unlabelled=allow_unlabelled)
    for b in scanned.bad:
        log.warning("skipped %s: %s", b["path"], b["reason"])
    if not allow_unlabelled:
        check_usable(scanned.records, f"the data under {scanned.root}", len(scanned.bad))
    return scanned


def check_usable(records: list[Record], where: str, n_bad: int = 0) -> None:
    """Raise ValueError unless ``records`` hold both classes and at least :data:`MIN_IMAGES`."""
    counts = np.bincount([r.label for r in records], minlength=2)
    skipped = f" ({n_bad} file(s) could not be used)" if n_bad else ""
    if len(records) < MIN_IMAGES:
        raise ValueError(f"{where} has only {len(records)} usable images{skipped}; need at least "
                         f"{MIN_IMAGES}")
    if counts.min() == 0:
        only = "real" if counts[0] else "fake"
        raise ValueError(f"{where} has only {only} images ({counts.max()}){skipped}; both classes are "
                         f"needed (0_real/ and 1_fake/ folders, or a manifest's label column)")


def encoder_stage(cfg: Config, report: Progress) -> Encoder:
    report("encoder", 0, 1)
    encoder = shared_encoder(cfg.encoder, cfg.cache_path, log=log.info)
    report("encoder", 1, 1)
    return encoder


def finished_run(store: RunStore, report: Progress) -> RunStore | None:
    """``store`` if it holds a complete, undamaged run (then it is reused), else None."""
    if not (store.exists() and store.read_meta().get("status") == "complete"):
        return None
    damaged = store.damaged()
    if damaged:
        log.warning("run %s has damaged files (%s); computing it again", store.run_id, "; ".join(damaged))
        return None
    log.info("run %s is up to date; reusing it", store.run_id)
    os.utime(store.path / "meta.json")  # newest = last asked for: the app opens it by default
    report("write", 1, 1)
    return store


def embed_stage(encoder: Encoder, scanned: ScanResult, cfg: Config, report: Progress,
                check: bool = True) -> Embedded:
    """Embed the scan's images (cached); images that fail to decode join the bad files.

    ``check``: fail unless both classes and :data:`MIN_IMAGES` images are left (a run's needs;
    ``pipeline.generalise.apply`` checks only that some image is left).
    """
    records = scanned.records
    report("embed", 0, len(records))  # before the files are hashed for the cache lookup
    paths = [scanned.path(r) for r in records]
    result = embed_paths_for(cfg, encoder, paths, progress=lambda d, t: report("embed", d, t))
    log.info("embeddings: %d computed, %d from cache; %.1f s, of which %.1f s in the encoder's forward",
             result.n_computed, result.n_cached, result.seconds, result.forward_seconds)
    bad = list(scanned.bad)
    failed = {i for i, _ in result.failures}
    for i, why in result.failures:
        bad.append({"path": records[i].path, "reason": why})
        log.warning("skipped %s: %s", records[i].path, why)
    keep = np.array([i not in failed for i in range(len(records))], dtype=bool)
    embedded = Embedded(records=records, paths=paths, embeddings=np.asarray(result.embeddings, np.float32),
                        bad=bad, facts=list(scanned.facts), keys=list(result.keys),
                        n_computed=result.n_computed,
                        timing={"computed": result.n_computed, "cached": result.n_cached,
                                "seconds": round(result.seconds, 3),
                                "forward_seconds": round(result.forward_seconds, 3)}).subset(keep)
    if check:
        check_usable(embedded.records, f"the data under {scanned.root}", len(bad))  # after decoding
    return embedded


def split_stage(embedded: Embedded, cfg: Config) -> np.ndarray:
    """Train / held-out per image (``pipeline.data.splits``: preset, by source, or stratified)."""
    records = embedded.records
    return assign_splits(embedded.labels, [r.generator for r in records], [r.source for r in records],
                         [r.split for r in records], cfg.head.holdout_fraction, cfg.head.seed)


def checks_stage(embedded: Embedded, splits: np.ndarray, cfg: Config,
                 report: Progress) -> tuple[Embedded, np.ndarray, dict]:
    """Duplicates and leakage, then the shortcut check of the file facts (``pipeline.checks.validity``):
    the images and splits the head is trained and measured on, and what was found."""
    report("checks", 0, 2)
    rels = [r.path for r in embedded.records]
    checks: dict = {}
    if embedded.keys:
        splits, keep, checks["duplicates"] = validity.leakage(
            embedded.keys, embedded.labels, splits, rels, cfg.checks.exclude_conflicts)
        if not keep.all():
            embedded, splits = embedded.subset(keep), splits[keep]
            check_usable(embedded.records, "the data without the files under both labels")
    report("checks", 1, 2)
    if embedded.facts:
        records = embedded.records
        checks["shortcuts"] = validity.shortcuts(embedded.facts, embedded.labels, splits,
                                                 [r.generator for r in records], [r.source for r in records], cfg)
    report("checks", 2, 2)
    return embedded, splits, checks


def head_stage(features: np.ndarray, embedded: Embedded, splits: np.ndarray, cfg: Config,
               report: Progress) -> HeadFit:
    """Fit the 16-d head on the training split (early stopping on a validation part of it),
    score every image and measure the held-out split, beside the reference linear probe on the full
    embedding (``pipeline.model.probe``)."""
    records, labels = embedded.records, embedded.labels
    if len(np.unique(labels[splits == TRAIN])) < 2:
        raise ValueError("the training split holds one class only; both are needed")
    generators = [r.generator for r in records]
    hc = cfg.head
    train_rows = np.flatnonzero(splits == TRAIN)
    val = validation_mask(labels, train_rows, hc.validation_fraction, hc.seed)
    fit_rows, val_rows = train_rows[~val], train_rows[val]
    head = DistilledHead.from_config(hc)
    # what the embedding allows (a detector much weaker than this is not worth explaining),
    # fitted on the second core while the head trains on one torch thread
    with ThreadPoolExecutor(max_workers=1) as pool:
        probe = pool.submit(reference_probe, embedded.embeddings, labels, splits, blas_threads=1)
        head.fit(features[fit_rows], labels[fit_rows], features[val_rows], labels[val_rows],
                 progress=lambda d, t: report("head", d, t))
        probe_metrics = probe.result()
    z, logit = head.transform(features)
    fit = HeadFit(head=head, splits=splits, z=z, logit=logit, metrics={})
    prob, held = fit.prob, splits == HELDOUT
    fit.heldout = binary_metrics(labels[held], prob[held])
    metrics = dict(fit.heldout)
    metrics["per_generator"] = per_generator_metrics(labels[held], prob[held],
                                                     [g for g, h in zip(generators, held) if h])
    # the training split's figures are shown without intervals: no bootstrap (2 s at 10,000 images)
    metrics["train"] = binary_metrics(labels[train_rows], prob[train_rows], n_boot=0)
    metrics["orthogonality"] = orthogonality_report(head.module_.to16.weight.detach().numpy())
    metrics["epochs"] = head.epochs_
    metrics["n_train"], metrics["n_val"] = int(len(fit_rows)), int(len(val_rows))
    metrics["reference_probe"] = probe_metrics
    fit.metrics = metrics
    report("head", hc.max_epochs, hc.max_epochs)
    return fit


def cells_stage(fit: HeadFit, labels: np.ndarray, cfg: Config, report: Progress) -> tuple[np.ndarray, dict]:
    """Cells of the representation view (``pipeline.represent.cells``): cell per image and ``cells.json``."""
    report("cells", 0, 1)
    cell_of, cells = build_cells(fit.z, fit.logit, labels,
                                 fit.head.module_.classifier.weight.detach().numpy(),
                                 n_cells=cfg.cells.n_cells, seed=cfg.cells.seed)
    report("cells", 1, 1)
    return cell_of, cells


def run_records(embedded: Embedded, fit: HeadFit, cell_of: np.ndarray) -> list[dict]:
    """``records.csv`` rows: each scan record with its split, prediction and cell."""
    pred = (fit.logit > 0).astype(int)
    prob, labels = fit.prob, embedded.labels
    rows = []
    for i, r in enumerate(embedded.records):
        rows.append({**r.to_dict(), "split": str(fit.splits[i]), "prob_fake": round(float(prob[i]), 6),
                     "pred": int(pred[i]), "correct": int(pred[i] == labels[i]), "cell": int(cell_of[i])})
    return rows


def write_stage(cfg: Config, store: RunStore, scanned: ScanResult, encoder: Encoder, embedded: Embedded,
                features: np.ndarray, projection: VisionOnlyProjection, proj_metrics: dict, fit: HeadFit,
                cell_of: np.ndarray, cells: dict, checks: dict, report: Progress,
                started_by: str | None = None, timing: dict | None = None) -> RunStore:
    """Write the complete run folder (atomically, ``pipeline.store.run_store.write_run``); ``started_by``
    (who asked for the run, on a shared server) and ``timing`` (``pipeline.stage_times``: where the
    wall time went until the write) go into ``meta.json``."""
    report("write", 0, 1)
    labels = embedded.labels
    meta = {
        "run_id": store.run_id, "status": "complete", "faxplainer_version": __version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "config": to_dict(cfg),
        "encoder": dataclasses.asdict(encoder.info),
        "data": {"root": str(scanned.root), "manifest": str(scanned.manifest) if scanned.manifest else None,
                 "fingerprint": scanned.fingerprint, "n_images": len(embedded.records),
                 "n_bad": len(embedded.bad), "n_real": int((labels == 0).sum()),
                 "n_fake": int((labels == 1).sum())},
        "bad_files": embedded.bad,
        "metrics": {"projection": proj_metrics, "head": fit.metrics},
        "checks": checks,
        "embedding": embedded.timing,  # how long the embedding took, and how much of it was the forward
    }
    if started_by:
        meta["started_by"] = str(started_by)
    if timing:
        meta["timing"] = timing
    arrays = {"embeddings": embedded.embeddings, "features": features.astype(np.float32),
              "z16": fit.z.astype(np.float32), "logit": fit.logit.astype(np.float32)}
    written = write_run(store.path, meta=meta, records=run_records(embedded, fit, cell_of), cells=cells,
                        arrays=arrays, models={PROJECTION: projection.state(), HEAD: fit.head.state()},
                        facts=[f.to_row() for f in embedded.facts] if embedded.facts else None)
    report("write", 1, 1)
    return written


# -- the pipeline ----------------------------------------------------------------------------------

def run_pipeline(cfg: Config, progress: Progress | None = None,
                 should_cancel: Callable[[], bool] | None = None,
                 started_by: str | None = None) -> RunStore:
    """Run every stage on ``cfg.data`` and return the completed run folder (``started_by``: the
    user who asked, recorded in a new run's ``meta.json``)."""
    times = StageTimes()
    report = reporter(times.wrap(progress), should_cancel)
    writable_folder(cfg.cache_path, "cache folder (cache_dir)")
    writable_folder(cfg.runs_path, "runs folder (runs_dir)")
    scanned = scan_stage(cfg, report)
    encoder = encoder_stage(cfg, report)
    store = RunStore(cfg.runs_path / run_id_for(cfg, scanned.fingerprint, encoder.info.fingerprint,
                                                scanned.name))
    if (reused := finished_run(store, report)) is not None:
        return reused
    forward = Stopwatch()  # every forward of the run: the projection's images and the data set's
    # the projection's sample and word images go first, so that its fit (one torch thread, on a
    # worker) overlaps the data set's embedding (pipeline.projection_stage)
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="projection-fit")
    try:
        projection_ready = projection_ahead(encoder, scanned, cfg, report, pool, forward)
        embedded = embed_stage(encoder, scanned, cfg, report)
        forward.add(embedded.timing.get("forward_seconds", 0.0), embedded.n_computed)
        embedded, splits, checks = checks_stage(embedded, split_stage(embedded, cfg), cfg, report)
        projection, proj_metrics = projection_ready()
    finally:
        pool.shutdown(wait=False)  # after an error or a cancel, an unfinished fit ends on its own
    features = projection.transform(embedded.embeddings)
    fit = head_stage(features, embedded, splits, cfg, report)
    with ThreadPoolExecutor(max_workers=1) as pool:  # two independent numpy jobs, one per core
        near = pool.submit(validity.near_duplicate_report, features, splits, embedded.labels, fit.prob,
                           [r.path for r in embedded.records], cfg, fit.heldout)
        cell_of, cells = cells_stage(fit, embedded.labels, cfg, report)
        checks["near_duplicates"] = near.result()
    return write_stage(cfg, store, scanned, encoder, embedded, features, projection, proj_metrics, fit,
                       cell_of, cells, checks, report, started_by,
                       timing=times.summary(forward.seconds, forward.items))
