"""Relevance maps: a hand-built ViT whose maps are known in closed form, batched = one target at a
time, Chefer's rollout, the signed aggregate, the deletion check, and the per-run cache."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from timm.models.vision_transformer import VisionTransformer
from torch import nn
from torchvision import transforms

from pipeline.model import run_models as models
from pipeline.config import Config, EncoderConfig, RelevanceConfig, to_dict
from pipeline.data.scan import BadImageError
from pipeline.model.encoders import TinyEncoder
from pipeline.model.encoders.base import Encoder, EncoderInfo
from pipeline.explain.cache import get_faithfulness, get_maps, maps_images_per_pass
from pipeline.model.run_models import RunModels
from pipeline.explain.faithfulness import deletion_check
from pipeline.model.head import DistilledHead, HeadModule
from pipeline.model.projection import ProjectionModule, VisionOnlyProjection
from pipeline.explain.relevance import (decision_relevance, input_rgb, relevance_maps,
                                relevance_maps_sequential, rollout_cls_rows)
from pipeline.store.run_store import RunStore


class TimmTestEncoder(Encoder):
    """A timm ViT behind the Encoder interface (CLS token of ``forward_features``)."""

    family = "timm"

    def __init__(self, model: VisionTransformer, preprocess):
        self.model = model.eval()
        self.preprocess = preprocess
        self.device = torch.device("cpu")
        self.info = EncoderInfo("timm-test", "vit", "test", model.embed_dim, model.patch_embed.img_size[0], "x")

    def embed(self, batch):
        return self.model.forward_features(batch)[:, 0]

    @property
    def visual(self):
        return self.model

    @property
    def blocks(self):
        return list(self.model.blocks)

    @property
    def patch_grid(self):
        return tuple(self.model.patch_embed.grid_size)


def toy_encoder() -> TimmTestEncoder:
    """One block, no norms, q = k = 0 (uniform attention), v and proj identity, no MLP, channel 0 of
    each token = the patch's mean intensity. So the CLS embedding is the mean over the 17 tokens
    and d embed[0] / d A[cls, j] = intensity of patch j: the map of any target w * embed[0] is
    |w| * intensity / 17 on the 4x4 grid."""
    m = VisionTransformer(img_size=28, patch_size=7, embed_dim=8, depth=1, num_heads=1,
                          num_classes=0, qkv_bias=True)
    blk = m.blocks[0]
    blk.norm1, blk.norm2, m.norm = nn.Identity(), nn.Identity(), nn.Identity()
    with torch.no_grad():
        for p in m.parameters():
            p.zero_()
        blk.attn.qkv.weight[16:24] = torch.eye(8)  # v = identity; q = k = 0
        blk.attn.proj.weight.copy_(torch.eye(8))
        m.patch_embed.proj.weight[0] = 1.0 / (3 * 49)  # channel 0: mean intensity of the patch
    return TimmTestEncoder(m, transforms.ToTensor())


def toy_image(intensities: np.ndarray) -> torch.Tensor:
    """(4, 4) intensities in [0, 1] -> a (3, 28, 28) tensor of 7x7 flat patches."""
    return torch.from_numpy(np.kron(intensities, np.ones((7, 7)))).float().expand(3, 28, 28).clone()


def toy_head(weights: np.ndarray) -> HeadModule:
    """z_k = weights[k] * feature 0; classifier = ones."""
    head = HeadModule(8, len(weights))
    with torch.no_grad():
        head.to16.weight.zero_()
        head.to16.bias.zero_()
        head.to16.weight[:, 0] = torch.from_numpy(weights).float()
        head.classifier.weight.fill_(1.0)
        head.classifier.bias.fill_(0.25)
    return head.eval()


def seeded_models(in_dim: int, seed: int = 0) -> tuple[ProjectionModule, HeadModule]:
    torch.manual_seed(seed)
    projection, head = ProjectionModule(in_dim, 32).eval(), HeadModule(32, 16).eval()
    with torch.no_grad():
        head.std.uniform_(0.02, 0.05)  # unit-norm features: spread them like the fitted head does
    return projection, head


@pytest.fixture(scope="module")
def tiny_timm():
    torch.manual_seed(0)
    model = VisionTransformer(img_size=56, patch_size=14, embed_dim=48, depth=3, num_heads=3,
                              num_classes=0)
    return TimmTestEncoder(model, transforms.Compose([transforms.Resize(56), transforms.CenterCrop(56),
                                                      transforms.ToTensor()]))


# -- known maps ------------------------------------------------------------------------------------

def test_toy_model_maps_equal_the_closed_form():
    rng = np.random.default_rng(0)
    intensities = rng.uniform(0.05, 1.0, size=(2, 4, 4))
    weights = np.array([1.5, -0.5, 2.0, -1.0])
    enc, head = toy_encoder(), toy_head(weights)
    x = torch.stack([toy_image(i) for i in intensities])
    r = relevance_maps(enc, nn.Identity(), head, x)
    expected = np.abs(weights)[None, :, None, None] * intensities[:, None] / 17
    np.testing.assert_allclose(r.patch_maps, expected, rtol=1e-5, atol=1e-7)
    z = weights[None] * intensities.sum(axis=(1, 2))[:, None] / 17
    np.testing.assert_allclose(r.z, z, rtol=1e-5)
    np.testing.assert_allclose(r.contributions, z, rtol=1e-5)  # classifier weights are 1
    # aggregate: each dimension's contribution spread over the patches by intensity share
    share = intensities / intensities.sum(axis=(1, 2), keepdims=True)
    np.testing.assert_allclose(r.aggregate_patch, z.sum(1)[:, None, None] * share, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(r.aggregate_patch.sum(axis=(1, 2)), r.logit - 0.25, rtol=1e-5)
    # the displayed map is the upsampled, min-max normalised intensity pattern
    assert r.maps.shape == (2, 4, 28, 28)
    up = r.maps[0, 2]
    assert up.min() == 0 and np.isclose(up.max(), 1)
    hot = np.unravel_index(intensities[0].argmax(), (4, 4))
    assert up[hot[0] * 7 + 3, hot[1] * 7 + 3] == up.max()


def test_toy_model_decision_map_and_deletion_drops_are_known():
    intensities = np.linspace(0.1, 1.0, 16).reshape(4, 4)
    weights = np.array([2.0, -1.0])
    enc, head = toy_encoder(), toy_head(weights)
    x = toy_image(intensities)[None]
    np.testing.assert_allclose(decision_relevance(enc, nn.Identity(), head, x)[0],
                               intensities / 17, rtol=1e-5)  # logit = 1 * (2 - 1) * feature
    r = relevance_maps(enc, nn.Identity(), head, x)
    report = deletion_check(enc, nn.Identity(), head, x, r, fraction=0.25, n_random=5, seed=3)
    top4 = np.sort(intensities.ravel())[-4:].sum()
    np.testing.assert_allclose(report.relevant_drop[0], np.abs(weights) * top4 / 17, rtol=1e-4)
    rng = np.random.default_rng(3)  # the same draws as deletion_check makes
    rand = np.mean([intensities.ravel()[rng.choice(16, 4, replace=False)].sum() for _ in range(5)])
    np.testing.assert_allclose(report.random_drop[0], np.abs(weights) * rand / 17, rtol=1e-4)
    assert np.all(report.gain > 0) and np.all(report.win_rate == 1.0)
    summary = report.summary()
    assert summary["fraction"] == 0.25 and len(summary["per_dimension"]) == 2
    assert json.loads(json.dumps(summary)) == summary


# -- rollout ---------------------------------------------------------------------------------------

def test_rollout_by_hand():
    a = torch.tensor([[[[0.5, 0.25, 0.25], [0.0, 1.0, 0.0], [0.2, 0.3, 0.5]]]])  # (B=1, H=1, 3, 3)
    g = torch.tensor([[[[2.0, 2.0, -2.0], [1.0, 1.0, 1.0], [1.0, 1.0, 1.0]]]]).unsqueeze(0)
    # cam = clamp(g * a, 0) = [[1, .5, 0], [0, 1, 0], [.2, .3, .5]]; R = I + cam; R[0] = [2, .5, 0]
    row = rollout_cls_rows([a], [g])[0, 0]
    torch.testing.assert_close(row, torch.tensor([2.0, 0.5, 0.0]))


def test_rollout_rows_equal_full_matrix_rollout():
    """r <- r + r @ cam from the last block back equals Chefer's R <- R + cam @ R, row 0."""
    gen = torch.Generator().manual_seed(0)
    k, b, h, t, n_blocks = 3, 2, 4, 6, 5
    probs = [torch.rand(b, h, t, t, generator=gen).softmax(-1) for _ in range(n_blocks)]
    grads = [torch.randn(k, b, h, t, t, generator=gen) for _ in range(n_blocks)]
    rows = rollout_cls_rows(probs, grads)
    for kk in range(k):
        for bb in range(b):
            r = torch.eye(t)
            for a, g in zip(probs, grads):
                cam = (g[kk, bb] * a[bb]).clamp(min=0).mean(0)
                r = r + cam @ r
            torch.testing.assert_close(rows[kk, bb], r[0], rtol=1e-5, atol=1e-6)


