"""Attention taps: tapped models compute exactly what untapped ones do, the recorded probabilities
are the ones the forward used (values and gradients), and every module is restored on exit."""
from __future__ import annotations

import pytest
import torch
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from pipeline.explain.taps import tap_attention, tap_encoder


@pytest.fixture(scope="module")
def tiny_timm():
    torch.manual_seed(0)
    return VisionTransformer(img_size=56, patch_size=14, embed_dim=48, depth=3, num_heads=3,
                             num_classes=0).eval()


def _batch(size=224, n=2, seed=1):
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def test_open_clip_tap_keeps_outputs_and_restores(tiny):
    x = _batch()
    with torch.no_grad():
        before = tiny.embed(x)
        with tap_encoder(tiny) as tap:
            tapped = tiny.embed(x)
        after = tiny.embed(x)
    torch.testing.assert_close(tapped, before, rtol=0, atol=1e-5)
    torch.testing.assert_close(after, before, rtol=0, atol=0)
    probs = tap.probs
    assert len(probs) == len(tiny.blocks) == 2
    assert probs[0].shape == (2, 2, 50, 50)  # width 64 / head_width 32 = 2 heads, 1 + 7x7 tokens
    torch.testing.assert_close(probs[0].sum(-1), torch.ones(2, 2, 50))
    for block in tiny.blocks:
        assert "forward" not in block.attn.__dict__  # the class's own forward is back


def test_timm_tap_keeps_outputs_and_restores(tiny_timm):
    x = _batch(56)
    fused = [b.attn.fused_attn for b in tiny_timm.blocks]
    with torch.no_grad():
        before = tiny_timm(x)
        with tap_attention("timm", list(tiny_timm.blocks)) as tap:
            tapped = tiny_timm(x)
    torch.testing.assert_close(tapped, before, rtol=0, atol=1e-5)
    assert [b.attn.fused_attn for b in tiny_timm.blocks] == fused
    assert all(not b.attn.attn_drop._forward_hooks for b in tiny_timm.blocks)
    assert tap.probs[2].shape == (2, 3, 17, 17)
    torch.testing.assert_close(tap.probs[2].sum(-1), torch.ones(2, 3, 17))


@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("mask", [None, "float", "bool"])
def test_explicit_mha_matches_torch(batch_first, mask):
    """The explicit forward equals nn.MultiheadAttention in both layouts and with masks, and the
    recorded probabilities equal the per-head weights torch itself reports."""
    torch.manual_seed(0)
    block = nn.Module()
    block.attn = nn.MultiheadAttention(24, 4, batch_first=batch_first).eval()
    x = torch.randn(3, 5, 24) if batch_first else torch.randn(5, 3, 24)
    attn_mask = None
    if mask == "float":
        attn_mask = torch.randn(5, 5)
    elif mask == "bool":
        attn_mask = torch.triu(torch.ones(5, 5, dtype=torch.bool), diagonal=1)
    ref_out, ref_w = block.attn(x, x, x, need_weights=True, attn_mask=attn_mask,
                                average_attn_weights=False)
    with tap_attention("open_clip", [block]) as tap:
        out, w = block.attn(x, x, x, need_weights=True, attn_mask=attn_mask,
                            average_attn_weights=False)
    torch.testing.assert_close(out, ref_out, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(w, ref_w, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(tap.probs[0], ref_w, rtol=1e-5, atol=1e-6)


def _directional_check(grad, y_of_perturbed, y0, direction, eps=1e-3):
    fd = (y_of_perturbed - y0) / eps
    analytic = (grad * direction).sum()
    assert torch.isclose(fd, analytic, rtol=2e-2, atol=1e-5), (float(fd), float(analytic))


def test_open_clip_tapped_probabilities_carry_the_gradient(tiny, monkeypatch):
    """d y / d A_1 from the tap matches a finite difference taken by adding eps * D to A_1 where
    the explicit forward consumes it (its dropout call, the only one in the tiny model)."""
    x = _batch(n=1)
    w = torch.randn(tiny.info.embed_dim, generator=torch.Generator().manual_seed(3))
    with tap_encoder(tiny) as tap:
        y = (tiny.embed(x) * w).sum()
        (grad,) = torch.autograd.grad(y, [tap.probs[1]])
    direction = torch.randn(grad.shape, generator=torch.Generator().manual_seed(4))
    eps = 1e-3
    calls = []
    real_dropout = torch.nn.functional.dropout

    def dropout(t, p=0.5, training=True, inplace=False):
        calls.append(t.shape)
        out = real_dropout(t, p, training, inplace)
        return out + eps * direction if len(calls) == 2 else out  # block 1

    with torch.no_grad():
        y0 = (tiny.embed(x) * w).sum()
        with tap_encoder(tiny):
            monkeypatch.setattr(torch.nn.functional, "dropout", dropout)
            y_eps = (tiny.embed(x) * w).sum()
            monkeypatch.undo()
    assert len(calls) == 2
    _directional_check(grad, y_eps, y0, direction, eps)


def test_timm_tapped_probabilities_carry_the_gradient(tiny_timm):
    x = _batch(56, n=1)
    blocks = list(tiny_timm.blocks)
    w = torch.randn(48, generator=torch.Generator().manual_seed(3))  # (a plain sum of a
    # LayerNorm output is constant)
    with tap_attention("timm", blocks) as tap:
        y = (tiny_timm(x) * w).sum()
        (grad,) = torch.autograd.grad(y, [tap.probs[1]])
    direction = torch.randn(grad.shape, generator=torch.Generator().manual_seed(4))
    eps = 1e-3
    with torch.no_grad():
        with tap_attention("timm", blocks):
            y0 = (tiny_timm(x) * w).sum()
            handle = blocks[1].attn.attn_drop.register_forward_hook(
                lambda m, i, out: out + eps * direction)
            try:
                y_eps = (tiny_timm(x) * w).sum()
            finally:
                handle.remove()
    _directional_check(grad, y_eps, y0, direction, eps)


def test_restores_on_exception(tiny_timm, tiny):
    with pytest.raises(RuntimeError, match="boom"):
        with tap_encoder(tiny):
            raise RuntimeError("boom")
    assert all("forward" not in b.attn.__dict__ for b in tiny.blocks)
    fused = [b.attn.fused_attn for b in tiny_timm.blocks]
    with pytest.raises(RuntimeError, match="boom"):
        with tap_attention("timm", list(tiny_timm.blocks)):
            raise RuntimeError("boom")
    assert [b.attn.fused_attn for b in tiny_timm.blocks] == fused


def test_rejects_wrong_family_nesting_and_missing_forward(tiny, tiny_timm):
    with pytest.raises(ValueError, match="nn.MultiheadAttention"):
        with tap_attention("open_clip", list(tiny_timm.blocks)):
            pass
    with pytest.raises(ValueError, match="timm Attention"):
        with tap_attention("timm", tiny.blocks):
            pass
    with pytest.raises(ValueError, match="unknown attention family"):
        with tap_attention("keras", tiny.blocks):
            pass
    with tap_encoder(tiny) as tap:
        with pytest.raises(RuntimeError, match="already tapped"):
            with tap_encoder(tiny):
                pass
        with pytest.raises(RuntimeError, match="recorded no attention"):
            tap.probs
    assert all("forward" not in b.attn.__dict__ for b in tiny.blocks)
