"""The run's vision-only projection stage, started ahead of the data set's embedding.

The projection (``pipeline.model.projection``) is trained once per (encoder, images it is trained
on, settings) and cached under ``<cache_dir>/projection``. When it must be trained, only a sample of
the data set matters to it (``projection_training.sample_rows``: at most ``max_train_images`` + 120
images), so :func:`projection_ahead` embeds that sample and the word images first, then fits the
projection on a worker thread (one torch thread) while the encoder embeds the rest of the data set
on the main one: the fit's seconds hide behind the forward (issue 27; on 2 cores, 37 img/s alone,
23 img/s beside the fit, the fit 9.0 s alone and 10.9 s beside). The sample is drawn from the scan's
usable images, in the scan's order; an image that cannot be decoded is skipped by the projection as
by the embedding.
"""
from __future__ import annotations

import logging
from concurrent.futures import Executor
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from pipeline.config import TRAIN_ON, Config
from pipeline.data.scan import ScanResult
from pipeline.model.background import background_images
from pipeline.model.embed import embed_paths_for, embed_pil
from pipeline.model.encoders.base import Encoder
from pipeline.model.projection import VisionOnlyProjection
from pipeline.model.projection_training import VERSION as PROJECTION_VERSION, fit_projection, \
    render_steps, render_word_tuples, sample_rows
from pipeline.model.stopwatch import Stopwatch
from pipeline.store.run_store import atomic_write_bytes, hash_obj, torch_bytes

log = logging.getLogger("faxplainer")

Progress = Callable[[str, int, int], None]
Ready = Callable[[], tuple[VisionOnlyProjection, dict]]


def projection_source(cfg: Config, data_fingerprint: str) -> str:
    """What the projection is trained on, as its cache key names it (``projection.train_on``)."""
    train_on = cfg.projection.train_on
    if train_on not in TRAIN_ON:
        raise ValueError(f"projection.train_on must be one of {', '.join(TRAIN_ON)}, not {train_on!r}")
    parts = []
    if train_on in ("background", "both"):
        parts.append(background_images(cfg, log=log.info)[1])
    if train_on in ("data", "both"):
        parts.append(f"data-{data_fingerprint}")
    return "+".join(parts)


def projection_cache_file(encoder: Encoder, cfg: Config, trained_on: str) -> Path:
    spec = cfg.data.reencode_spec
    key = hash_obj({"enc": encoder.info.fingerprint, "data": trained_on, "cfg": cfg.fingerprint("projection"),
                    "reencode": spec.key if spec else None, "version": PROJECTION_VERSION})
    return cfg.cache_path / "projection" / f"{key}.pt"


class StageCount:
    """The projection stage's one progress count, so its bar fills once: its sample's embedding
    (``n_sample`` images), then its word images (``render_steps``)."""

    def __init__(self, report: Progress | None = None):
        self.report, self.n_sample, self.total = report, 0, 0

    def plan(self, n_sample: int, n_words: int) -> None:
        self.n_sample, self.total = n_sample, n_sample + n_words
        self(0)

    def __call__(self, done: int) -> None:
        if self.report is not None:
            self.report("projection", min(done, self.total), self.total)


def projection_images(encoder: Encoder, scanned: ScanResult, cfg: Config, count: StageCount,
                      forward: Stopwatch | None = None) -> tuple[list[Path], np.ndarray]:
    """The images the projection is trained on and their clean embeddings: the background photo
    set (``pipeline.model.background``; embedded and cached like any image), the scan's usable
    images, or both (``projection.train_on``). Only the rows the projection reads are embedded
    (cached, so the data set's embedding reuses them); the other rows are NaN. ``count`` is
    planned here and counts the images embedded."""
    train_on = cfg.projection.train_on
    background = background_images(cfg, log=log.info)[0] if train_on in ("background", "both") else []
    data = [scanned.path(r) for r in scanned.records] if train_on in ("data", "both") else []

    def data_rows(n_before: int) -> np.ndarray:  # the data set's rows in the sample
        rows = sample_rows(n_before + len(data), cfg.projection) - n_before
        return rows[rows >= 0] if data else rows[:0]

    n = len(background) + len(data)
    count.plan(len(background) + len(data_rows(len(background))), render_steps(n, cfg.projection))

    def embed(files, offset):
        result = embed_paths_for(cfg, encoder, files, progress=lambda d, t: count(offset + d))
        if forward is not None:
            forward.add(result.forward_seconds, result.n_computed)
        return result

    paths: list[Path] = []
    parts: list[np.ndarray] = []
    if background:
        result = embed(background, 0)
        failed = {j for j, _ in result.failures}
        good = [i for i in range(len(background)) if i not in failed]
        paths += [background[i] for i in good]
        parts.append(np.asarray(result.embeddings, np.float32)[good])
    if data:
        rows = data_rows(len(paths))  # drawn after the background images that loaded
        clean = np.full((len(data), encoder.info.embed_dim), np.nan, np.float32)
        if len(rows):
            clean[rows] = embed([data[i] for i in rows], len(background)).embeddings
        paths += data
        parts.append(clean)
    return paths, np.concatenate(parts)


def projection_ahead(encoder: Encoder, scanned: ScanResult, cfg: Config, report: Progress,
                     pool: Executor, forward: Stopwatch | None = None) -> Ready:
    """Start the run's projection: load it from the cache, or embed its sample and word images now
    (``forward`` times them) and fit it on ``pool``'s thread. Returns a function that waits for it
    and gives ``(projection, metrics)``; the fitted projection is cached as it finishes."""
    trained_on = projection_source(cfg, scanned.fingerprint)
    path = projection_cache_file(encoder, cfg, trained_on)
    if path.exists():
        try:
            saved = torch.load(path, weights_only=True)
            kept = VisionOnlyProjection.from_state(saved["state"]), saved["metrics"]
            return lambda: kept
        except Exception as e:  # a corrupted cache file is recomputed, never trusted
            log.warning("projection cache %s unreadable (%s); retraining", path, e)
    count = StageCount(report)
    paths, clean = projection_images(encoder, scanned, cfg, count, forward)
    tuples = render_word_tuples(
        encoder, paths, cfg.projection,
        embed_images=lambda images: embed_pil(encoder, images, batch_size=cfg.encoder.batch_size,
                                              forward_watch=forward),
        max_pixels=cfg.data.max_image_pixels, progress=lambda d, t: count(count.n_sample + d),
        transform=cfg.data.reencode_spec)  # the projection sees images as the run does

    def fit() -> tuple[VisionOnlyProjection, dict]:
        projection, metrics = fit_projection(tuples, clean, cfg.projection)
        metrics = {**metrics, "trained_on": trained_on, "n_images": len(paths)}
        atomic_write_bytes(path, torch_bytes({"state": projection.state(), "metrics": metrics}))
        return projection, metrics

    fitting = pool.submit(fit)

    def ready() -> tuple[VisionOnlyProjection, dict]:
        report("projection fit", 0, 1)
        result = fitting.result()
        report("projection fit", 1, 1)
        return result

    return ready