# -- batched = sequential ------------------------------------------------------------------------

@pytest.mark.parametrize("which", ["tiny", "tiny_timm"])
@pytest.mark.parametrize("start_block", [0, -1])
def test_batched_maps_equal_one_target_at_a_time(which, start_block, request):
    enc = request.getfixturevalue(which)
    projection, head = seeded_models(enc.info.embed_dim)
    size = enc.info.image_size
    x = torch.randn(3, 3, size, size, generator=torch.Generator().manual_seed(2))
    batched = relevance_maps(enc, projection, head, x, start_block=start_block, images_per_pass=3)
    sequential = relevance_maps_sequential(enc, projection, head, x, start_block=start_block,
                                           images_per_pass=1)
    scale = np.abs(sequential.patch_maps).max()
    assert scale > 0
    np.testing.assert_allclose(batched.patch_maps, sequential.patch_maps, rtol=1e-5, atol=1e-6 * scale)
    np.testing.assert_allclose(batched.z, sequential.z, rtol=1e-5, atol=1e-6)
    # each image's maps do not depend on the other images of the batch
    alone = relevance_maps(enc, projection, head, x[1:2], start_block=start_block)
    np.testing.assert_allclose(batched.patch_maps[1], alone.patch_maps[0], rtol=1e-5, atol=1e-6 * scale)


