"""CLIP image encoders through open_clip (Radford et al. 2021; the seed paper uses ViT-B/32).

``OpenClipEncoder`` wraps any open_clip architecture with a pretrained tag (``ViT-B-32`` /
``openai`` by default), a local checkpoint file, or seeded random weights. Preprocessing is
open_clip's own evaluation transform for those weights (CLIP: shorter side to 224 bicubic, centre
crop, CLIP mean/std). The embedding is the image tower's projected output (512-d for ViT-B/32),
in the same space as ``encode_text``.

``resolve_clip_weights`` finds the weights without hanging offline: a configured checkpoint, then
open_clip's and Hugging Face's download caches, then a quick reachability probe of the download
host (a few seconds at most) before letting open_clip download. When none works it raises
:class:`WeightsUnavailableError`, which says which weights, where they were looked for and how to
provide them.
"""
from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import open_clip
import torch

from pipeline.model.encoders.base import EncoderInfo
from pipeline.model.encoders.common import (TorchEncoder, autocast, cached_file_sha256, env_path, fingerprint,
                     precision_extra, precision_fingerprint, resolve_device, resolve_precision,
                     state_dict_sha256)

CHECKPOINT_ENV = "FAXPLAINER_CLIP_CHECKPOINT"
_RANDOM_TAGS = {"", "none", "random"}
_PREPROCESS_KEYS = ("mean", "std", "interpolation", "resize_mode")


class WeightsUnavailableError(RuntimeError):
    """Pretrained CLIP weights could not be found locally nor downloaded."""


@dataclass(frozen=True)
class ClipWeights:
    """Where an open_clip model's weights come from.

    ``pretrained`` is what open_clip receives (a tag, a file path, or None for random weights);
    ``tag`` is the pretrained tag whose settings (QuickGELU, mean/std) apply to the weights;
    ``label`` is the human-readable source recorded in ``EncoderInfo.weights``; ``published``
    says the file is open_clip's published release for ``tag`` (so the tag identifies it and the
    file need not be hashed).
    """

    pretrained: str | None
    tag: str | None
    label: str
    published: bool = False  # the tag's published weights (downloaded or from a download cache)

    @property
    def is_file(self) -> bool:
        return self.pretrained is not None and Path(self.pretrained).is_file()


def _how_to_provide(model: str, tag: str | None) -> str:
    what = f"the open_clip checkpoint of {model}" + (f" / {tag}" if tag else "")
    return (f"Provide {what} with `encoder.checkpoint: /path/to/file` in the config or the "
            f"environment variable {CHECKPOINT_ENV}=/path/to/file (for ViT-B-32/openai: "
            "open_clip_pytorch_model.bin from the Hugging Face repo "
            "timm/vit_base_patch32_clip_224.openai), or run once with internet access so that "
            "open_clip can download and cache it.")


def _hf_cached_file(hf_hub: str) -> str | None:
    """The weights file of an open_clip ``hf_hub`` entry if it is already in the HF cache."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    # open_clip's convention: "org/repo/" (default file names) or "org/repo/file.bin".
    repo_id, filename = os.path.split(hf_hub)
    names = ([filename] if filename else []) + ["open_clip_model.safetensors",
                                                "open_clip_pytorch_model.bin"]
    for name in names:
        try:
            found = try_to_load_from_cache(repo_id=repo_id, filename=name)
        except Exception:  # malformed repo id or cache: treat as not cached
            found = None
        if isinstance(found, str) and Path(found).is_file():
            return found
    return None


def _url_cached_file(url: str) -> str | None:
    """open_clip's own download cache for URL weights (``~/.cache/clip/<file name>``)."""
    candidate = Path("~/.cache/clip").expanduser() / os.path.basename(url)
    return str(candidate) if candidate.is_file() else None


def _host_reachable(host: str, timeout: float) -> tuple[bool, str]:
    """TCP connect to ``host:443`` in a daemon thread, so a stuck DNS lookup cannot hang us."""
    result: list[tuple[bool, str]] = []

    def probe():
        try:
            socket.create_connection((host, 443), timeout=timeout).close()
            result.append((True, ""))
        except OSError as e:
            result.append((False, f"{type(e).__name__}: {e}"))

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout)
    if not result:
        return False, f"no answer within {timeout:.0f} s"
    return result[0]


