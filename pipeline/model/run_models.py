"""One front door for a run's models: its encoder, frozen projection and head, and its config.

Every use of a finished run's models goes through :func:`load_run_models`, as open_clip's
``create_model_and_transforms`` is its single front door: relevance maps, the deletion check and
concepts (``pipeline.explain.cache``), the CLI's explanations, and scoring new images. It loads the
encoder the run was computed with (shared per process, ``pipeline.model.encoders.shared_encoder``) and
the run's ``projection.pt`` and ``head.pt`` (checked against their checksums by
``pipeline.store.run_store.RunStore``), frozen and on the encoder's device, and keeps the last two runs per
process, keyed by the run folder, the models' fingerprint and the device.

The functions that explain keep their explicit ``(encoder, projection, head, ...)`` arguments
(``pipeline.explain.relevance``, ``pipeline.explain.concepts``); :class:`RunModels` only bundles them.

An applied set's folder (``<run>/applied/<name>``, ``pipeline.store.run_store.AppliedStore``) stands for its
run here: its images were scored with the run's models, so :func:`load_run_models` and
:func:`model_fingerprint` of the set are the run's (:func:`scoring_run`), and the explanations of
its images (``pipeline.explain.cache``) use the same encoder, projection and head.

``load_run_models(run, lazy_encoder=True)`` gives the run's encoder as an :class:`EncoderOnDemand`,
loaded on first use: scoring images whose embeddings are cached (``pipeline.generalise.apply``) never loads it
(the stand-in takes ~10 s to load on a loaded 2-core machine).
"""
from __future__ import annotations

import dataclasses
import functools
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image
from torch import nn

from pipeline.config import Config
from pipeline.config import EncoderConfig
from pipeline.model.encoders import EncoderInfo, shared_encoder
from pipeline.model.encoders.common import resolve_device
from pipeline.model.encoders.precision import pinned
from pipeline.model.head import DistilledHead
from pipeline.model.projection import VisionOnlyProjection
from pipeline.store.derived import model_fingerprint, scoring_run  # torch-free: derived results' keys
from pipeline.store.run_store import HEAD, PROJECTION, ArtifactError, RunStore

log = logging.getLogger("faxplainer")

SCORE_BATCH = 65536  # embeddings scored per step (the head and projection are small)


@dataclass(frozen=True, eq=False)
class RunModels:
    """The models a run was computed with, ready for ``pipeline.explain.relevance`` and for scoring.

    ``lock`` (the encoder's) serialises explanations that share these modules within a process:
    attention taps temporarily replace the encoder's attention forwards, so two threads must not
    tap at once, even for two runs on the same (shared) encoder.
    """

    encoder: object  # pipeline.model.encoders.base.Encoder
    projection: nn.Module  # (B, D) embeddings -> (B, 256) vision-only features
    head: nn.Module  # (B, 256) features -> ((B, 16) z, (B,) logit)
    config: Config | None = None  # the run's configuration

    @property
    def lock(self):
        return self.encoder.lock

    @property
    def device(self) -> torch.device:
        return self.encoder.device

    def score(self, embeddings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Encoder embeddings (N, D) -> (z16 (N, K), logit (N,)) as float32 numpy arrays."""
        emb = np.asarray(embeddings, dtype=np.float32)
        z_parts, logit_parts = [], []
        with torch.inference_mode():
            for start in range(0, len(emb), SCORE_BATCH):
                x = torch.as_tensor(emb[start:start + SCORE_BATCH], device=self.device)
                z, logit = self.head(self.projection(x))
                z_parts.append(z.float().cpu().numpy())
                logit_parts.append(logit.float().cpu().numpy())
        if not z_parts:
            dim = self.head.to16.out_features if hasattr(self.head, "to16") else 0
            return np.zeros((0, dim), np.float32), np.zeros(0, np.float32)
        return np.concatenate(z_parts), np.concatenate(logit_parts)

    def score_images(self, images: Sequence[Image.Image], batch_size: int | None = None
                     ) -> tuple[np.ndarray, np.ndarray]:
        """RGB images -> (z16, logit), through the encoder's own preprocessing (no cache)."""
        from pipeline.model.embed import embed_pil

        size = batch_size or (self.config.encoder.batch_size if self.config else 64)
        return self.score(embed_pil(self.encoder, list(images), batch_size=size))


class EncoderOnDemand:
    """A run's encoder that is loaded (``shared_encoder``) on first use of anything but ``info``
    and ``device``, which come from the run's ``meta.json`` and config.

    Raises ``ValueError`` on loading when the encoder now available is not the one the run
    recorded (another fingerprint): its embeddings would be cached and scored as the run's.
    """

    def __init__(self, cfg: EncoderConfig, cache_path: Path, info: EncoderInfo):
        self.info = info
        self.device = resolve_device(cfg.device)
        self._cfg, self._cache_path = cfg, cache_path
        self._encoder = None
        self._load_lock = threading.Lock()

    @property
    def is_loaded(self) -> bool:
        return self._encoder is not None

    def loaded(self):
        """The real encoder (``pipeline.model.encoders.base.Encoder``), loaded once."""
        with self._load_lock:
            if self._encoder is None:
                encoder = shared_encoder(self._cfg, self._cache_path, log=log.info)
                if encoder.info.fingerprint != self.info.fingerprint:
                    raise ValueError(f"the {self._cfg.name} encoder available now (fingerprint "
                                     f"{encoder.info.fingerprint}) is not the one the run used "
                                     f"({self.info.fingerprint}); its embeddings cannot be scored "
                                     f"with the run's head")
                self._encoder = encoder
            return self._encoder

    def __getattr__(self, name):  # everything else is the real encoder's
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.loaded(), name)


