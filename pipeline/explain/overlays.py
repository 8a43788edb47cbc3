"""Drawing of relevance maps and concept patches as PIL images (the only drawing code).

Relevance in [0, 1] is coloured with a sequential map (``inferno``-like anchors, interpolated in
numpy) and blended with an opacity that grows with relevance, so irrelevant areas keep the photo
visible. The signed aggregate uses the app's class colours: orange where the evidence is for
*fake*, blue where it is for *real*, transparent at zero. Both are drawn over a muted (grey,
dimmed) copy of the photo: over the photo's own colours, an orange-to-yellow map vanishes on a
yellow flower or a sunset (seen on the demo set); over grey it reads on any image. The colour
photo is shown next to the maps in the app and on the CLI sheets.
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from pipeline.store.run_store import atomic_write_bytes

# Anchors of matplotlib's "inferno" (public domain colour map), evenly spaced on [0, 1].
_INFERNO = np.array([[0, 0, 4], [40, 11, 84], [101, 21, 110], [159, 42, 99], [212, 72, 66],
                     [245, 125, 21], [250, 193, 39], [252, 255, 164]], dtype=np.float32)
REAL_RGB = (31, 119, 180)  # plotly/tab10 blue: real
FAKE_RGB = (255, 127, 14)  # plotly/tab10 orange: fake


def colour_scale(anchors: np.ndarray = _INFERNO) -> list[str]:
    """CSS colours of the relevance map's anchors, low to high (for a colour bar)."""
    return [f"rgb({r:.0f},{g:.0f},{b:.0f})" for r, g, b in anchors]


def colorize(values: np.ndarray, anchors: np.ndarray = _INFERNO) -> np.ndarray:
    """(H, W) values in [0, 1] -> (H, W, 3) uint8 colours by piecewise-linear interpolation."""
    v = np.clip(np.nan_to_num(values.astype(np.float32)), 0.0, 1.0) * (len(anchors) - 1)
    lo = np.floor(v).astype(int).clip(0, len(anchors) - 2)
    t = (v - lo)[..., None]
    return np.round(anchors[lo] * (1 - t) + anchors[lo + 1] * t).astype(np.uint8)


MUTED_GAIN, MUTED_OFFSET = 0.55, 40.0  # grey base = offset + gain * luminance (40..180)