def resolve_clip_weights(model: str, pretrained: str | None, checkpoint: str | None = None,
                         probe_timeout: float = 3.0) -> ClipWeights:
    """Find the weights for ``model`` quickly, or raise :class:`WeightsUnavailableError`.

    Parameters
    ----------
    model : open_clip architecture name, e.g. ``"ViT-B-32"``.
    pretrained : open_clip pretrained tag (``"openai"``), a file path, or None/``"none"`` for
        random weights.
    checkpoint : local checkpoint file; falls back to ``$FAXPLAINER_CLIP_CHECKPOINT``. It is taken
        to hold the weights named by ``pretrained`` when that is a known tag (so the tag's
        QuickGELU and mean/std settings apply), otherwise the architecture's defaults apply.
    probe_timeout : seconds allowed for checking that the download host answers.
    """
    checkpoint = checkpoint or env_path(CHECKPOINT_ENV)
    tag = None if pretrained is None or str(pretrained).lower() in _RANDOM_TAGS else str(pretrained)
    pcfg = open_clip.get_pretrained_cfg(model, tag) if tag else {}
    known_tag = tag if pcfg else None

    if checkpoint:
        path = Path(checkpoint).expanduser()
        if not path.is_file():
            raise WeightsUnavailableError(
                f"CLIP checkpoint {path} (from encoder.checkpoint or ${CHECKPOINT_ENV}) does not "
                f"exist or is not a file. {_how_to_provide(model, tag)}")
        return ClipWeights(str(path.resolve()), known_tag, str(path.resolve()))
    if tag is None:
        return ClipWeights(None, None, "random")
    if not pcfg:
        path = Path(tag).expanduser()
        if path.is_file():
            return ClipWeights(str(path.resolve()), None, str(path.resolve()))
        raise WeightsUnavailableError(
            f"{tag!r} is neither a pretrained tag of open_clip model {model} (known tags: "
            f"{open_clip.list_pretrained_tags_by_model(model)}) nor an existing file. "
            f"{_how_to_provide(model, None)}")

    looked = [f"encoder.checkpoint / ${CHECKPOINT_ENV} (not set)"]
    hf_hub, url = pcfg.get("hf_hub", ""), pcfg.get("url", "")
    if hf_hub:
        cached = _hf_cached_file(hf_hub)
        looked.append(f"Hugging Face cache for {hf_hub.rstrip('/')}")
        if cached:
            return ClipWeights(cached, tag, f"{tag} ({cached})", published=True)
    if url:
        cached = _url_cached_file(url)
        looked.append(f"open_clip cache ~/.cache/clip/{os.path.basename(url)}")
        if cached:
            return ClipWeights(cached, tag, f"{tag} ({cached})", published=True)

    # Not cached: download only when the host open_clip will use answers (it prefers the HF hub).
    use_hf = bool(hf_hub) and open_clip.pretrained.has_hf_hub()
    if use_hf and os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        raise WeightsUnavailableError(
            f"CLIP weights {model}/{tag} are not cached and HF_HUB_OFFLINE is set. Looked in: "
            f"{'; '.join(looked)}. {_how_to_provide(model, tag)}")
    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname if use_hf \
        else urlparse(url).hostname
    ok, why = _host_reachable(host or "", probe_timeout)
    if not ok:
        raise WeightsUnavailableError(
            f"CLIP weights {model}/{tag} are not cached and cannot be downloaded ({host} "
            f"unreachable: {why}). Looked in: {'; '.join(looked)}. {_how_to_provide(model, tag)}")
    return ClipWeights(tag, tag, tag, published=True)


def _force_kwargs(tag: str | None, model: str) -> dict:
    """QuickGELU and preprocessing settings that a tag implies. open_clip 3.x only *warns* when
    ``ViT-B-32`` meets the ``openai`` weights (trained with QuickGELU), and knows nothing of the tag
    when given a file holding them, so both paths force the tag's settings here."""
    pcfg = open_clip.get_pretrained_cfg(model, tag) if tag else {}
    kwargs: dict = {"force_quick_gelu": bool(pcfg.get("quick_gelu", False))}
    for key in _PREPROCESS_KEYS:
        if key in pcfg:
            kwargs[f"image_{key}"] = pcfg[key]
    return kwargs


@contextlib.contextmanager
def _quiet_random_init_warning():
    """Drop open_clip's "initialized randomly" root-logger warning: random weights are chosen
    here on purpose (tiny test model, benchmarks), and ``info.weights`` already says so."""
    def keep(record: logging.LogRecord) -> bool:
        return "initialized randomly" not in record.getMessage()

    root = logging.getLogger()
    root.addFilter(keep)
    try:
        yield
    finally:
        root.removeFilter(keep)


