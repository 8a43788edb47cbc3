"""Read each transformer block's post-softmax attention probabilities inside the autograd graph.

Relevance maps (Chefer, Gur & Wolf, "Generic Attention-model Explainability for Interpreting
Bi-Modal and Encoder-Decoder Transformers", ICCV 2021) need, for every block ``b``, the attention
probabilities ``A_b`` (batch x heads x tokens x tokens) *and* their gradient with respect to a
target. Neither library hands these out:

* open_clip's ``ResidualAttentionBlock`` calls ``nn.MultiheadAttention`` with
  ``need_weights=False`` (fused kernel, no probabilities); asking for weights returns a tensor
  that is not the one the output was computed from, so it has no useful gradient. While tapped,
  the block's ``attn`` module gets an explicit forward (q.k^T -> softmax -> keep A -> @v ->
  out_proj) that uses the module's own weights, so the output is the same function of the same
  parameters.
* timm's ``Attention`` has an unfused path whose post-softmax tensor passes through
  ``attn_drop`` (an identity in eval mode); while tapped, ``fused_attn`` is switched off and a
  forward hook on ``attn_drop`` records that tensor.

``tap_attention`` is a context manager: library source is never edited and every module gets its
original forward (and ``fused_attn`` flag) back on exit, even when the body raises.
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn

FAMILIES = ("open_clip", "timm")
_TAPPED_FLAG = "_faxplainer_tapped"


class AttentionTap:
    """Holds the attention probabilities recorded by the latest forward pass, one per block.

    ``probs[b]`` is the (B, heads, T, T) post-softmax tensor of block ``b`` *as used by the
    forward*, so ``torch.autograd.grad(target, tap.probs)`` gives d target / d A_b.
    """

    def __init__(self, n_blocks: int):
        self.n_blocks = n_blocks
        self._probs: list[torch.Tensor | None] = [None] * n_blocks

    def clear(self) -> None:
        """Forget the tensors of the previous forward (call before each new forward)."""
        self._probs = [None] * self.n_blocks

    def _record(self, index: int, probs: torch.Tensor) -> None:
        self._probs[index] = probs

    @property
    def probs(self) -> list[torch.Tensor]:
        """Attention probabilities of every block, in block order.

        Raises
        ------
        RuntimeError
            If some block recorded nothing (no forward ran since ``clear``, or the model does not
            route its forward through the tapped blocks).
        """
        missing = [i for i, p in enumerate(self._probs) if p is None]
        if missing:
            raise RuntimeError(f"attention tap: blocks {missing} recorded no attention; run a forward "
                               "pass inside the tap (and check that the model uses these blocks)")
        return list(self._probs)  # type: ignore[arg-type]


@contextmanager
def tap_attention(family: str, blocks: Sequence[nn.Module]) -> Iterator[AttentionTap]:
    """Tap the attention of ``blocks`` for the duration of the ``with`` body.

    Parameters
    ----------
    family : {"open_clip", "timm"}
        Attention layout of the blocks (``Encoder.family``).
    blocks : sequence of nn.Module
        Transformer blocks in order, each with an ``attn`` attribute: ``nn.MultiheadAttention``
        (open_clip ``ResidualAttentionBlock``) or timm ``Attention`` (timm ``Block``).

    Yields
    ------
    AttentionTap
        Filled by every forward pass run inside the body.

    Raises
    ------
    ValueError
        Unknown family, or a block whose attention module is not of that family's kind.
    RuntimeError
        When a block is already tapped (nested taps would record into the wrong object).
    """
    if family not in FAMILIES:
        raise ValueError(f"unknown attention family {family!r}; expected one of {FAMILIES}")
    attns = [_attention_module(block, family, i) for i, block in enumerate(blocks)]
    for i, attn in enumerate(attns):
        if getattr(attn, _TAPPED_FLAG, False):
            raise RuntimeError(f"block {i} is already tapped; taps cannot be nested")

    tap = AttentionTap(len(attns))
    undo: list = []
    try:
        for i, attn in enumerate(attns):
            undo.append(_install(attn, family, tap, i))
        yield tap
    finally:
        for restore in reversed(undo):
            restore()


def tap_encoder(encoder):
    """``tap_attention(encoder.family, encoder.blocks)`` for a ``pipeline.model.encoders`` Encoder."""
    return tap_attention(encoder.family, encoder.blocks)


# -- installation --------------------------------------------------------------------------------

def _attention_module(block: nn.Module, family: str, index: int) -> nn.Module:
    attn = getattr(block, "attn", None)
    if family == "open_clip":
        if not isinstance(attn, nn.MultiheadAttention):
            raise ValueError(f"block {index} ({type(block).__name__}): expected .attn to be "
                             f"nn.MultiheadAttention for family 'open_clip', got {type(attn).__name__}")
        if not attn._qkv_same_embed_dim or attn.bias_k is not None or attn.add_zero_attn:
            raise ValueError(f"block {index}: only plain self-attention nn.MultiheadAttention "
                             "(shared q/k/v width, no bias_k/bias_v, no add_zero_attn) can be tapped")
    else:
        if attn is None or not hasattr(attn, "fused_attn") or not isinstance(
                getattr(attn, "attn_drop", None), nn.Module):
            raise ValueError(f"block {index} ({type(block).__name__}): expected a timm Attention "
                             "with .fused_attn and .attn_drop for family 'timm', got "
                             f"{type(attn).__name__}")
    return attn


def _install(attn: nn.Module, family: str, tap: AttentionTap, index: int):
    """Tap one attention module; returns the function that undoes it."""
    setattr(attn, _TAPPED_FLAG, True)
    if family == "open_clip":
        had_own_forward = "forward" in attn.__dict__
        own_forward = attn.__dict__.get("forward")
        # An instance attribute shadows the class's forward for this one module only.
        attn.forward = _explicit_mha_forward(attn, tap, index)

        def restore():
            if had_own_forward:
                attn.forward = own_forward
            else:
                del attn.forward
            delattr(attn, _TAPPED_FLAG)
        return restore

    was_fused = attn.fused_attn
    attn.fused_attn = False

    def record(_module, _inputs, output):
        tap._record(index, output)

    handle = attn.attn_drop.register_forward_hook(record)

    def restore():
        handle.remove()
        attn.fused_attn = was_fused
        delattr(attn, _TAPPED_FLAG)
    return restore


def _explicit_mha_forward(mha: nn.MultiheadAttention, tap: AttentionTap, index: int):
    """An ``nn.MultiheadAttention.forward`` replacement that exposes A in the autograd graph.

    Same signature and return value as the original; the math is PyTorch's reference
    (non-fused) multi-head attention with the module's ``in_proj_*`` and ``out_proj`` weights.
    """

    def forward(query, key, value, key_padding_mask=None, need_weights=True, attn_mask=None,
                average_attn_weights=True, is_causal=False):
        if key_padding_mask is not None:
            raise NotImplementedError("attention tap: key_padding_mask is not supported")
        if is_causal and attn_mask is None:
            raise NotImplementedError("attention tap: is_causal without attn_mask is not supported")
        if not mha.batch_first:  # (L, N, E) -> (N, L, E)
            query, key, value = (t.transpose(0, 1) for t in (query, key, value))
        n, len_q, width = query.shape
        len_k = key.shape[1]
        heads = mha.num_heads
        head_dim = width // heads

        w_q, w_k, w_v = mha.in_proj_weight.chunk(3)
        b_q, b_k, b_v = (mha.in_proj_bias.chunk(3) if mha.in_proj_bias is not None
                         else (None, None, None))
        q = F.linear(query, w_q, b_q).view(n, len_q, heads, head_dim).transpose(1, 2)
        k = F.linear(key, w_k, b_k).view(n, len_k, heads, head_dim).transpose(1, 2)
        v = F.linear(value, w_v, b_v).view(n, len_k, heads, head_dim).transpose(1, 2)

        scores = (q * (1.0 / math.sqrt(head_dim))) @ k.transpose(-2, -1)  # (N, H, Lq, Lk)
        if attn_mask is not None:
            if attn_mask.dtype == torch.bool:
                attn_mask = torch.zeros_like(attn_mask, dtype=scores.dtype).masked_fill(
                    attn_mask, float("-inf"))
            if attn_mask.dim() == 3:  # (N * H, Lq, Lk), PyTorch's per-head layout
                attn_mask = attn_mask.view(n, heads, len_q, len_k)
            scores = scores + attn_mask.to(scores.dtype)
        probs = scores.softmax(dim=-1)
        tap._record(index, probs)
        dropped = F.dropout(probs, p=mha.dropout, training=mha.training)
        out = (dropped @ v).transpose(1, 2).reshape(n, len_q, width)
        out = mha.out_proj(out)
        if not mha.batch_first:
            out = out.transpose(0, 1)
        weights = None
        if need_weights:
            weights = probs.mean(dim=1) if average_attn_weights else probs
        return out, weights

    return forward