def muted(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 -> float32 grey copy, dimmed to 40..180 so that colours stand out on it."""
    lum = rgb.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    return np.repeat((MUTED_OFFSET + MUTED_GAIN * lum)[..., None], 3, axis=2)


def _relevance_paint(relevance: np.ndarray, max_alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """(colour (H, W, 3), opacity (H, W, 1)) of a [0, 1] relevance map, both float32."""
    rel = np.clip(relevance.astype(np.float32), 0, 1)[..., None]
    alpha = max_alpha * np.sqrt(rel)  # opacity follows relevance: irrelevant areas show the photo
    return colorize(rel[..., 0]).astype(np.float32), alpha


def _signed_paint(signed: np.ndarray, scale: float | None, max_alpha: float
                  ) -> tuple[np.ndarray, np.ndarray]:
    """(colour, opacity) of a signed map: orange > 0, blue < 0, opacity ~ magnitude / ``scale``."""
    s = signed.astype(np.float32)
    scale = float(np.abs(s).max()) if scale is None else float(scale)
    mag = np.clip(np.abs(s) / scale, 0, 1) if scale > 0 else np.zeros_like(s)
    colour = np.where((s > 0)[..., None], np.array(FAKE_RGB, np.float32), np.array(REAL_RGB, np.float32))
    return colour, (max_alpha * mag)[..., None]


def _blend(rgb: np.ndarray, paint: tuple[np.ndarray, np.ndarray]) -> Image.Image:
    colour, alpha = paint
    return Image.fromarray(np.round(muted(rgb) * (1 - alpha) + colour * alpha).astype(np.uint8))


def _layer(paint: tuple[np.ndarray, np.ndarray]) -> Image.Image:
    colour, alpha = paint
    rgba = np.concatenate([colour, alpha * 255.0], axis=2)
    return Image.fromarray(np.round(np.clip(rgba, 0, 255)).astype(np.uint8), "RGBA")


def overlay_relevance(rgb: np.ndarray, relevance: np.ndarray, max_alpha: float = 0.85) -> Image.Image:
    """Blend a [0, 1] relevance map over a muted copy of an (H, W, 3) uint8 image."""
    _check_same_size(rgb, relevance)
    return _blend(rgb, _relevance_paint(relevance, max_alpha))


def overlay_signed(rgb: np.ndarray, signed: np.ndarray, scale: float | None = None,
                   max_alpha: float = 0.8) -> Image.Image:
    """Blend a signed map over a muted image: orange for > 0 (fake evidence), blue for < 0 (real).

    ``scale`` is the magnitude drawn fully opaque (default: the map's largest magnitude).
    """
    _check_same_size(rgb, signed)
    return _blend(rgb, _signed_paint(signed, scale, max_alpha))


def relevance_layer(relevance: np.ndarray, max_alpha: float = 0.85) -> Image.Image:
    """A [0, 1] relevance map as a transparent RGBA layer (the colours of
    :func:`overlay_relevance`, alpha = its opacity), to lay over the original photo."""
    return _layer(_relevance_paint(relevance, max_alpha))


def signed_layer(signed: np.ndarray, scale: float | None = None, max_alpha: float = 0.8) -> Image.Image:
    """A signed map as a transparent RGBA layer: orange for > 0 (fake), blue for < 0 (real),
    transparent at zero (the colours and opacity of :func:`overlay_signed`)."""
    return _layer(_signed_paint(signed, scale, max_alpha))


def sheet(tiles: Sequence[Sequence[Image.Image | None]], labels: Sequence[Sequence[str]] | None = None,
          row_titles: Sequence[str] | None = None, tile_size: int = 112, pad: int = 4) -> Image.Image:
    """Arrange tiles in rows (a ``None`` tile leaves its slot empty), with optional captions."""
    font = ImageFont.load_default()
    n_cols = max((len(r) for r in tiles), default=0)
    caption_h = 12 if labels is not None else 0
    title_w = 120 if row_titles is not None else 0
    cell_h = tile_size + caption_h + pad
    width = title_w + n_cols * (tile_size + pad) + pad
    canvas = Image.new("RGB", (max(width, 1), max(len(tiles) * cell_h + pad, 1)), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    for r, row in enumerate(tiles):
        y = pad + r * cell_h
        if row_titles is not None:
            draw.multiline_text((pad, y + 2), row_titles[r], fill=(0, 0, 0), font=font)
        for c, tile in enumerate(row):
            x = title_w + pad + c * (tile_size + pad)
            if tile is not None:
                canvas.paste(tile.convert("RGB").resize((tile_size, tile_size), Image.BILINEAR), (x, y))
            if labels is not None and c < len(labels[r]):
                draw.text((x, y + tile_size + 1), labels[r][c], fill=(0, 0, 0), font=font)
    return canvas


def relevance_sheet(rgb: np.ndarray, maps: np.ndarray, aggregate: np.ndarray, z: np.ndarray,
                    contributions: np.ndarray, logit: float, per_row: int = 6) -> Image.Image:
    """The image, its aggregate map and its K per-dimension overlays on one sheet."""
    tiles = [Image.fromarray(rgb), overlay_signed(rgb, aggregate)]
    captions = ["image", f"aggregate logit {logit:+.2f}"]
    for k in range(len(maps)):
        tiles.append(overlay_relevance(rgb, maps[k]))
        captions.append(f"d{k:02d} z{z[k]:+.2f} c{contributions[k]:+.2f}")
    rows = [tiles[i:i + per_row] for i in range(0, len(tiles), per_row)]
    caps = [captions[i:i + per_row] for i in range(0, len(captions), per_row)]
    return sheet(rows, caps, tile_size=160)


def png_bytes(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG", optimize=False)
    return buf.getvalue()


def save_png(image: Image.Image, path: str | Path) -> Path:
    """Write ``image`` as PNG atomically; returns the path."""
    atomic_write_bytes(path, png_bytes(image))
    return Path(path)


def _check_same_size(rgb: np.ndarray, values: np.ndarray) -> None:
    if rgb.shape[:2] != values.shape:
        raise ValueError(f"map of shape {values.shape} does not fit an image of {rgb.shape[:2]}")
