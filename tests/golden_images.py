"""Generated images for the atlas golden test (issue 25): a centred subject on a background, where
reals and fakes differ only in the fine texture of one of the two.

The subject is a shaded ball of a saturated colour on a dull, low-contrast ground, so that it is an
object to DINOv2 (the subject mask finds it: IoU ~0.93 with the true disc) whatever the texture.
The class's texture is on one side only: reals get +-``AMPLITUDE`` iid pixel noise there, fakes a
4-px checkerboard of the same amplitude and a random phase (an upsampling artefact). The other side
gets the reals' iid noise in both classes, so each side has fine detail and only one side's detail
tells the classes apart (a test of where the evidence is must tell the two kinds of detail apart,
not just find the detail). Each image's colours, shading and ground are drawn afresh, so the
texture is all that tells the classes apart.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

SIZE, RADIUS, EDGE = 224, 80, 6  # px: the tiny encoder's input; the ball covers ~40% of it
AMPLITUDE = 0.2  # of the [0, 1] intensity range
WHERE = ("background", "subject")  # where the fakes' texture is


def disc_alpha() -> np.ndarray:
    """(SIZE, SIZE) float in [0, 1]: the subject's soft-edged opacity."""
    yy, xx = np.mgrid[:SIZE, :SIZE]
    r = np.hypot(yy - SIZE / 2, xx - SIZE / 2)
    return np.clip((RADIUS - r) / EDGE + 0.5, 0, 1)


def true_subject() -> np.ndarray:
    """(SIZE, SIZE) bool: where the subject is."""
    return disc_alpha() > 0.5


def _smooth(rng: np.random.Generator, scale: int) -> np.ndarray:
    n = rng.normal(size=(SIZE // scale + 2, SIZE // scale + 2, 3))
    im = Image.fromarray(((n - n.min()) / np.ptp(n) * 255).astype(np.uint8)).resize((SIZE, SIZE), Image.BICUBIC)
    return np.asarray(im, float) / 255


def _texture(rng: np.random.Generator, fake: bool) -> np.ndarray:
    if fake:
        yy, xx = np.mgrid[:SIZE, :SIZE] + rng.integers(0, 4, 2)[:, None, None]
        return (((yy // 2 + xx // 2) % 2) * 2 - 1)[..., None] * AMPLITUDE
    return rng.choice([-1, 1], size=(SIZE, SIZE, 1)) * AMPLITUDE


def golden_image(rng: np.random.Generator, where: str, fake: bool) -> Image.Image:
    """One image; ``where`` ("background" or "subject") carries the class's texture."""
    yy, xx = np.mgrid[:SIZE, :SIZE]
    ground = 0.25 * _smooth(rng, 32) + 0.35 + 0.1 * rng.uniform(-1, 1, 3)
    colour = rng.uniform(0, 1, 3)
    colour[rng.integers(3)] = 1.0
    colour[rng.integers(3)] *= 0.2
    lx, ly = rng.uniform(-0.5, 0.5, 2)  # where the light hits the ball
    r2 = ((xx - SIZE / 2) / RADIUS - lx) ** 2 + ((yy - SIZE / 2) / RADIUS - ly) ** 2
    ball = colour * np.clip(1.1 - 0.5 * r2, 0.3, 1)[..., None] * 0.85 + 0.1 * _smooth(rng, 16)
    neutral = _texture(rng, False)  # the same kind of detail on the other side, in both classes
    if where == "background":
        ground, ball = ground + _texture(rng, fake), ball + neutral
    else:
        ball, ground = ball + _texture(rng, fake), ground + neutral
    alpha = disc_alpha()[..., None]
    return Image.fromarray(((alpha * ball + (1 - alpha) * ground).clip(0, 1) * 255).astype(np.uint8))


def golden_images(where: str, n_per_class: int, seed: int) -> tuple[list[Image.Image], np.ndarray]:
    """``2 * n_per_class`` images alternating real, fake, and their labels (1 = fake)."""
    rng = np.random.default_rng(seed)
    labels = np.arange(2 * n_per_class) % 2
    return [golden_image(rng, where, bool(y)) for y in labels], labels


def write_golden_set(root: Path, where: str, n_per_class: int, seed: int) -> Path:
    """``root/gen/0_real|1_fake/*.png`` (the layout the pipeline scans); returns ``root``."""
    images, labels = golden_images(where, n_per_class, seed)
    for i, (image, y) in enumerate(zip(images, labels)):
        folder = root / "gen" / ("1_fake" if y else "0_real")
        folder.mkdir(parents=True, exist_ok=True)
        image.save(folder / f"{i:03d}.png")
    return root