def test_start_block_selects_blocks(tiny_timm):
    projection, head = seeded_models(48)
    x = torch.randn(1, 3, 56, 56, generator=torch.Generator().manual_seed(5))
    last = relevance_maps(tiny_timm, projection, head, x, start_block=-1)
    also_last = relevance_maps(tiny_timm, projection, head, x, start_block=2)
    every = relevance_maps(tiny_timm, projection, head, x, start_block=0)
    np.testing.assert_array_equal(last.patch_maps, also_last.patch_maps)
    assert not np.allclose(last.patch_maps, every.patch_maps)
    with pytest.raises(ValueError, match="out of range"):
        relevance_maps(tiny_timm, projection, head, x, start_block=3)


def test_works_inside_inference_mode_and_reports_progress(tiny):
    projection, head = seeded_models(32)
    x = torch.randn(3, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    seen = []
    with torch.inference_mode():
        r = relevance_maps(tiny, projection, head, x, images_per_pass=2,
                           progress=lambda d, t: seen.append((d, t)))
    assert seen == [(2, 3), (3, 3)]
    assert np.isfinite(r.patch_maps).all() and r.patch_maps.max() > 0


def test_input_rgb_inverts_preprocessing(tiny):
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, size=(224, 224, 3), dtype=np.uint8)
    x = tiny.preprocess(Image.fromarray(img))[None]
    back = input_rgb(tiny, x)[0]
    assert np.abs(back.astype(int) - img.astype(int)).max() <= 1


# -- per-run cache ---------------------------------------------------------------------------------

def write_tiny_run(root: Path, n_images: int = 4, relevance: RelevanceConfig = RelevanceConfig(),
                   seed: int = 0) -> tuple[Path, RunModels]:
    """A run folder of the tiny encoder with generated images, loadable by pipeline.runner."""
    rng = np.random.default_rng(seed)
    data, run = root / "data", root / "runs" / "tiny-run"
    records = []
    for i in range(n_images):
        rel = f"{'0_real' if i % 2 == 0 else '1_fake'}/img{i}.png"
        (data / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (64, 80, 3), dtype=np.uint8)).save(data / rel)
        records.append({"id": f"id{i}", "path": rel, "label": i % 2, "cell": i % 2})
    encoder = TinyEncoder(seed=0)
    projection_module, head_module = seeded_models(32, seed)
    cfg = Config(encoder=EncoderConfig(name="tiny", device="cpu"), relevance=relevance)
    store = RunStore(run)
    store.write_records(records)
    store.write_meta({"run_id": "tiny-run", "config": to_dict(cfg),
                      "encoder": dataclasses.asdict(encoder.info), "data": {"root": str(data)}})
    projection = VisionOnlyProjection.from_state({"in_dim": 32, "out_dim": 32,
                                                  "weight": projection_module.linear.weight.detach()})
    head = DistilledHead.from_state({"in_dim": 32, "dim": 16, "state_dict": head_module.state_dict()})
    store.save_torch("projection.pt", projection.state())
    store.save_torch("head.pt", head.state())
    return run, RunModels(encoder, projection_module, head_module)


