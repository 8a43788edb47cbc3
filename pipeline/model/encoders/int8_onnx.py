"""The int8 embedding path: an ONNX export of an encoder's forward, dynamically quantised to int8.

Why ONNX Runtime and not torch's own dynamic quantisation: on the 2-core Xeon with ``avx512_vnni``
and ``amx_bf16`` this project runs on, the stand-in's forward (batch 32) does about 2.2x fp32
eager under ONNX Runtime's int8 kernels, against 1.66x for ``torch.ao.quantization.quantize_dynamic``
of the Linear layers (``bench/embed.py --precisions fp32,bf16,int8`` prints both).

What is quantised: every MatMul with a weight (qkv, attention projection, fc1, fc2), weights per
output channel (``per_channel=True``: the worst face's cosine to fp32 rises from 0.995 to 0.998
over per-tensor scales), activations per tensor at run time (dynamic, so no calibration set).
The products of two activations (q.k^T, attention @ v) stay fp32. Relevance maps need gradients
and never use this path (``TorchEncoder.embed_for_maps``).

The quantised model is cached once per (weights, preprocessing-free forward, torch and ONNX
Runtime versions) under ``<cache_dir>/weights/int8/<key>.onnx``; exporting and quantising takes
about 5 s for the stand-in and runs only when an image has to be embedded in int8.
"""
from __future__ import annotations

import hashlib
import json
import tempfile
import threading
import warnings
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from pipeline.store.run_store import atomic_write_bytes

# Bump when the export or the quantisation settings change what the int8 model computes.
INT8_VERSION = 1
EXPORT_BATCH = 2  # the traced example batch; the batch axis is dynamic


def int8_key(weights_parts: dict) -> str:
    """Cache key of the quantised model: what the weights are, and the tools that built it."""
    import onnxruntime

    parts = {"weights": weights_parts, "torch": torch.__version__, "onnxruntime": onnxruntime.__version__,
             "version": INT8_VERSION}
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


class _Forward(torch.nn.Module):
    """Wraps an encoder's ``_forward`` callable as a module, so that it can be exported."""

    def __init__(self, forward: Callable[[torch.Tensor], torch.Tensor], owner: torch.nn.Module):
        super().__init__()
        self.owner = owner  # registers the parameters the forward uses
        self._fn = forward

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._fn(x)


def build_int8_model(forward: Callable[[torch.Tensor], torch.Tensor], owner: torch.nn.Module,
                     image_size: int, target: Path) -> Path:
    """Export ``forward`` (fp32, CPU) to ONNX, quantise it dynamically to int8, write ``target``."""
    import warnings

    from onnxruntime.quantization import QuantType, quantize_dynamic

    module = _Forward(forward, owner).eval()
    example = torch.zeros(EXPORT_BATCH, 3, image_size, image_size)
    with tempfile.TemporaryDirectory() as tmp:
        fp32_file, int8_file = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        with warnings.catch_warnings(), torch.enable_grad():
            # The TorchScript exporter: the dynamo one needs onnxscript, not installed here. Grad
            # on keeps nn.MultiheadAttention (open_clip) off its fused path, which ONNX lacks.
            warnings.simplefilter("ignore")
            torch.onnx.export(module, (example,), str(fp32_file), input_names=["pixels"],
                              output_names=["embedding"], opset_version=17, dynamo=False,
                              dynamic_axes={"pixels": {0: "batch"}, "embedding": {0: "batch"}})
        quantize_dynamic(str(fp32_file), str(int8_file), weight_type=QuantType.QInt8, per_channel=True)
        atomic_write_bytes(target, int8_file.read_bytes())
    return target


class Int8Forward:
    """An ONNX Runtime session of the quantised forward: (B, 3, H, W) tensor -> (B, D) float32.

    Built lazily on the first call (so an encoder whose images are all cached never exports),
    with as many intra-op threads as torch uses. A cached model that ONNX Runtime cannot read is
    deleted and rebuilt (with a warning).
    """

    def __init__(self, forward: Callable[[torch.Tensor], torch.Tensor], owner: torch.nn.Module,
                 image_size: int, path: Path, log: Callable[[str], None] | None = None):
        self._forward, self._owner, self._size, self.path, self._log = forward, owner, image_size, path, log
        self._session = None
        self._lock = threading.Lock()

    def session(self):
        with self._lock:
            if self._session is None:
                if not self.path.is_file():
                    self._build()
                try:
                    self._session = self._open()
                except Exception as e:  # a damaged cache file is rebuilt, never trusted
                    warnings.warn(f"int8 model {self.path} is unreadable ({type(e).__name__}: {e}); "
                                  "rebuilding it", stacklevel=3)
                    self.path.unlink(missing_ok=True)
                    self._build()
                    self._session = self._open()
            return self._session

    def _build(self) -> None:
        if self._log:
            self._log(f"exporting and quantising the encoder to int8 ({self.path})")
        build_int8_model(self._forward, self._owner, self._size, self.path)

    def _open(self):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        options.inter_op_num_threads = 1
        # No busy-waiting between operators: on 2 cores shared with decoding threads (and other
        # jobs) spinning threads steal the cores they wait for (measured at load 9: 2.35 vs 1.88 img/s).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        return ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        pixels = np.ascontiguousarray(batch.detach().cpu().numpy(), dtype=np.float32)
        (out,) = self.session().run(None, {"pixels": pixels})
        return torch.from_numpy(out)
