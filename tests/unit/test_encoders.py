"""Encoders: the tiny CLIP, checkpoint loading, weight resolution offline, preprocessing."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import open_clip
import pytest
import torch
from open_clip.transformer import ResidualAttentionBlock
from PIL import Image

import pipeline.model.encoders.common as common
from pipeline.config import EncoderConfig
from pipeline.model.encoders import (CHECKPOINT_ENV, OpenClipEncoder, TinyEncoder,
                               WeightsUnavailableError, load_encoder, resolve_clip_weights)
from pipeline.model.encoders.dinov2_standin import IMAGENET_MEAN, IMAGENET_STD, standin_preprocess
from pipeline.model.encoders.open_clip_encoder import _force_kwargs
from pipeline.model.encoders.tiny import TINY_MODEL_NAME, register_tiny_config

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@pytest.fixture()
def batch():
    return torch.randn(4, 3, 224, 224, generator=torch.Generator().manual_seed(1))


@pytest.fixture()
def offline(monkeypatch, tmp_path):
    """No CLIP weights anywhere: empty HF and open_clip caches, HF offline, no checkpoint env."""
    import huggingface_hub.constants as hf_constants

    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv(CHECKPOINT_ENV, raising=False)


def embed(enc, x):
    with torch.inference_mode():
        return enc.embed(x).numpy()


# -- tiny model --------------------------------------------------------------------------------
def test_tiny_is_a_real_open_clip_model(tiny, batch):
    assert tiny.family == "open_clip"
    assert tiny.visual is tiny.model.visual
    assert len(tiny.blocks) == 2 and all(isinstance(b, ResidualAttentionBlock) for b in tiny.blocks)
    assert list(tiny.blocks) == list(tiny.model.visual.transformer.resblocks)
    assert tiny.patch_grid == (7, 7)
    out = embed(tiny, batch)
    assert out.shape == (4, 32) and out.dtype == np.float32
    with torch.inference_mode():  # embed is the CLIP image embedding
        np.testing.assert_allclose(out, tiny.model.encode_image(batch).numpy(), atol=1e-6)


def test_tiny_is_deterministic_per_seed(tiny, batch):
    again, other = TinyEncoder(seed=0), TinyEncoder(seed=1)
    np.testing.assert_array_equal(embed(tiny, batch), embed(again, batch))
    assert tiny.info.fingerprint == again.info.fingerprint
    assert not np.allclose(embed(tiny, batch), embed(other, batch))
    assert other.info.fingerprint != tiny.info.fingerprint
    assert tiny.info.weights == "random(seed=0)" and tiny.info.embed_dim == 32


def test_tiny_building_leaves_global_rng_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    TinyEncoder(seed=5)
    assert torch.equal(torch.rand(3), expected)


def test_text_tower(tiny):
    assert tiny.has_text_tower
    with torch.inference_mode():
        t = tiny.encode_text(["a photo of a cat", "a photo of a dog", "a photo of a cat"]).numpy()
    assert t.shape == (3, 32)
    np.testing.assert_array_equal(t[0], t[2])
    assert not np.allclose(t[0], t[1])


# -- preprocessing -------------------------------------------------------------------------------
def test_clip_preprocessing_is_clips(tiny):
    """A flat grey 300x200 image -> 224x224 of (128/255 - CLIP mean) / CLIP std per channel."""
    x = tiny.preprocess(Image.new("RGB", (300, 200), (128, 128, 128)))
    assert tuple(x.shape) == (3, 224, 224)
    expected = (128 / 255 - np.array(CLIP_MEAN)) / np.array(CLIP_STD)
    np.testing.assert_allclose(x.mean(dim=(1, 2)).numpy(), expected, atol=1e-5)
    np.testing.assert_allclose(x.std(dim=(1, 2)).numpy(), 0, atol=1e-5)


def test_clip_preprocessing_crops_the_centre(tiny):
    """Wide image: left third red, right third blue, middle green -> the crop is all green."""
    im = np.zeros((224, 672, 3), np.uint8)
    im[:, :224, 0] = 255
    im[:, 224:448, 1] = 255
    im[:, 448:, 2] = 255
    x = tiny.preprocess(Image.fromarray(im)).numpy()
    green = (np.array([0, 1, 0]) - np.array(CLIP_MEAN)) / np.array(CLIP_STD)
    np.testing.assert_allclose(x[:, 10:-10, 10:-10].mean(axis=(1, 2)), green, atol=1e-4)


def test_standin_preprocessing_uses_imagenet_stats():
    x = standin_preprocess()(Image.new("RGB", (500, 260), (200, 100, 50)))
    assert tuple(x.shape) == (3, 224, 224)
    expected = (np.array([200, 100, 50]) / 255 - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)
    np.testing.assert_allclose(x.mean(dim=(1, 2)).numpy(), expected, atol=1e-5)


# -- checkpoints -----------------------------------------------------------------------------------
def test_local_checkpoint_roundtrip(tmp_path, batch, offline):
    source = TinyEncoder(seed=3)
    ckpt = tmp_path / "tiny.pt"
    torch.save(source.model.state_dict(), ckpt)
    register_tiny_config()
    cfg = EncoderConfig(name="open_clip", model=TINY_MODEL_NAME, pretrained="none",
                        checkpoint=str(ckpt), device="cpu")
    loaded = load_encoder(cfg, tmp_path / "cache")
    assert isinstance(loaded, OpenClipEncoder) and loaded.info.weights == str(ckpt.resolve())
    np.testing.assert_array_equal(embed(loaded, batch), embed(source, batch))
    assert not np.allclose(embed(loaded, batch), embed(TinyEncoder(seed=0), batch))
    with torch.inference_mode():
        np.testing.assert_array_equal(loaded.encode_text(["x"]).numpy(),
                                      source.encode_text(["x"]).numpy())
    # the file's hash is remembered, and the fingerprint follows the bytes
    assert (tmp_path / "cache" / "weights" / "file_hashes.json").exists()
    torch.save(TinyEncoder(seed=4).model.state_dict(), ckpt)
    assert load_encoder(cfg, tmp_path / "cache").info.fingerprint != loaded.info.fingerprint


def test_checkpoint_from_environment_and_auto(tmp_path, batch, offline, monkeypatch):
    source = TinyEncoder(seed=7)
    ckpt = tmp_path / "tiny.safetensors"
    from safetensors.torch import save_file
    save_file(source.model.state_dict(), str(ckpt))
    register_tiny_config()
    monkeypatch.setenv(CHECKPOINT_ENV, str(ckpt))
    enc = load_encoder(EncoderConfig(name="auto", model=TINY_MODEL_NAME, device="cpu"), tmp_path)
    assert enc.info.name == "open_clip" and enc.info.fallback_reason is None
    np.testing.assert_array_equal(embed(enc, batch), embed(source, batch))


def test_missing_checkpoint_is_a_clear_error(tmp_path, offline):
    missing = tmp_path / "nowhere.pt"
    with pytest.raises(WeightsUnavailableError) as err:
        load_encoder(EncoderConfig(name="open_clip", checkpoint=str(missing)), tmp_path)
    message = str(err.value)
    assert str(missing) in message and CHECKPOINT_ENV in message and "encoder.checkpoint" in message
    assert isinstance(err.value, RuntimeError)


def test_unobtainable_clip_weights_raise_quickly_offline(tmp_path, offline):
    start = time.perf_counter()
    with pytest.raises(WeightsUnavailableError) as err:
        load_encoder(EncoderConfig(name="open_clip", model="ViT-B-32", pretrained="openai"), tmp_path)
    assert time.perf_counter() - start < 5
    message = str(err.value)
    for part in ("ViT-B-32/openai", "timm/vit_base_patch32_clip_224.openai", "HF_HUB_OFFLINE",
                 CHECKPOINT_ENV, "encoder.checkpoint"):
        assert part in message


def test_unreachable_download_host_is_detected_in_seconds(monkeypatch, offline):
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setenv("HF_ENDPOINT", "https://faxplainer-test.invalid")  # never resolves
    start = time.perf_counter()
    with pytest.raises(WeightsUnavailableError, match="faxplainer-test.invalid unreachable"):
        resolve_clip_weights("ViT-B-32", "openai", probe_timeout=2.0)
    assert time.perf_counter() - start < 5


def test_cached_hf_weights_are_found_without_network(tmp_path, offline, monkeypatch):
    """A file in the HF cache layout for the tag's repo is used as-is (no download attempted)."""
    import huggingface_hub.constants as hf_constants

    snapshot = (Path(hf_constants.HF_HUB_CACHE) / "models--timm--vit_base_patch32_clip_224.openai"
                / "snapshots" / "abc123")
    snapshot.mkdir(parents=True)
    (snapshot / "open_clip_model.safetensors").write_bytes(b"stub")
    refs = snapshot.parent.parent / "refs"
    refs.mkdir()
    (refs / "main").write_text("abc123")
    weights = resolve_clip_weights("ViT-B-32", "openai")
    assert weights.pretrained == str(snapshot / "open_clip_model.safetensors")
    assert weights.tag == "openai" and weights.published


