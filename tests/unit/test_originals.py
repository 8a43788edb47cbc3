"""pipeline.represent.originals: which files a browser is sent as they are, conversions, and the square of
the original that the encoders see."""
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from pipeline.data.scan import BadImageError, load_image_rgb
from pipeline.represent.originals import convert, inspect, model_input_box

MAX = 89_478_485


def png_header(width: int, height: int) -> bytes:
    """A PNG that declares ``width`` x ``height`` pixels and holds none (a decompression bomb's
    header: decoders read the size before any pixel)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))


def test_plain_browser_formats_are_sent_as_they_are_others_are_not(tmp_path):
    rgb = Image.new("RGB", (30, 20), (10, 200, 30))
    rgb.save(tmp_path / "a.png")
    rgb.save(tmp_path / "a.jpg")
    rgb.save(tmp_path / "a.webp")
    rgb.save(tmp_path / "a.tif")
    rgb.save(tmp_path / "a.bmp")
    Image.new("CMYK", (30, 20)).save(tmp_path / "cmyk.jpg")
    Image.fromarray(np.full((20, 30), 40000, np.uint16)).save(tmp_path / "deep.png")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    rgb.save(tmp_path / "turned.jpg", exif=exif)
    for name in ("a.png", "a.jpg", "a.webp"):
        info = inspect(tmp_path / name, MAX)
        assert info.as_is and (info.width, info.height) == (30, 20), name
    for name, why in (("a.tif", "TIFF"), ("a.bmp", "BMP"), ("cmyk.jpg", "CMYK"), ("deep.png", "I;16"),
                      ("turned.jpg", "EXIF orientation 6")):
        info = inspect(tmp_path / name, MAX)
        assert not info.as_is and why in info.reason, name
    assert (inspect(tmp_path / "turned.jpg", MAX).width, inspect(tmp_path / "turned.jpg", MAX).height) == (20, 30)


def test_conversions_show_what_the_model_decoder_reads(tmp_path):
    coarse = np.random.default_rng(1).integers(0, 255, (4, 6, 3), dtype=np.uint8)
    smooth = Image.fromarray(coarse).resize((30, 20), Image.Resampling.BICUBIC)  # JPEG-friendly
    exif = Image.Exif()
    exif[0x0112] = 6
    smooth.save(tmp_path / "turned.jpg", exif=exif, quality=95)
    Image.fromarray(np.full((20, 30), 40000, np.uint16)).save(tmp_path / "deep.png")
    import io

    turned = np.asarray(Image.open(io.BytesIO(convert(tmp_path / "turned.jpg", MAX, as_jpeg=True))), dtype=int)
    upright = np.asarray(load_image_rgb(tmp_path / "turned.jpg"), dtype=int)
    assert turned.shape == (30, 20, 3) and np.abs(turned - upright).mean() < 3  # rotated, like the model's input
    mirrored = np.asarray(load_image_rgb(tmp_path / "turned.jpg").transpose(Image.Transpose.ROTATE_180), dtype=int)
    assert np.abs(turned - mirrored).mean() > 10
    deep = np.asarray(Image.open(io.BytesIO(convert(tmp_path / "deep.png", MAX))))
    assert deep.shape == (20, 30, 3) and abs(int(deep[0, 0, 0]) - round(40000 / 65535 * 255)) <= 1


def test_a_decompression_bomb_is_refused_before_decoding(tmp_path):
    (tmp_path / "bomb.png").write_bytes(png_header(12000, 12000))
    with pytest.raises(BadImageError, match="decompression bomb"):
        inspect(tmp_path / "bomb.png", MAX)


def test_the_box_is_the_part_of_the_original_the_encoders_see(tiny):
    """The tiny encoder's own preprocessing (open_clip's: shorter side to 224, centre crop) keeps
    exactly ``model_input_box`` of a wide and of a tall picture (and so does the DINOv2
    stand-in's, which is built the same way)."""
    from pipeline.model.encoders.dinov2_standin import standin_preprocess
    from pipeline.explain.relevance import input_rgb

    rng = np.random.default_rng(0)
    for w, h in ((300, 200), (180, 260)):
        # smooth random texture: any shift of the crop changes the picture
        small = rng.integers(0, 255, (h // 10 + 1, w // 10 + 1, 3), dtype=np.uint8)
        im = Image.fromarray(small).resize((w, h), Image.Resampling.BICUBIC)
        left, top, side = model_input_box(w, h)
        assert side == min(w, h) and (left, top) == ((w - side) / 2, (h - side) / 2)

        def crop(x, y):
            return np.asarray(im.crop((x, y, x + side, y + side)).resize((224, 224), Image.Resampling.BICUBIC),
                              dtype=float)

        for preprocess in (tiny.preprocess, standin_preprocess()):
            class Enc:  # input_rgb undoes the encoder's normalisation through its preprocess
                pass

            enc = Enc()
            enc.preprocess = preprocess
            seen = input_rgb(enc, preprocess(im)[None]).astype(float)[0]
            assert np.abs(seen - crop(left, top)).mean() < 6
            assert np.abs(seen - crop(0, 0)).mean() > 3 * np.abs(seen - crop(left, top)).mean()