class OpenClipEncoder(TorchEncoder):
    """An open_clip CLIP model: image embeddings, attention blocks and the text tower.

    Parameters
    ----------
    model_name : open_clip architecture (``open_clip.list_models()``).
    weights : from :func:`resolve_clip_weights`; ``ClipWeights(None, None, "random")`` gives
        seeded random weights (same cost as the real model: used by benchmarks and tests).
    device : ``"auto"`` (CUDA when available), ``"cpu"`` or ``"cuda"``.
    precision : ``"auto"`` (bf16/fp16 autocast on CUDA; on CPU see ``precision.py``), ``"fp32"``,
        ``"bf16"``, ``"fp16"``, ``"int8"`` (CPU, ``int8_onnx.py``).
    cache_dir : where checkpoint-file hashes are remembered (``<cache_dir>/weights/``).
    seed : seed of the random initialisation (only used for random weights).
    name : recorded in ``EncoderInfo.name``.
    """

    family = "open_clip"

    def __init__(self, model_name: str = "ViT-B-32", weights: ClipWeights | None = None, *,
                 device: str | torch.device = "auto", precision: str = "auto",
                 cache_dir: Path | None = None, seed: int = 0, name: str = "open_clip"):
        weights = weights or ClipWeights(None, None, "random")
        self.device = resolve_device(device)
        force = _force_kwargs(weights.tag, model_name)
        try:
            # Random init happens here: seed it without disturbing the caller's RNG stream.
            with torch.random.fork_rng(devices=[]), _quiet_random_init_warning():
                torch.manual_seed(seed)
                model, _, preprocess = open_clip.create_model_and_transforms(
                    model_name, pretrained=weights.pretrained, device="cpu", **force)
        except Exception as e:
            if weights.pretrained and not weights.is_file:  # a tag whose download failed
                raise WeightsUnavailableError(
                    f"downloading CLIP weights {model_name}/{weights.pretrained} failed: {e}. "
                    f"{_how_to_provide(model_name, weights.pretrained)}") from e
            if weights.is_file:
                raise RuntimeError(f"cannot load CLIP checkpoint {weights.pretrained} into "
                                   f"{model_name}: {e}") from e
            raise
        self.model = model.to(self.device).eval()
        self.preprocess = preprocess
        self._forward = self.model.visual
        self._tokenizer = open_clip.get_tokenizer(model_name)

        if weights.published:
            weights_id = f"tag:{model_name}/{weights.tag}"  # published weights never change
        elif weights.is_file:
            weights_id = f"file:{cached_file_sha256(weights.pretrained, cache_dir)}"
        else:
            weights_id = f"random:{state_dict_sha256(self.model.visual)}"
        # bf16 agreement is measured per set of real weights (never for random ones)
        self.agreement_key = None if weights.pretrained is None else f"{name}/{model_name}/{weights_id}"
        choice = resolve_precision(self.device, precision, self.agreement_key)
        self._set_precision(choice)
        image_size = int(self.model.visual.image_size[0])
        embed_dim = int(self.model.visual.output_dim)
        weights_parts = {"family": self.family, "model": model_name, "weights": weights_id,
                         "quick_gelu": force["force_quick_gelu"], "image_size": image_size,
                         "preprocess": self.model.visual.preprocess_cfg}
        self.info = EncoderInfo(
            name=name, model=model_name,
            weights=f"random(seed={seed})" if weights.pretrained is None else weights.label,
            embed_dim=embed_dim, image_size=image_size,
            fingerprint=fingerprint({**weights_parts, **precision_fingerprint(choice)}),
            extra={"device": str(self.device), **precision_extra(choice)},
        )
        self._prepare_int8(weights_parts, self.model.visual, image_size, cache_dir)

    @property
    def visual(self) -> torch.nn.Module:
        return self.model.visual

    @property
    def blocks(self) -> list[torch.nn.Module]:
        return list(self.model.visual.transformer.resblocks)

    @property
    def patch_grid(self) -> tuple[int, int]:
        rows, cols = self.model.visual.grid_size
        return int(rows), int(cols)

    @property
    def has_text_tower(self) -> bool:
        return True

    def encode_text(self, texts: list[str]) -> torch.Tensor:
        """(T,) strings -> (T, D) float32 text embeddings on ``self.device`` (not normalised)."""
        tokens = self._tokenizer(list(texts)).to(self.device)
        with autocast(self.device, self.precision):
            out = self.model.encode_text(tokens)
        return out.float()