def test_unknown_tag_and_unknown_name(tmp_path, offline):
    with pytest.raises(WeightsUnavailableError, match="known tags"):
        resolve_clip_weights("ViT-B-32", "no-such-tag")
    with pytest.raises(ValueError, match="unknown encoder.name"):
        load_encoder(EncoderConfig(name="resnet"), tmp_path)


def test_openai_tag_settings_apply_to_a_local_copy():
    """The OpenAI ViT-B/32 weights need QuickGELU; a checkpoint file alone would not say so."""
    force = _force_kwargs("openai", "ViT-B-32")
    assert force["force_quick_gelu"] is True
    assert tuple(force["image_mean"]) == CLIP_MEAN and force["image_interpolation"] == "bicubic"
    assert _force_kwargs(None, "ViT-B-32") == {"force_quick_gelu": False}
    assert "ViT-B-32" in open_clip.list_models()


# -- helpers -------------------------------------------------------------------------------------
def test_file_hash_is_cached_by_size_and_mtime(tmp_path, monkeypatch):
    f = tmp_path / "w.bin"
    f.write_bytes(b"abc")
    first = common.cached_file_sha256(f, tmp_path)
    real = common.sha256_file
    monkeypatch.setattr(common, "sha256_file", lambda p: pytest.fail("rehashed an unchanged file"))
    assert common.cached_file_sha256(f, tmp_path) == first
    monkeypatch.setattr(common, "sha256_file", real)
    f.write_bytes(b"abcd")
    assert common.cached_file_sha256(f, tmp_path) != first


def test_device_resolution():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert common.resolve_device("auto").type == expected
    assert common.resolve_precision(torch.device("cpu")).embed == "fp32"  # no agreement key
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA is not available"):
            common.resolve_device("cuda")
