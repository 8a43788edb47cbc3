"""Encoder factory: build the configured image encoder (method.md section 1).

``encoder.name``:

* ``open_clip`` - open_clip ``model`` with ``pretrained`` weights (or ``checkpoint`` /
  ``$FAXPLAINER_CLIP_CHECKPOINT``); raises :class:`WeightsUnavailableError` when they cannot be had;
* ``dinov2_standin`` - the offline DINOv2 ViT-S/14 stand-in (``dinov2_standin.py``);
* ``tiny`` - a seeded random tiny CLIP for tests;
* ``auto`` - ``open_clip`` when its weights are obtainable, else the stand-in, with the reason in
  ``info.fallback_reason`` (and logged).
"""
from __future__ import annotations

import logging
import os
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Callable

from pipeline.config import EncoderConfig

from pipeline.model.encoders.base import Encoder, EncoderInfo
from pipeline.model.encoders.dinov2_standin import DinoV2StandinEncoder, StandinUnavailableError
from pipeline.model.encoders.open_clip_encoder import (CHECKPOINT_ENV, ClipWeights, OpenClipEncoder,
                                WeightsUnavailableError, resolve_clip_weights)
from pipeline.model.encoders.tiny import TinyEncoder

__all__ = ["CHECKPOINT_ENV", "ClipWeights", "DinoV2StandinEncoder", "Encoder", "EncoderInfo",
           "OpenClipEncoder", "StandinUnavailableError", "TinyEncoder",
           "WeightsUnavailableError", "load_encoder", "resolve_clip_weights", "shared_encoder"]

ENCODER_NAMES = ("auto", "open_clip", "dinov2_standin", "tiny")
SHARED_ENCODERS = 2  # encoders kept per process (each is ~0.1-0.6 GB)
_LOG = logging.getLogger(__name__)
_shared: OrderedDict[tuple, Encoder] = OrderedDict()
_shared_lock = threading.Lock()


def fallback_message(cfg: EncoderConfig, reason: str) -> str:
    return f"CLIP ({cfg.model}/{cfg.pretrained}) unavailable, using the DINOv2 stand-in: {reason}"


def load_encoder(cfg: EncoderConfig, cache_dir: Path,
                 log: Callable[[str], None] | None = None) -> Encoder:
    """Build the encoder named by ``cfg.name``.

    Parameters
    ----------
    cfg : the ``encoder`` section of the run configuration.
    cache_dir : cache root; converted stand-in weights and checkpoint hashes go to
        ``<cache_dir>/weights/``.
    log : optional callable receiving one-line messages (e.g. why CLIP was replaced).

    Raises
    ------
    WeightsUnavailableError
        ``name: open_clip`` and the weights can be neither found nor downloaded.
    ValueError
        unknown ``name``.
    """
    cache_dir = Path(cache_dir)
    name = cfg.name
    # auto: see precision.py (bf16 on CPU only where it was measured to agree with fp32)
    precision = cfg.precision
    if name == "tiny":
        return TinyEncoder(device=cfg.device, precision="fp32" if precision == "auto" else precision,
                           cache_dir=cache_dir)
    if name == "dinov2_standin":
        return DinoV2StandinEncoder(cache_dir, device=cfg.device, precision=precision, log=log)
    if name == "open_clip":
        weights = resolve_clip_weights(cfg.model, cfg.pretrained, cfg.checkpoint)
        return OpenClipEncoder(cfg.model, weights, device=cfg.device, precision=precision,
                               cache_dir=cache_dir)
    if name == "auto":
        try:
            weights = resolve_clip_weights(cfg.model, cfg.pretrained, cfg.checkpoint)
            return OpenClipEncoder(cfg.model, weights, device=cfg.device, precision=precision,
                                   cache_dir=cache_dir)
        except WeightsUnavailableError as e:
            reason = str(e)
        message = fallback_message(cfg, reason)
        _LOG.warning(message)
        if log:
            log(message)
        return DinoV2StandinEncoder(cache_dir, device=cfg.device, precision=precision,
                                    fallback_reason=reason, log=log)
    raise ValueError(f"unknown encoder.name {name!r}; choose one of {ENCODER_NAMES}")


def _file_state(path: str | None) -> tuple | None:
    if not path:
        return None
    try:
        st = os.stat(path)
    except OSError:
        return (path, None)
    return (path, st.st_size, st.st_mtime_ns)


def shared_encoder(cfg: EncoderConfig, cache_dir: Path,
                   log: Callable[[str], None] | None = None) -> Encoder:
    """:func:`load_encoder`, but once per process for a given configuration.

    Worker processes (Celery, the app's job processes) serve many runs and explanations; loading
    the weights for each costs seconds and memory. The key covers everything that picks the
    weights, including a checkpoint file's size and mtime, so replacing the file loads it anew.
    The last :data:`SHARED_ENCODERS` encoders are kept. Callers that change the modules
    temporarily (attention taps) hold ``encoder.lock``.
    """
    checkpoint = cfg.checkpoint or os.environ.get(CHECKPOINT_ENV)
    key = (cfg.name, cfg.model, cfg.pretrained, _file_state(checkpoint), cfg.device,
           cfg.precision, str(Path(cache_dir).resolve()))
    with _shared_lock:
        encoder = _shared.get(key)
        if encoder is None:
            encoder = load_encoder(cfg, cache_dir, log=log)
            encoder.lock  # noqa: B018  (created now, under the lock, never by two threads)
            _shared[key] = encoder
            while len(_shared) > SHARED_ENCODERS:
                _shared.popitem(last=False)
        else:
            _shared.move_to_end(key)
            if log and encoder.info.fallback_reason:  # each run's log still says why
                log(fallback_message(cfg, encoder.info.fallback_reason))
    return encoder
