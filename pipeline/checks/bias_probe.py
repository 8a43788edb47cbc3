"""Bias probe: do class-neutral transformations move one class towards the other?

Ricker et al. ("BIAS-ID", arXiv 2605.31153, 2026) separate two failures that overall accuracy
mixes up. A transformation **bias**: a class-neutral change (re-encoding, resizing) moves decisions
in the direction of a learned shortcut, e.g. JPEG-compressing fakes makes them "real" while the
reals, JPEGs already, do not move: the detector has learned the compression. A lack of
**robustness**: the change degrades both classes alike. Grommelt et al. ("Fake or JPEG?", 2024)
found exactly the first in detectors trained on GenImage.

:func:`bias_probe` applies each transformation (JPEG at a few qualities, PNG, resizing down and back
up, a centre crop) to held-out images of both classes, scores originals and transformed images
with the caller's detector, and reports per transformation and per class the mean shift of
p(fake), the fraction of decisions that flip and the accuracy before and after, with a verdict in
words: ``"bias"`` (one class moves towards the other, the other stays or moves away), ``"slight"``
(the same, by less than :data:`MIN_EFFECT`), ``"robustness"`` (both move towards each other
alike) or ``"stable"`` (neither moves towards the other).
Unreadable images are reported by index with their reason; the probe goes on.
"""
from __future__ import annotations

import io
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
from PIL import Image

CLASSES = ("real", "fake")


@dataclass(frozen=True)
class Transform:
    """A named class-neutral image transformation (RGB in, RGB out)."""

    name: str  # short id, e.g. "jpeg75"
    words: str  # for messages, e.g. "JPEG quality 75"
    fn: Callable[[Image.Image], Image.Image]

    def __call__(self, im: Image.Image) -> Image.Image:
        return self.fn(im)


def _reencoded(im: Image.Image, **save) -> Image.Image:
    buf = io.BytesIO()
    im.convert("RGB").save(buf, **save)
    buf.seek(0)
    with Image.open(buf) as out:
        return out.convert("RGB")


def jpeg(quality: int) -> Transform:
    return Transform(f"jpeg{quality}", f"JPEG quality {quality}",
                     lambda im: _reencoded(im, format="JPEG", quality=quality))


def png() -> Transform:
    return Transform("png", "PNG re-encoding", lambda im: _reencoded(im, format="PNG", compress_level=1))


def resize(factor: float) -> Transform:
    def fn(im: Image.Image) -> Image.Image:
        small = im.resize((max(1, round(im.width * factor)), max(1, round(im.height * factor))),
                          Image.Resampling.BICUBIC)
        return small.resize(im.size, Image.Resampling.BICUBIC)

    return Transform(f"resize{factor:g}", f"resizing to {factor:g}x and back", fn)


def centre_crop(fraction: float) -> Transform:
    def fn(im: Image.Image) -> Image.Image:
        w, h = max(1, round(im.width * fraction)), max(1, round(im.height * fraction))
        left, top = (im.width - w) // 2, (im.height - h) // 2
        return im.crop((left, top, left + w, top + h))

    return Transform(f"crop{fraction:g}", f"centre crop to {fraction:.0%}", fn)


def to_size(side: int) -> Transform:
    """Both classes to one ``side`` x ``side`` square (shorter side resized with Lanczos, centre
    crop: as ``data.reencode`` with a size does); added to the probe when the run's checks flag the
    size (``pipeline.checks.confound.equalising_transforms``): a size shortcut moves one class."""
    if not (isinstance(side, int) and side >= 8):
        raise ValueError(f"to_size needs a side of at least 8 pixels, not {side!r}")

    def fn(im: Image.Image) -> Image.Image:
        from PIL import ImageOps

        return ImageOps.fit(im.convert("RGB"), (side, side), Image.Resampling.LANCZOS, centering=(0.5, 0.5))

    return Transform(f"size{side}", f"both classes to {side}x{side}", fn)


DEFAULT_TRANSFORMS: tuple[Transform, ...] = (jpeg(95), jpeg(75), jpeg(50), png(), resize(0.5), centre_crop(0.8))


