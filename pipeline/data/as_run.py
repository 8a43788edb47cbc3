"""A run's images as the run saw them, and balanced samples of them.

Everything computed after a run from its images (relevance maps, their deletion check, concepts,
the bias probe) must see each image as the run's embedding did: decoded the same way and passed
through the run's controlled re-encoding (``data.reencode``, :mod:`pipeline.data.reencode`), if
any; otherwise an explanation would be of an image the detector never scored. And the checks that
sample a few images take half real, half fake, seeded, so their answer is about both classes.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from pipeline.data.scan import PathRefused, load_image_rgb


def load_as_run(path: Path | PathRefused, cfg, *, min_side: int | None = None) -> Image.Image:
    """Image file ``path`` as the run saw it: decoded (``cfg.data.max_image_pixels``) and
    re-encoded as the run's ``data.reencode`` says.

    ``min_side`` lets a JPEG decode at a reduced scale (``pipeline.data.scan.load_image_rgb``); it
    applies only without re-encoding, which must see the full-size decode the run's embedding saw.

    Raises
    ------
    pipeline.data.scan.BadImageError
        The file cannot be decoded.
    pipeline.data.scan.PathRefused
        ``path`` is a refused path (``RunStore.image_path`` raised it; passed here in its slot).
    """
    if isinstance(path, PathRefused):
        raise path
    spec = cfg.data.reencode_spec
    max_pixels = cfg.data.max_image_pixels
    if spec:
        return spec(load_image_rgb(path, max_pixels))
    return load_image_rgb(path, max_pixels, min_side=min_side)


def balanced_sample(labels: Sequence[int], n: int, seed: int,
                    among: Sequence[int] | None = None) -> list[int]:
    """Up to ``n`` indices, half real (label 0) and half fake (label 1), seeded; sorted.

    When one class is short the other fills in; when both are, unlabelled images (label -1, an
    applied set) fill in last.

    Parameters
    ----------
    labels : one label per image of the run.
    n : how many to take.
    seed : the random generator's seed (the same seed, labels and pool give the same sample).
    among : the indices to sample from (e.g. the held-out images); default all.
    """
    rng = np.random.default_rng(seed)
    pool = np.arange(len(labels)) if among is None else np.asarray(list(among), dtype=int)
    lab = np.asarray(labels, dtype=int)[pool] if len(pool) else np.zeros(0, int)
    real, fake = pool[lab == 0], pool[lab == 1]
    take_fake = min(len(fake), n - n // 2)
    take_real = min(len(real), n - take_fake)
    take_fake = min(len(fake), n - take_real)
    picks: list[int] = []
    for group, k in ((real, take_real), (fake, take_fake)):
        if k:
            picks.extend(rng.choice(group, k, replace=False).tolist())
    want = min(n, len(pool))
    if len(picks) < want:  # too few labelled images: unlabelled ones fill in
        rest = np.setdiff1d(pool, picks)
        picks.extend(rng.choice(rest, want - len(picks), replace=False).tolist())
    return sorted(int(i) for i in picks)


__all__ = ["balanced_sample", "load_as_run"]
