"""Pieces shared by the concrete encoders: device choice, mixed precision, weight fingerprints.

A fingerprint names the exact numbers an encoder produces: it hashes the weights, the
preprocessing and the compute precision (``precision.py`` chooses it), so cached embeddings are reused only when they would be
recomputed identically. Hashing a 300 MB checkpoint takes about a second, so file hashes are kept
in ``<cache_dir>/weights/file_hashes.json`` keyed by (path, size, mtime).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

import torch

from pipeline.store.run_store import atomic_write_json, sha256_file

from pipeline.model.encoders.base import Encoder
from pipeline.model.encoders.int8_onnx import INT8_VERSION, Int8Forward, int8_key
from pipeline.model.encoders.precision import PrecisionChoice, choose_precision


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` -> CUDA when available, else CPU; otherwise ``torch.device(device)``."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"encoder.device={device!r} but CUDA is not available on this machine; "
                           "use encoder.device=auto or cpu")
    return dev


def resolve_precision(device: torch.device, precision: str = "auto",
                      agreement_key: str | None = None) -> PrecisionChoice:
    """Embedding and relevance-map precision for an encoder on ``device`` (``precision.py``).

    ``auto``: bf16/fp16 autocast on CUDA; on a CPU, int8 or bf16 only where the CPU runs it natively
    and ``precision_agreement.json`` shows that this encoder (``agreement_key``) agrees with fp32
    and is faster; otherwise fp32. Other values are obeyed.
    """
    return choose_precision(precision, device.type, agreement_key)


def precision_fingerprint(choice: PrecisionChoice) -> dict:
    """The fingerprint parts that say which numbers this precision produces.

    ``maps_precision`` appears only where it differs from the embedding's, so that every
    fingerprint computed before maps had their own precision (and thus every embedding cache
    written then) stays valid; it must be there at all because the app's map caches are keyed
    by the encoder fingerprint.
    """
    parts = {"precision": choice.embed}
    if choice.embed == "int8":  # a new export or quantisation setting computes other numbers
        parts["int8_version"] = INT8_VERSION
    if choice.maps != choice.embed:
        parts["maps_precision"] = choice.maps
    return parts


def precision_extra(choice: PrecisionChoice) -> dict:
    """What ``EncoderInfo.extra`` records about the precision (stored in every run's meta.json)."""
    return {"precision": choice.embed, "maps_precision": choice.maps,
            "precision_reason": choice.reason}


def autocast(device: torch.device, precision: str):
    """Autocast context for ``precision`` on ``device`` (a no-op for fp32, and for int8, whose
    quantised forward runs outside torch and whose torch fallbacks, text and maps, are fp32)."""
    if precision in ("fp32", "int8"):
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def state_dict_sha256(module: torch.nn.Module) -> str:
    """sha256 over the names, shapes, dtypes and bytes of every tensor of ``module``'s state dict."""
    h = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}|{tuple(t.shape)}|{t.dtype}|".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def cached_file_sha256(path: str | Path, cache_dir: Path | None) -> str:
    """sha256 of a file's bytes, remembered under ``cache_dir`` by (path, size, mtime)."""
    path = Path(path).resolve()
    st = path.stat()
    key = f"{path}|{st.st_size}|{st.st_mtime_ns}"
    index_path = Path(cache_dir) / "weights" / "file_hashes.json" if cache_dir else None
    index: dict[str, str] = {}
    if index_path is not None and index_path.exists():
        try:
            index = json.loads(index_path.read_text())
        except (OSError, ValueError):
            index = {}  # a damaged index only costs a rehash
        if key in index:
            return index[key]
    digest = sha256_file(path)
    if index_path is not None:
        index[key] = digest
        atomic_write_json(index_path, index)
    return digest


# Bump when image decoding changes what reaches the model (v2: JPEG draft decoding to 2x input size).
DECODE_VERSION = 2


def fingerprint(parts: dict[str, Any]) -> str:
    """Short stable hash of a JSON-able description (weights hash, preprocessing, precision)."""
    parts = {**parts, "decode": DECODE_VERSION}
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


class TorchEncoder(Encoder):
    """An :class:`Encoder` whose ``embed`` runs ``self._forward`` under the chosen precision.

    ``precision`` applies to embeddings (and concept patches), ``maps_precision`` to the forward
    that relevance maps backpropagate through (:meth:`embed_for_maps`); see ``precision.py``.
    """

    precision: str
    maps_precision: str
    _forward: Callable[[torch.Tensor], torch.Tensor]
    _int8: Int8Forward | None = None

    def _set_precision(self, choice: PrecisionChoice) -> None:
        self.precision, self.maps_precision = choice.embed, choice.maps

    def _prepare_int8(self, weights_parts: dict, owner: torch.nn.Module, image_size: int,
                      cache_dir: Path | None, log: Callable[[str], None] | None = None) -> None:
        """Where embeddings are int8: the quantised forward (built on first use), cached under
        ``<cache_dir>/weights/int8/`` keyed by ``weights_parts`` (what the weights are)."""
        if self.precision != "int8":
            return
        if self.device.type != "cpu":
            raise ValueError(f"encoder.precision=int8 runs on a CPU only, not on {self.device}")
        root = Path(cache_dir) if cache_dir else Path(tempfile.gettempdir()) / "faxplainer"
        path = root / "weights" / "int8" / f"{int8_key(weights_parts)}.onnx"
        self._int8 = Int8Forward(self._forward, owner, image_size, path, log=log)

    def embed(self, batch: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) preprocessed images -> (B, D) float32 embeddings on ``self.device``.

        Runs under the caller's grad mode, so relevance code can backpropagate through it; wrap
        calls in ``torch.inference_mode()`` for plain embedding. Holds ``self.lock``, so a forward
        never runs while another thread of the process has the modules tapped. In int8, only
        calls without gradients take the quantised forward; with gradients it is fp32 torch.
        """
        return self._embed_at(batch, self.precision)

    def embed_for_maps(self, batch: torch.Tensor) -> torch.Tensor:
        return self._embed_at(batch, self.maps_precision)

    def _embed_at(self, batch: torch.Tensor, precision: str) -> torch.Tensor:
        if precision == "int8" and self._int8 is not None and not torch.is_grad_enabled():
            with self.lock:
                return self._int8(batch)
        batch = batch.to(self.device, non_blocking=True)
        with self.lock, autocast(self.device, precision):
            out = self._forward(batch)
        return out.float()


def env_path(name: str) -> str | None:
    value = os.environ.get(name, "").strip()
    return value or None
