"""Computing what the atlas, the profiles and the subject masks need, once per run (the app's
background jobs and the CLI): each getter reads what is kept and computes the rest, with progress
and cancel as :mod:`pipeline.store.derived` passes them. Reading only, torch-free:
:mod:`pipeline.explain.subject_mask`, :mod:`pipeline.explain.profiles`, :mod:`pipeline.explain.atlas`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

from pipeline.explain.profiles import ImageProfile
from pipeline.explain.subject_mask import SubjectMask
from pipeline.model.run_models import RunModels

Progress = Callable[..., None]
Cancel = Callable[[], bool]
OnError = Callable[[int, str], None]


def get_subject_masks(run_dir: str | Path, indices: Sequence[int], progress: Progress | None = None, *,
                      models: RunModels | None = None, on_error: OnError | None = None,
                      should_cancel: Cancel | None = None) -> dict[int, SubjectMask]:
    """Subject masks of ``indices``: kept ones read, the others computed (the images' maps too, when
    they are not kept: a mask is aligned with its maps). ``progress(done, total)`` per image."""
    raise NotImplementedError


def get_profiles(run_dir: str | Path, indices: Sequence[int], progress: Progress | None = None, *,
                 models: RunModels | None = None, on_error: OnError | None = None,
                 should_cancel: Cancel | None = None) -> dict[int, ImageProfile]:
    """Profiles of ``indices`` (maps and masks computed where missing, then kept)."""
    raise NotImplementedError


def get_atlas(run_dir: str | Path, progress: Progress | None = None, *, n_images: int | None = None,
              seed: int = 0, models: RunModels | None = None, should_cancel: Cancel | None = None,
              recompute: bool = False) -> dict:
    """The run's atlas (:mod:`pipeline.explain.atlas`): read if kept, else computed and kept.

    ``progress(done, total, stage)``, stage in words ("relevance maps and subject masks of 64
    images", "naming the dimensions (CLIP)").
    """
    raise NotImplementedError


__all__ = ["get_atlas", "get_profiles", "get_subject_masks"]
