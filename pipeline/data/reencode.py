"""Controlled re-encoding: decode every image and encode it again the same way before it is embedded.

Grommelt et al. ("Fake or JPEG? Revealing Common Biases in Generated Image Detection Datasets",
2024) showed that constraining the JPEG quality and the size of both classes alike removes the
format and size shortcuts of GenImage (cross-generator accuracy rose by more than 11 points). The
re-encoding does that in memory, per image: decode -> (optional) resize the shorter side to ``size`` and
centre-crop a square -> encode as JPEG (fixed quality, 4:2:0, baseline) or PNG -> decode. Every image
of both classes then reaches the encoder through the same codec and at the same size, so the
encoder cannot see the original container, quality or size.

Spec strings (``data.reencode``): ``jpeg[:QUALITY[:SIZE]]`` or ``png[:SIZE]``, e.g. ``"jpeg:90:256"``
(JPEG quality 90, 256x256), ``"jpeg:75"`` (original size), ``"png:224"``. ``None`` / ``""`` = off.

The spec, its parsing and the encoding live in the leaf module :mod:`pipeline.reencode_spec`, so
that ``pipeline.config`` parses ``data.reencode`` once (``DataConfig.reencode_spec``) without
importing this package; the spec stays callable on an image (Pillow is imported on first use).
This module names them for the data package.
"""
from __future__ import annotations

from pipeline.reencode_spec import DEFAULT_JPEG_QUALITY, ReencodeSpec

__all__ = ["DEFAULT_JPEG_QUALITY", "ReencodeSpec"]