class Unusable:
    """Stands in for models that must not be touched (cache hits)."""

    def __getattr__(self, name):
        raise AssertionError(f"models used ({name}) although the cache should have answered")


def test_get_maps_computes_caches_and_recomputes_on_config_change(tmp_path):
    run, models = write_tiny_run(tmp_path)
    maps = get_maps(run, [0, 2], models=models)
    assert sorted(maps) == [0, 2]
    x = torch.stack([models.encoder.preprocess(Image.open(tmp_path / "data" / p).convert("RGB"))
                     for p in ("0_real/img0.png", "0_real/img2.png")])
    # the same images per pass as get_maps (batch size changes the matrix products' rounding)
    direct = relevance_maps(models.encoder, models.projection, models.head, x,
                            images_per_pass=maps_images_per_pass("cpu"))
    np.testing.assert_allclose(maps[2].patch_maps, direct.patch_maps[1], rtol=1e-5)
    np.testing.assert_allclose(maps[2].aggregate, direct.aggregate[1], rtol=1e-5, atol=1e-9)
    assert maps[0].rgb.shape == (224, 224, 3) and maps[0].maps.shape == (16, 224, 224)
    assert (run / "relevance" / "id0.npz").exists()

    again = get_maps(run, [2, 0], models=RunModels(Unusable(), Unusable(), Unusable()))
    assert list(again) == [2, 0]
    np.testing.assert_array_equal(again[2].patch_maps, maps[2].patch_maps)

    store = RunStore(run)
    meta = store.read_meta()
    meta["config"]["relevance"]["start_block"] = -1
    store.write_meta(meta)
    with pytest.raises(AssertionError, match="cache should have answered"):
        get_maps(run, [0], models=RunModels(Unusable(), Unusable(), Unusable()))
    last_only = get_maps(run, [0], models=models)[0]
    expected = relevance_maps(models.encoder, models.projection, models.head, x[:1], start_block=-1)
    np.testing.assert_allclose(last_only.patch_maps, expected.patch_maps[0], rtol=1e-5)


def test_get_maps_reports_bad_images_and_goes_on(tmp_path):
    run, models = write_tiny_run(tmp_path)
    (tmp_path / "data" / "1_fake" / "img1.png").write_bytes(b"not a png")
    errors = []
    maps = get_maps(run, [0, 1, 2], models=models, on_error=lambda i, msg: errors.append((i, msg)))
    assert sorted(maps) == [0, 2]
    assert errors and errors[0][0] == 1 and "img1.png" in errors[0][1]
    with pytest.raises(BadImageError, match="img1.png"):
        get_maps(run, [1], models=models)
    with pytest.raises(IndexError, match="out of range"):
        get_maps(run, [7], models=models)


def test_get_faithfulness_is_cached(tmp_path):
    run, models = write_tiny_run(tmp_path, n_images=6)
    seen = []
    summary = get_faithfulness(run, models=models, n_images=4, progress=lambda d, t: seen.append((d, t)))
    assert summary["n_images"] == 4 and len(summary["per_dimension"]) == 16
    assert seen[-1] == (8, 8)
    labels = [r["label"] for r in RunStore(run).read_records()]
    assert sorted(labels[i] for i in summary["image_indices"]) == [0, 0, 1, 1]
    again = get_faithfulness(run, models=RunModels(Unusable(), Unusable(), Unusable()), n_images=4)
    assert again == summary


def test_cli_explain_through_the_runner(tmp_path):
    """The default path: models loaded by pipeline.model.run_models from the run folder (kept per process)."""
    from pipeline.cli.explain import cmd_explain

    run, _ = write_tiny_run(tmp_path)
    models.clear_cache()
    written = cmd_explain(run, ["id1"], tmp_path / "out")
    assert len(written) == 18
    names = {p.name for p in written}
    assert {"aggregate.png", "sheet.png", "dim-00.png", "dim-15.png"} <= names
    assert Image.open(tmp_path / "out" / "id1" / "dim-03.png").size == (224, 224)
    assert models.load_run_models(run) is models.load_run_models(run)
    with pytest.raises(ValueError, match="nope"):
        cmd_explain(run, ["nope"], tmp_path / "out")
    (tmp_path / "data" / "0_real" / "img2.png").write_bytes(b"")  # a bad file: skipped, said why
    errors = []
    written = cmd_explain(run, ["id2", "id3"], tmp_path / "out2", on_error=lambda i, m: errors.append(m))
    assert len(written) == 18 and all("id3" in str(p) for p in written)
    assert len(errors) == 1 and "img2.png" in errors[0] and "zero-byte" in errors[0]
