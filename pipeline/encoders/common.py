"""Pieces shared by the concrete encoders: device choice, mixed precision, weight fingerprints.

A fingerprint names the exact numbers an encoder produces: it hashes the weights, the
preprocessing and the compute precision, so cached embeddings are reused only when they would be
recomputed identically. Hashing a 300 MB checkpoint takes about a second, so file hashes are kept
in ``<cache_dir>/weights/file_hashes.json`` keyed by (path, size, mtime).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path
from typing import Any, Callable

import torch

from pipeline.store import atomic_write_json, sha256_file

from .base import Encoder


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` -> CUDA when available, else CPU; otherwise ``torch.device(device)``."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"encoder.device={device!r} but CUDA is not available on this machine; "
                           "use encoder.device=auto or cpu")
    return dev


def resolve_precision(device: torch.device, precision: str = "auto") -> str:
    """``auto`` -> bf16 autocast on CUDA (fp16 where bf16 is unsupported), fp32 on CPU.

    CPU stays fp32 by default: bf16 autocast on CPU is measured in ``bench/embed.py`` and only
    worth switching on by hand (``precision="bf16"``) where that benchmark shows a gain.
    """
    if precision != "auto":
        if precision not in ("fp32", "bf16", "fp16"):
            raise ValueError(f"precision must be auto, fp32, bf16 or fp16, not {precision!r}")
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "fp32"


def autocast(device: torch.device, precision: str):
    """Autocast context for ``precision`` on ``device`` (a no-op for fp32)."""
    if precision == "fp32":
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
    """An :class:`Encoder` whose ``embed`` runs ``self._forward`` under the chosen precision."""

    precision: str
    _forward: Callable[[torch.Tensor], torch.Tensor]

    def embed(self, batch: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) preprocessed images -> (B, D) float32 embeddings on ``self.device``.

        Runs under the caller's grad mode, so relevance code can backpropagate through it; wrap
        calls in ``torch.inference_mode()`` for plain embedding. Holds ``self.lock``, so a forward
        never runs while another thread of the process has the modules tapped.
        """
        batch = batch.to(self.device, non_blocking=True)
        with self.lock, autocast(self.device, self.precision):
            out = self._forward(batch)
        return out.float()


def env_path(name: str) -> str | None:
    value = os.environ.get(name, "").strip()
    return value or None