def _reason(exc: Exception) -> str:
    return getattr(exc, "reason", None) or f"{type(exc).__name__}: {exc}"


def _class_stats(before: np.ndarray, after: np.ndarray, label: int, threshold: float) -> dict:
    ok = np.isfinite(before) & np.isfinite(after)
    b, a = before[ok], after[ok]
    if not len(b):
        return {"n": 0, "mean_before": None, "mean_after": None, "mean_shift": None, "flip_fraction": None,
                "accuracy_before": None, "accuracy_after": None}
    correct = (lambda p: p > threshold) if label == 1 else (lambda p: p <= threshold)
    return {"n": int(len(b)), "mean_before": round(float(b.mean()), 4), "mean_after": round(float(a.mean()), 4),
            "mean_shift": round(float((a - b).mean()), 4),
            "flip_fraction": round(float(((a > threshold) != (b > threshold)).mean()), 4),
            "accuracy_before": round(float(correct(b).mean()), 4), "accuracy_after": round(float(correct(a).mean()), 4)}


# Calibrated on real faces (tests/integration/test_bias_probe_real.py, README "Data checks"): a
# clean detector drifts by up to ~0.06 in mean p(fake) under JPEG 50 or halving the size (fine
# detail, where generators leave traces, is lost), one class a little more than the other; a
# learned compression shortcut moves its class by ~0.9. Below MIN_EFFECT an asymmetric move is
# "slight": shown, not a warning.
MIN_EFFECT = 0.10
SLIGHT_EFFECT = 0.05


def verdict(real: dict, fake: dict, min_effect: float = MIN_EFFECT, ratio: float = 3.0,
            slight: float = SLIGHT_EFFECT) -> tuple[str, str]:
    """("bias" | "slight" | "robustness" | "stable" | "not scored", reason) from the per-class stats.

    A class moves *towards the other* when its mean p(fake) does (reals up, fakes down). Bias: one
    class does by at least ``min_effect`` and the other by less than 1/``ratio`` of that (or not at
    all); slight: the same asymmetry, by at least ``slight`` but less than ``min_effect``;
    robustness: both do (by at least ``slight``), alike.
    """
    if not real["n"] or not fake["n"]:
        return "not scored", "no images of one class could be scored"
    toward = {"real": real["mean_shift"], "fake": -fake["mean_shift"]}
    text = {c: f"{s['mean_shift']:+.2f}, {s['flip_fraction']:.0%} flip" for c, s in (("real", real), ("fake", fake))}
    mover = max(toward, key=toward.get)
    other = "fake" if mover == "real" else "real"
    if toward[mover] < slight:
        return "stable", f"no class moves towards the other (mean p(fake): reals {text['real']}; fakes {text['fake']})"
    if toward[other] < toward[mover] / ratio:
        how = ("stay" if abs(toward[other]) < slight else
               f"move further from {mover}" if toward[other] < 0 else "move much less")
        words = f"{mover}s move towards {other} (mean p(fake) {text[mover]}) while {other}s {how} ({text[other]})"
        if toward[mover] >= min_effect:
            return "bias", words
        return "slight", f"{words}; less than {min_effect:.2f}, as a clean detector drifts when fine detail is lost"
    return "robustness", (f"both classes move towards the other alike (reals {text['real']}; fakes {text['fake']})")


