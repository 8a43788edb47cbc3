"""A controlled re-encoding spec (``data.reencode``): parsed once, by the config, and applied per image.

Spec strings: ``jpeg[:QUALITY[:SIZE]]`` or ``png[:SIZE]``, e.g. ``"jpeg:90:256"`` (JPEG quality 90,
256x256), ``"jpeg:75"`` (original size), ``"png:224"``. ``None`` / ``""`` = off. Why and how the
images are re-encoded: :mod:`pipeline.data.reencode`.

A leaf module: it imports nothing from ``pipeline`` (``pipeline.config`` parses ``data.reencode``
with it, and ``pipeline.data`` imports the config), and Pillow only when an image is re-encoded.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from PIL import Image

DEFAULT_JPEG_QUALITY = 90


@dataclass(frozen=True)
class ReencodeSpec:
    """One way of re-encoding every image; callable on an RGB image, with a cache ``key``."""

    format: str  # "jpeg" | "png"
    quality: int | None = None  # JPEG quality 1..100 (None for PNG)
    size: int | None = None  # side of the square output (shorter side resized, centre crop); None keeps

    def __post_init__(self):
        if self.format not in ("jpeg", "png"):
            raise ValueError(f"re-encoding format must be jpeg or png, not {self.format!r}")
        if self.format == "jpeg" and not (isinstance(self.quality, int) and 1 <= self.quality <= 100):
            raise ValueError(f"JPEG re-encoding quality must be an integer 1..100, not {self.quality!r}")
        if self.format == "png" and self.quality is not None:
            raise ValueError("PNG re-encoding takes no quality")
        if self.size is not None and not (isinstance(self.size, int) and 8 <= self.size <= 8192):
            raise ValueError(f"re-encoding size must be an integer 8..8192 pixels, not {self.size!r}")

    @classmethod
    def parse(cls, text: str | None) -> "ReencodeSpec | None":
        """``"jpeg:90:256"`` -> ReencodeSpec("jpeg", 90, 256); None or "" -> None (off)."""
        if text is None or not str(text).strip():
            return None
        parts = [p.strip() for p in str(text).strip().lower().split(":")]
        fmt = {"jpg": "jpeg"}.get(parts[0], parts[0])
        try:
            if fmt == "jpeg" and len(parts) <= 3:
                quality = int(parts[1]) if len(parts) > 1 and parts[1] else DEFAULT_JPEG_QUALITY
                size = int(parts[2]) if len(parts) > 2 and parts[2] else None
                return cls("jpeg", quality, size)
            if fmt == "png" and len(parts) <= 2:
                return cls("png", None, int(parts[1]) if len(parts) > 1 and parts[1] else None)
        except ValueError as e:
            raise ValueError(f"bad re-encoding spec {text!r}: {e}; expected jpeg[:QUALITY[:SIZE]] "
                             f"or png[:SIZE], e.g. jpeg:90:256") from e
        raise ValueError(f"bad re-encoding spec {text!r}: expected jpeg[:QUALITY[:SIZE]] or png[:SIZE], "
                         f"e.g. jpeg:90:256")

    @property
    def key(self) -> str:
        """Stable short name for cache keys: ``jpeg-q90-s256``, ``png-full``."""
        parts = [self.format] + ([f"q{self.quality}"] if self.quality is not None else [])
        return "-".join(parts + [f"s{self.size}" if self.size else "full"])

    @property
    def words(self) -> str:
        """For messages: "JPEG quality 90, 256x256"."""
        what = f"JPEG quality {self.quality}" if self.format == "jpeg" else "PNG"
        return f"{what}, {f'{self.size}x{self.size}' if self.size else 'original size'}"

    def neutralised_groups(self) -> tuple[str, ...]:
        """Fact groups (``pipeline.data.filefacts.FactColumn.group``) the encoder can no longer see."""
        return ("format", "compression", "mode") + (("size",) if self.size else ())

    def __call__(self, im: "Image.Image") -> "Image.Image":
        """Re-encode one RGB image in memory and decode it again (RGB out)."""
        import io

        from PIL import Image, ImageOps

        im = im.convert("RGB") if im.mode != "RGB" else im
        if self.size:
            im = ImageOps.fit(im, (self.size, self.size), Image.Resampling.LANCZOS, centering=(0.5, 0.5))
        buf = io.BytesIO()
        if self.format == "jpeg":
            im.save(buf, "JPEG", quality=self.quality, subsampling=2, progressive=False, optimize=False)
        else:
            im.save(buf, "PNG", compress_level=1)  # lossless: the level changes only the bytes, not pixels
        buf.seek(0)
        with Image.open(buf) as out:
            return out.convert("RGB")
