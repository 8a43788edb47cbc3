"""CLIP-only: name what each dimension's top image regions show, against a small vocabulary of
scene and artefact words, by zero-shot similarity (as SynthCLIC, Willi et al. 2026, names a CLIP
detector's directions with text concepts).

For each dimension, its highest images' regions (the image masked by the dimension's map: pixels
below the map's median greyed out) are embedded by the encoder's image tower, averaged, and
compared with the text tower's embeddings of ``"a photo of {word}"``; the best words with their
cosine similarity name the dimension. Only an encoder with a text tower (open_clip CLIP) can do
this: with the stand-in the names are None and the app hides the column.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

VOCABULARY = (  # scene words, then artefact words
    "a face", "hair", "skin", "eyes", "a person", "an animal", "fur", "a bird", "a building", "a car",
    "the sky", "grass", "trees", "water", "a wall", "a floor", "a room", "food", "text",
    "a blurry background", "a smooth gradient", "a repeating texture", "noise", "sharp edges",
    "checkerboard artifacts", "a watermark", "a plain background", "bokeh",
)
PROMPT = "a photo of {}"
WORDS_PER_DIMENSION = 3


def masked_region(rgb: np.ndarray, relevance: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8: ``rgb`` with the pixels where ``relevance`` (H, W) is below its median
    replaced by mid grey, so the image tower sees the region the map points at."""
    out = np.array(rgb, dtype=np.uint8, copy=True)
    out[relevance < np.median(relevance)] = 128
    return out


def name_dimensions(encoder, regions: Sequence[Sequence[np.ndarray]],
                    vocabulary: Sequence[str] = VOCABULARY, top: int = WORDS_PER_DIMENSION
                    ) -> list[list[dict]] | None:
    """Per dimension, its ``top`` words ``[{"word", "score"}]`` (best first), from its regions
    (``regions[k]``: uint8 images); None when ``encoder`` has no text tower."""
    if not encoder.has_text_tower:
        return None
    with torch.inference_mode():
        text = F.normalize(encoder.encode_text([PROMPT.format(w) for w in vocabulary]), dim=-1)
        names = []
        for images in regions:
            if not len(images):
                names.append([])
                continue
            batch = torch.stack([encoder.preprocess(Image.fromarray(np.asarray(im, np.uint8))) for im in images])
            image = F.normalize(F.normalize(encoder.embed(batch), dim=-1).mean(dim=0), dim=-1)
            scores = (text @ image).cpu().numpy()
            best = np.argsort(-scores, kind="stable")[:top]
            names.append([{"word": vocabulary[j], "score": float(scores[j])} for j in best])
    return names


__all__ = ["PROMPT", "VOCABULARY", "WORDS_PER_DIMENSION", "masked_region", "name_dimensions"]
