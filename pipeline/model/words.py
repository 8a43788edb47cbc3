"""Rendered words for the vision-only projection (Materzynska et al., CVPR 2022, "Disentangling
visual and written concepts in CLIP").

Random 3-5 letter lower-case strings drawn in black, bold sans, 20-40 pt at a random position on a
224x224 image, and the same word alone on white. Deterministic for a given ``numpy`` generator.
"""
from __future__ import annotations

import string
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

CANVAS = 224
_FONT_CANDIDATES = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Bold.ttf",
]


@lru_cache(maxsize=32)
def _font(size: int) -> ImageFont.ImageFont:
    for p in _FONT_CANDIDATES:
        if Path(p).exists():
            return ImageFont.truetype(p, size)
    return ImageFont.load_default(size=size)  # Pillow's bundled scalable font


def random_words(rng: np.random.Generator, n: int) -> list[str]:
    letters = np.array(list(string.ascii_lowercase))
    return ["".join(rng.choice(letters, size=int(rng.integers(3, 6)))) for _ in range(n)]


def _square(image: Image.Image) -> Image.Image:
    """Resize the shorter side to 224 and centre-crop, so words land inside what encoders see."""
    w, h = image.size
    s = CANVAS / min(w, h)
    im = image.resize((max(CANVAS, round(w * s)), max(CANVAS, round(h * s))), Image.BICUBIC)
    left, top = (im.width - CANVAS) // 2, (im.height - CANVAS) // 2
    return im.crop((left, top, left + CANVAS, top + CANVAS))


def draw_word(image: Image.Image, word: str, rng: np.random.Generator) -> Image.Image:
    """``image`` (any size) squared to 224x224 with ``word`` drawn at a random place."""
    canvas = _square(image.convert("RGB"))
    font = _font(int(rng.integers(20, 41)))
    draw = ImageDraw.Draw(canvas)
    left, top, right, bottom = draw.textbbox((0, 0), word, font=font)
    tw, th = right - left, bottom - top
    x = int(rng.integers(0, max(1, CANVAS - tw)))
    y = int(rng.integers(0, max(1, CANVAS - th)))
    draw.text((x - left, y - top), word, fill=(0, 0, 0), font=font)
    return canvas


def word_alone(word: str, rng: np.random.Generator) -> Image.Image:
    return draw_word(Image.new("RGB", (CANVAS, CANVAS), (255, 255, 255)), word, rng)
