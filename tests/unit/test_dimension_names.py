"""CLIP-only dimension names (pipeline.explain.dimension_names): the mechanics, on a random CLIP
(the tiny open_clip model: a text tower, no trained weights), checked against the similarity
computed by hand; hidden (None) for an encoder without a text tower."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from pipeline.explain.dimension_names import PROMPT, masked_region, name_dimensions
from pipeline.model.encoders import TinyEncoder

WORDS = ("grass", "a face", "the sky", "noise")


@pytest.fixture(scope="module")
def clip():
    return TinyEncoder(seed=0)


def _images(seed: int, n: int = 2) -> list[np.ndarray]:
    return list(np.random.default_rng(seed).integers(0, 256, (n, 64, 64, 3), dtype=np.uint8))


def test_names_are_the_words_nearest_to_the_regions(clip):
    regions = [_images(0), _images(1, 3), []]
    names = name_dimensions(clip, regions, WORDS, top=2)
    assert len(names) == 3 and names[2] == []
    with torch.inference_mode():
        text = F.normalize(clip.encode_text([PROMPT.format(w) for w in WORDS]), dim=-1)
        for k in (0, 1):
            emb = F.normalize(clip.embed(torch.stack([clip.preprocess(Image.fromarray(im)) for im in regions[k]])), dim=-1)
            cos = (text @ F.normalize(emb.mean(0), dim=-1)).numpy()
            best = np.argsort(-cos)[:2]
            assert [n["word"] for n in names[k]] == [WORDS[j] for j in best]
            assert [n["score"] for n in names[k]] == pytest.approx(cos[best].tolist(), abs=1e-5)
            assert names[k][0]["score"] >= names[k][1]["score"]


def test_no_text_tower_no_names():
    class NoText:
        has_text_tower = False

    assert name_dimensions(NoText(), [_images(0)], WORDS) is None


def test_masked_region_keeps_what_the_map_points_at():
    rgb = np.full((4, 4, 3), 200, np.uint8)
    relevance = np.zeros((4, 4))
    relevance[:2] = 1.0  # top half
    out = masked_region(rgb, relevance)
    assert (out[:2] == 200).all() and (out[2:] == 128).all() and (rgb == 200).all()
