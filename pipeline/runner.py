"""The pipeline from an image folder to a run folder: scan -> embed -> project -> head -> cells.

Stages talk through files: embeddings are cached per (encoder, file content) by ``pipeline.embed``,
the projection per (encoder, data, projection settings), and the run folder is written under a
temporary name and renamed when complete, so a crash or a kill never leaves a half run that looks
finished. Re-running an unchanged configuration on unchanged data returns the existing run.
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import logging
import os
import re
import shutil
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from . import __version__
from .cells import build_cells
from .config import Config, from_dict, to_dict
from .data import scan
from .diskcheck import writable_folder
from .encoders import shared_encoder
from .encoders.base import Encoder
from .embed import embed_paths, embed_pil
from .head import DistilledHead, orthogonality_report
from .metrics import binary_metrics, per_generator_metrics
from .project import VisionOnlyProjection
from .projection_training import VERSION as PROJECTION_VERSION, train_projection
from .splits import HELDOUT, TRAIN, assign_splits, validation_mask
from .store import RunStore, atomic_write_bytes, hash_obj, sha256_file

log = logging.getLogger("faxplainer")

Progress = Callable[[str, int, int], None]
STAGES = ["scan", "encoder", "embed", "projection", "head", "cells", "write"]


class RunCancelled(Exception):
    """Raised inside a run when ``should_cancel()`` turns true; nothing finished is lost."""


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-")[:40] or "data"


def run_id_for(cfg: Config, data_fingerprint: str, encoder_fingerprint: str, data_name: str) -> str:
    key = {"cfg": cfg.fingerprint("data", "projection", "head", "cells"), "enc": encoder_fingerprint,
           "data": data_fingerprint}
    return f"{_slug(data_name)}-{hash_obj(key)[:10]}"


def _torch_save_atomic(path: Path, obj) -> None:
    import io
    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue())


def _projection_cached(encoder: Encoder, paths, emb, cfg: Config, data_fp: str, progress) -> tuple:
    key = hash_obj({"enc": encoder.info.fingerprint, "data": data_fp, "cfg": cfg.fingerprint("projection"),
                    "version": PROJECTION_VERSION})
    path = cfg.cache_path / "projection" / f"{key}.pt"
    if path.exists():
        try:
            saved = torch.load(path, weights_only=True)
            return VisionOnlyProjection.from_state(saved["state"]), saved["metrics"]
        except Exception as e:  # a corrupted cache file is recomputed, never trusted
            log.warning("projection cache %s unreadable (%s); retraining", path, e)
    projection, metrics = train_projection(
        encoder, paths, emb, cfg.projection,
        embed_images=lambda images: embed_pil(encoder, images, batch_size=cfg.encoder.batch_size),
        max_pixels=cfg.data.max_image_pixels, progress=progress)
    _torch_save_atomic(path, {"state": projection.state(), "metrics": metrics})
    return projection, metrics


def run_pipeline(cfg: Config, progress: Progress | None = None,
                 should_cancel: Callable[[], bool] | None = None) -> RunStore:
    """Run every stage on ``cfg.data`` and return the completed run folder."""

    def report(stage: str, done: int, total: int) -> None:
        if should_cancel and should_cancel():
            raise RunCancelled(f"run cancelled during {stage}")
        if progress:
            progress(stage, done, total)

    writable_folder(cfg.cache_path, "cache folder (cache_dir)")
    writable_folder(cfg.runs_path, "runs folder (runs_dir)")
    report("scan", 0, 1)
    scanned = scan(cfg.data, progress=lambda d, t: report("scan", d, t))
    for b in scanned.bad:
        log.warning("skipped %s: %s", b["path"], b["reason"])

    report("encoder", 0, 1)
    encoder = shared_encoder(cfg.encoder, cfg.cache_path, log=log.info)
    report("encoder", 1, 1)
    data_name = scanned.root.name if not scanned.manifest or scanned.manifest.parent == scanned.root \
        else scanned.manifest.stem
    run_id = run_id_for(cfg, scanned.fingerprint, encoder.info.fingerprint, data_name)
    store = RunStore(cfg.runs_path / run_id)
    if store.exists() and store.read_meta().get("status") == "complete":
        damaged = store.damaged()
        if not damaged:
            log.info("run %s is up to date; reusing it", run_id)
            os.utime(store.path / "meta.json")  # newest = last asked for: the app opens it by default
            report("write", 1, 1)
            return store
        log.warning("run %s has damaged files (%s); computing it again", run_id, "; ".join(damaged))

    records = scanned.records
    paths = [scanned.root / r.path for r in records]
    emb_result = embed_paths(encoder, paths, cfg.cache_path, batch_size=cfg.encoder.batch_size,
                             num_workers=cfg.encoder.num_workers, chunk_size=cfg.encoder.chunk_size,
                             max_pixels=cfg.data.max_image_pixels,
                             progress=lambda d, t: report("embed", d, t))
    log.info("embeddings: %d computed, %d from cache", emb_result.n_computed, emb_result.n_cached)
    bad = list(scanned.bad)
    failed = {i for i, _ in emb_result.failures}
    for i, reason in emb_result.failures:
        bad.append({"path": records[i].path, "reason": reason})
        log.warning("skipped %s: %s", records[i].path, reason)
    keep = np.array([i not in failed for i in range(len(records))], dtype=bool)
    records = [r for r, k in zip(records, keep) if k]
    paths = [p for p, k in zip(paths, keep) if k]
    emb = np.asarray(emb_result.embeddings, dtype=np.float32)[keep]
    if len(records) < 10:
        raise ValueError(f"only {len(records)} usable images under {scanned.root}; need at least 10")

    projection, proj_metrics = _projection_cached(encoder, paths, emb, cfg, scanned.fingerprint,
                                                  lambda d, t: report("projection", d, t))
    features = projection.transform(emb)

    labels = np.array([r.label for r in records])
    if len(np.unique(labels)) < 2:
        raise ValueError(f"the data under {scanned.root} has only {'real' if labels[0] == 0 else 'fake'} "
                         f"images; both classes are needed")
    generators = [r.generator for r in records]
    splits = assign_splits(labels, generators, [r.source for r in records], [r.split for r in records],
                           cfg.head.holdout_fraction, cfg.head.seed)
    train_rows = np.flatnonzero(splits == TRAIN)
    val = validation_mask(labels, train_rows, 0.15, cfg.head.seed)
    fit_rows, val_rows = train_rows[~val], train_rows[val]
    hc = cfg.head
    head = DistilledHead(dim=hc.dim, ortho_weight=hc.ortho_weight, lr=hc.lr, weight_decay=hc.weight_decay,
                         batch_size=hc.batch_size, max_epochs=hc.max_epochs, patience=hc.patience,
                         seed=hc.seed)
    head.fit(features[fit_rows], labels[fit_rows], features[val_rows], labels[val_rows],
             progress=lambda d, t: report("head", d, t))
    z, logit = head.transform(features)
    prob = 1.0 / (1.0 + np.exp(-logit.astype(np.float64)))
    held = splits == HELDOUT
    head_metrics = binary_metrics(labels[held], prob[held])
    head_metrics["per_generator"] = per_generator_metrics(labels[held], prob[held],
                                                          [g for g, h in zip(generators, held) if h])
    head_metrics["train"] = binary_metrics(labels[train_rows], prob[train_rows])
    head_metrics["orthogonality"] = orthogonality_report(head.module_.to16.weight.detach().numpy())
    head_metrics["epochs"] = head.epochs_
    head_metrics["n_train"], head_metrics["n_val"] = int(len(fit_rows)), int(len(val_rows))
    report("head", hc.max_epochs, hc.max_epochs)

    report("cells", 0, 1)
    cell_of, cells = build_cells(z, logit, labels, head.module_.classifier.weight.detach().numpy(),
                                 n_cells=cfg.cells.n_cells, seed=cfg.cells.seed)
    report("cells", 1, 1)

    report("write", 0, 1)
    pred = (logit > 0).astype(int)
    rows = []
    for i, r in enumerate(records):
        d = r.to_dict()
        d.update(split=str(splits[i]), prob_fake=round(float(prob[i]), 6), pred=int(pred[i]),
                 correct=int(pred[i] == labels[i]), cell=int(cell_of[i]))
        rows.append(d)
    partial = RunStore(cfg.runs_path / f".{run_id}.partial")
    if partial.path.exists():
        shutil.rmtree(partial.path)
    partial.path.mkdir(parents=True)
    checksums = {name + ".npy": partial.save_array(name, arr) for name, arr in
                 [("embeddings", emb), ("features", features.astype(np.float32)),
                  ("z16", z.astype(np.float32)), ("logit", logit.astype(np.float32))]}
    partial.write_records(rows)
    partial.write_cells(cells)
    _torch_save_atomic(partial.path / "projection.pt", projection.state())
    _torch_save_atomic(partial.path / "head.pt", head.state())
    for name in ("records.csv", "cells.json", "projection.pt", "head.pt"):
        checksums[name] = sha256_file(partial.path / name)
    meta = {
        "run_id": run_id, "status": "complete", "faxplainer_version": __version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "config": to_dict(cfg),
        "encoder": dataclasses.asdict(encoder.info),
        "data": {"root": str(scanned.root), "manifest": str(scanned.manifest) if scanned.manifest else None,
                 "fingerprint": scanned.fingerprint, "n_images": len(records), "n_bad": len(bad),
                 "n_real": int((labels == 0).sum()), "n_fake": int((labels == 1).sum())},
        "bad_files": bad,
        "metrics": {"projection": proj_metrics, "head": head_metrics},
        "checksums": checksums,
    }
    partial.write_meta(meta)
    if store.path.exists():
        shutil.rmtree(store.path)
    partial.path.rename(store.path)
    report("write", 1, 1)
    return store


def load_run_models(run_dir: str | Path, device: str = "cpu") -> tuple[Encoder, VisionOnlyProjection, DistilledHead]:
    """Load the encoder, projection and head a run was computed with."""
    store = RunStore(run_dir)
    meta = store.read_meta()
    cfg = from_dict(meta["config"])
    enc_cfg = dataclasses.replace(cfg.encoder, name=meta["encoder"]["name"], device=device)
    encoder = shared_encoder(enc_cfg, cfg.cache_path, log=log.info)
    if encoder.info.fingerprint != meta["encoder"]["fingerprint"]:
        log.warning("encoder weights differ from the ones run %s was computed with", store.run_id)
    projection = VisionOnlyProjection.from_state(torch.load(store.path / "projection.pt", weights_only=True))
    head = DistilledHead.from_state(torch.load(store.path / "head.pt", weights_only=True))
    return encoder, projection, head


def config_for_run(run_dir: str | Path) -> Config:
    return from_dict(RunStore(run_dir).read_meta()["config"])
