"""Vision-only linear projection (Materzynska et al., CVPR 2022, "Disentangling visual and written
concepts in CLIP"; the seed paper's 512 -> 256 step).

A linear map ``W`` (out_dim x D), orthogonally initialised, with L2-normalised output, trained with
the "forget to spell" objective on tuples (clean image, image with a rendered word, the word alone on
white [, the word as text when the encoder has a text tower]): the image with the word is pulled
towards its clean image and pushed away from the rendered word (and its text), with the
orthogonality regulariser ``||I - W W^T||_F`` keeping the map close to an isometry so that the rest
of the visual information survives.
"""
from __future__ import annotations

import os

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pipeline.config import ProjectionConfig
from pipeline.model.configured import Configured
from pipeline.model.torch_threads import torch_threads


PAPER_DIM = 256  # the paper's width for CLIP ViT-B/32's 512-d embedding


def projection_dim(cfg: ProjectionConfig, in_dim: int) -> int:
    """The projection's width for a ``in_dim``-d embedding: ``cfg.dim`` when set, else the paper's
    256 for CLIP's 512 and half of a wider embedding (the stand-in's 1536 -> 768), never wider than
    the embedding. Measured (README "Detector fidelity"): at 256 the stand-in's head lost 0.03-0.05
    held-out AUC against a linear probe on the full embedding; the loss is the width."""
    if cfg.dim is not None:
        return min(int(cfg.dim), in_dim)
    return min(in_dim, max(PAPER_DIM, in_dim // 2))


class ProjectionModule(nn.Module):
    """(B, D) embeddings -> (B, out_dim) L2-normalised vision-only features."""

    def __init__(self, in_dim: int, out_dim: int):
        super().__init__()
        self.linear = nn.Linear(in_dim, out_dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.linear(F.normalize(x.float(), dim=-1)), dim=-1)


def _info_nce(anchor: torch.Tensor, candidates: torch.Tensor, target: torch.Tensor, t: float) -> torch.Tensor:
    return F.cross_entropy(anchor @ candidates.T / t, target)


def matmul_threads() -> int:
    """Threads for the regulariser's two big products: every core of this process. A matrix
    product's result does not depend on its thread count (checked bit for bit in
    tests/unit/test_run_timing.py), unlike the fit's reductions, which stay on one thread."""
    return max(1, len(os.sched_getaffinity(0))) if hasattr(os, "sched_getaffinity") else 1


class _IsometryGap(torch.autograd.Function):
    """``||I - W W^T||_F`` with its gradient ``-2 (I - W W^T) W / ||I - W W^T||_F`` written out: two
    (out x out x in) products per step where autograd takes three (it differentiates ``W W^T``
    through both of its operands), each on every core. At 768 x 1536 the penalty was three
    quarters of the fit."""

    @staticmethod
    def forward(ctx, w: torch.Tensor) -> torch.Tensor:
        with torch_threads(matmul_threads()):
            gram = w @ w.T
        gap = torch.eye(w.shape[0], dtype=w.dtype, device=w.device) - gram
        norm = torch.linalg.norm(gap)
        ctx.save_for_backward(w, gap, norm)
        return norm

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        w, gap, norm = ctx.saved_tensors
        with torch_threads(matmul_threads()):
            pull = gap @ w
        return grad * (-2.0 / norm.clamp_min(1e-12)) * pull


def isometry_gap(w: torch.Tensor) -> torch.Tensor:
    """The orthogonality regulariser ``||I - W W^T||_F`` (differentiable)."""
    return _IsometryGap.apply(w)


class VisionOnlyProjection(Configured):
    """Estimator for the vision-only projection (scikit-learn style: ``__init__`` stores the
    settings, :meth:`from_config` takes them from a :class:`~pipeline.config.ProjectionConfig`,
    whose fields are also the defaults here).

    Parameters
    ----------
    dim : output size (256 in the paper); None: :func:`projection_dim` of the input.
    epochs, lr, batch_size : Adam training schedule.
    ortho_weight : weight of ``||I - W W^T||_F``.
    temperature : InfoNCE temperature.
    seed : initialisation and shuffling seed.
    """

    def __init__(self, dim: int | None = ProjectionConfig.dim, epochs: int = ProjectionConfig.epochs,
                 lr: float = ProjectionConfig.lr, batch_size: int = ProjectionConfig.batch_size,
                 ortho_weight: float = ProjectionConfig.ortho_weight,
                 temperature: float = ProjectionConfig.temperature, seed: int = ProjectionConfig.seed):
        self.dim = dim
        self.epochs = epochs
        self.lr = lr
        self.batch_size = batch_size
        self.ortho_weight = ortho_weight
        self.temperature = temperature
        self.seed = seed

    def fit(self, clean: np.ndarray, with_word: np.ndarray, word_alone: np.ndarray,
            word_text: np.ndarray | None = None) -> "VisionOnlyProjection":
        """Fit on aligned rows: ``clean[i]`` is the image that ``with_word[i]`` shows with a word,
        ``word_alone[i]`` that word alone on white, ``word_text[i]`` (optional) its text embedding.
        One torch thread: on 2 shared cores a second one made the fit 6x slower (OpenMP barriers on
        small matrices; README "Detector fidelity")."""
        with torch_threads(1):
            return self._fit(clean, with_word, word_alone, word_text)

    def _fit(self, clean, with_word, word_alone, word_text) -> "VisionOnlyProjection":
        torch.manual_seed(self.seed)
        gen = torch.Generator().manual_seed(self.seed)
        clean_t, ww_t, wa_t = (torch.as_tensor(a, dtype=torch.float32) for a in (clean, with_word, word_alone))
        text_t = None if word_text is None else torch.as_tensor(word_text, dtype=torch.float32)
        in_dim = clean_t.shape[1]
        out_dim = projection_dim(ProjectionConfig(dim=self.dim), in_dim)
        module = ProjectionModule(in_dim, out_dim)
        nn.init.orthogonal_(module.linear.weight)
        opt = torch.optim.Adam(module.parameters(), lr=self.lr, foreach=True)  # same numbers, faster
        n = clean_t.shape[0]
        self.loss_history_ = []
        for _ in range(self.epochs):
            order = torch.randperm(n, generator=gen)
            total = 0.0
            for start in range(0, n, self.batch_size):
                idx = order[start:start + self.batch_size]
                p_clean, p_ww, p_wa = module(clean_t[idx]), module(ww_t[idx]), module(wa_t[idx])
                target = torch.arange(len(idx))
                # image-with-word must find its clean image among clean images AND rendered words
                negatives = [p_clean, p_wa]
                if text_t is not None:
                    negatives.append(module(text_t[idx]))
                loss = _info_nce(p_ww, torch.cat(negatives), target, self.temperature)
                loss = loss + _info_nce(p_clean, p_ww, target, self.temperature)  # symmetric term
                loss = loss + self.ortho_weight * isometry_gap(module.linear.weight)
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += float(loss.detach()) * len(idx)
            self.loss_history_.append(total / n)
        module.eval()
        self.module_ = module
        self.in_dim_ = in_dim
        return self

    def transform(self, x: np.ndarray, batch_size: int = 65536) -> np.ndarray:
        out = []
        with torch.inference_mode():
            for start in range(0, len(x), batch_size):
                out.append(self.module_(torch.as_tensor(np.asarray(x[start:start + batch_size]),
                                                        dtype=torch.float32)).numpy())
        return np.concatenate(out) if out else np.zeros((0, self.module_.linear.out_features), np.float32)

    def torch_module(self) -> ProjectionModule:
        return self.module_

    def state(self) -> dict:
        return {"in_dim": self.in_dim_, "out_dim": self.module_.linear.out_features,
                "weight": self.module_.linear.weight.detach().clone()}

    @classmethod
    def from_state(cls, state: dict) -> "VisionOnlyProjection":
        self = cls(dim=state["out_dim"])
        self.module_ = ProjectionModule(state["in_dim"], state["out_dim"])
        self.module_.linear.weight.data.copy_(state["weight"])
        self.module_.eval()
        self.in_dim_ = state["in_dim"]
        return self