def recorded_encoder_info(meta: dict) -> EncoderInfo:
    """The run's ``meta.json`` -> ``encoder`` as :class:`EncoderInfo`."""
    recorded = meta.get("encoder") or {}
    fields = {f.name for f in dataclasses.fields(EncoderInfo)}
    try:
        return EncoderInfo(**{k: v for k, v in recorded.items() if k in fields})
    except TypeError as e:
        raise ArtifactError(f"meta.json of run {meta.get('run_id')} does not describe its encoder "
                            f"fully ({e})") from e


def frozen(module: nn.Module, device) -> nn.Module:
    """``module`` in eval mode on ``device`` with gradients off for its parameters (the maps need
    gradients of the activations only)."""
    module = module.to(device).eval()
    for p in module.parameters():
        p.requires_grad_(False)
    return module


def load_run_models(run_dir: str | Path, device: str | None = None, lazy_encoder: bool = False) -> RunModels:
    """The models of the run in ``run_dir``, loaded once per process (the last two runs kept).

    Parameters
    ----------
    run_dir : the run folder (an applied set's folder: its run's models).
    device : ``cpu``, ``cuda`` or ``auto``; default: the run's ``encoder.device``.
    lazy_encoder : the encoder is an :class:`EncoderOnDemand` (loaded on first use).

    Raises
    ------
    pipeline.store.run_store.ArtifactError
        A model file is missing or fails its checksum.
    """
    run = scoring_run(Path(run_dir).resolve())
    device = device or RunStore(run).config().encoder.device
    return _load(str(run), model_fingerprint(run), device, lazy_encoder)


@functools.lru_cache(maxsize=2)
def _load(run_dir: str, fingerprint: str, device: str, lazy_encoder: bool = False) -> RunModels:
    return read_models(run_dir, device, lazy_encoder)


def run_encoder_config(cfg: EncoderConfig, meta: dict, device: str) -> EncoderConfig:
    """The encoder settings that give back the run's encoder on ``device``: its recorded name and,
    on a CPU where the run asked for ``precision: auto``, its recorded precisions (``auto`` may
    choose otherwise now, after a newer agreement table: the run's numbers stay its own)."""
    recorded = meta.get("encoder") or {}
    enc_cfg = dataclasses.replace(cfg, name=recorded.get("name") or cfg.name, device=device)
    pin = pinned(recorded.get("extra") or {})
    if cfg.precision == "auto" and pin and resolve_device(device).type == "cpu":
        enc_cfg = dataclasses.replace(enc_cfg, precision=pin)
    return enc_cfg


def read_models(run_dir: str | Path, device: str, lazy_encoder: bool = False) -> RunModels:
    """Load the run's models from disk (uncached; :func:`load_run_models` keeps them)."""
    store = RunStore(run_dir)
    meta = store.read_meta()
    cfg = store.config()
    enc_cfg = run_encoder_config(cfg.encoder, meta, device)
    if lazy_encoder:
        encoder = EncoderOnDemand(enc_cfg, cfg.cache_path, recorded_encoder_info(meta))
    else:
        encoder = shared_encoder(enc_cfg, cfg.cache_path, log=log.info)
        if encoder.info.fingerprint != (meta.get("encoder") or {}).get("fingerprint"):
            log.warning("encoder weights differ from the ones run %s was computed with", store.run_id)
    projection = VisionOnlyProjection.from_state(store.load_torch(PROJECTION)).torch_module()
    head = DistilledHead.from_state(store.load_torch(HEAD)).torch_module()
    return RunModels(encoder, frozen(projection, encoder.device), frozen(head, encoder.device), cfg)


def clear_cache() -> None:
    """Forget the loaded runs (tests; a process that must reload changed weights)."""
    _load.cache_clear()