def bias_probe(load_image: Callable[[int], Image.Image], indices: Sequence[int], labels: Sequence[int],
               score: Callable[[list[Image.Image]], np.ndarray], transforms: Sequence[Transform] = DEFAULT_TRANSFORMS,
               *, batch_size: int = 32, threshold: float = 0.5, min_effect: float = MIN_EFFECT,
               progress: Callable[[int, int], None] | None = None) -> dict:
    """Score held-out images before and after each class-neutral transformation.

    Parameters
    ----------
    load_image : ``load_image(i)`` -> the RGB image of index ``i`` (raises for an unreadable one;
        a ``reason`` attribute, as ``pipeline.data.scan.BadImageError`` has, is reported as is).
    indices : the images to probe (e.g. the held-out rows of a run).
    labels : 0 real / 1 fake, one per entry of ``indices``.
    score : ``score(images)`` -> p(fake) per image, shape (len(images),).
    transforms : the transformations (:data:`DEFAULT_TRANSFORMS`).
    batch_size : images loaded and scored together.
    threshold : decision threshold on p(fake) for flips and accuracy.
    min_effect : smallest mean shift towards the other class that counts as moving.
    progress : ``progress(done, total)`` in images scored (originals and transformed).

    Returns
    -------
    dict (JSON-able)
        ``n``, ``n_real``, ``n_fake``, ``threshold``, ``min_effect``, ``seconds``; ``bad``: [{``index``,
        ``reason``, ``transform`` (None when the image itself could not be loaded or scored)}];
        ``original``: {"real"/"fake": {``n``, ``mean_p_fake``, ``accuracy``}}; ``transforms``:
        [{``name``, ``words``, ``verdict``, ``reason``, ``real``/``fake``: {``n``, ``mean_before``,
        ``mean_after``, ``mean_shift``, ``flip_fraction``, ``accuracy_before``, ``accuracy_after``}}];
        ``bias``: names of the transformations whose verdict is "bias".
    """
    started = time.perf_counter()
    indices = [int(i) for i in indices]
    y = np.asarray(labels, dtype=int)
    if len(y) != len(indices):
        raise ValueError(f"labels ({len(y)}) must have one entry per index ({len(indices)})")
    n = len(indices)
    before = np.full(n, np.nan)
    after = np.full((len(transforms), n), np.nan)
    bad: list[dict] = []
    total, done = n * (1 + len(transforms)), 0

    def scored(images: list[Image.Image]) -> np.ndarray:
        p = np.asarray(score(images), dtype=np.float64).reshape(-1)
        if len(p) != len(images):
            raise ValueError(f"score returned {len(p)} values for {len(images)} images")
        return p

    for start in range(0, n, batch_size):
        rows, images = [], []
        for j in range(start, min(start + batch_size, n)):
            try:
                images.append(load_image(indices[j]).convert("RGB"))
                rows.append(j)
            except Exception as e:  # one unreadable image must not end the probe
                bad.append({"index": indices[j], "reason": _reason(e), "transform": None})
        if images:
            before[rows] = scored(images)
            for t, transform in enumerate(transforms):
                ok_rows, changed = [], []
                for j, im in zip(rows, images):
                    try:
                        changed.append(transform(im))
                        ok_rows.append(j)
                    except Exception as e:
                        bad.append({"index": indices[j], "reason": _reason(e), "transform": transform.name})
                if changed:
                    after[t, ok_rows] = scored(changed)
        done += (min(start + batch_size, n) - start) * (1 + len(transforms))
        if progress:
            progress(done, total)

    original = {}
    for label, cls in enumerate(CLASSES):
        p = before[(y == label) & np.isfinite(before)]
        acc = (p > threshold) if label == 1 else (p <= threshold)
        original[cls] = {"n": int(len(p)), "mean_p_fake": round(float(p.mean()), 4) if len(p) else None,
                         "accuracy": round(float(acc.mean()), 4) if len(p) else None}
    results = []
    for t, transform in enumerate(transforms):
        stats = {cls: _class_stats(before[y == label], after[t][y == label], label, threshold)
                 for label, cls in enumerate(CLASSES)}
        v, why = verdict(stats["real"], stats["fake"], min_effect)
        results.append({"name": transform.name, "words": transform.words, "verdict": v,
                        "reason": f"{transform.words}: {why}", **stats})
    return {"n": n, "n_real": int((y == 0).sum()), "n_fake": int((y == 1).sum()), "threshold": threshold,
            "min_effect": min_effect, "bad": bad, "original": original, "transforms": results,
            "bias": [r["name"] for r in results if r["verdict"] == "bias"],
            "slight": [r["name"] for r in results if r["verdict"] == "slight"],
            "seconds": round(time.perf_counter() - started, 3)}
