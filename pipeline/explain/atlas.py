"""The dimension atlas of a run: what each of the 16 dimensions looks at, over a fixed sample of
held-out images, with the images where it is highest and lowest and a sentence in words.
Torch-free: the result's description, its reading and the words (computing it:
:func:`pipeline.explain.atlas_jobs.get_atlas`).

Reading a learned direction by the data set images that activate it most and least is Olah et
al.'s "dataset examples" (Feature Visualization, 2017); the profile numbers are
:mod:`pipeline.explain.profiles`'.

The atlas is a derived result (``<run>/atlas/atlas.json``, :class:`pipeline.store.derived.Derived`)
keyed by the run's models, the relevance settings, the sample (seeded, balanced real/fake among
the held-out images) and the files of the sampled images.

Its JSON (``read_atlas``/``get_atlas``)::

    {"key", "n_images" (profiled), "image_indices", "skipped": [{"index", "message"}],
     "names_available": bool (CLIP text tower), "vocabulary": [words] or None,
     "dimensions": [{"dim", "label" ("d7"), "n_images", "subject_share", "border_share",
                     "textured_share", "concentration", "subject_area", "mean_contribution",
                     "towards_fake", "verdict", "fake_high_towards_fake" (float or None),
                     "top": [{"index", "id", "label", "z", "contribution", "subject_share"}],
                     "bottom": [...same...], "sentence": str,
                     "names": [{"word", "score"}] or None}]}
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from pipeline.store.derived import Derived

ATLAS_FILE = "atlas/atlas.json"
ATLAS_VERSION = 1  # bump when the atlas's fields or numbers change
ATLAS_IMAGES = 64  # held-out images profiled (half real, half fake)
ATLAS_EXAMPLES = 4  # images shown per dimension at each end (highest, lowest)


def atlas_sample(records: list[dict], n_images: int = ATLAS_IMAGES, seed: int = 0) -> list[int]:
    """Record indices of the atlas's sample: held-out images, half real and half fake, seeded (all
    images when the run has no held-out split, e.g. an applied set)."""
    raise NotImplementedError


def atlas_result(run_dir: str | Path, n_images: int = ATLAS_IMAGES, seed: int = 0, *,
                 records: list[dict] | None = None) -> Derived:
    """The atlas of the run as a derived result; ``inputs["indices"]`` is its sample."""
    raise NotImplementedError


def read_atlas(run_dir: str | Path, n_images: int = ATLAS_IMAGES, seed: int = 0) -> dict | None:
    """The kept atlas if it is current, else None; never computes (torch-free)."""
    return atlas_result(run_dir, n_images, seed).read()


def build_atlas(profiles: Sequence, records: list[dict], names: list | None = None,
                vocabulary: Sequence[str] | None = None) -> dict:
    """The atlas's JSON (without ``key``) from the sample's ``ImageProfile``s (and the CLIP-only
    names per dimension, if any)."""
    raise NotImplementedError


def dimension_sentence(entry: dict) -> str:
    """e.g. "d7: mostly background (74% of its relevance), textured regions (66%), concentrated
    (top 10% of patches hold 38%); pushes towards fake in 81% of the fakes it is high on"."""
    raise NotImplementedError


def atlas_lines(atlas: dict) -> list[str]:
    """The atlas as text: a header, then one sentence per dimension (the CLI's output)."""
    raise NotImplementedError


__all__ = ["ATLAS_EXAMPLES", "ATLAS_FILE", "ATLAS_IMAGES", "ATLAS_VERSION", "atlas_lines", "atlas_result",
           "atlas_sample", "build_atlas", "dimension_sentence", "read_atlas"]
