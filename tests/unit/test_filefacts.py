"""File facts read from headers: JPEG quality from the tables, subsampling, progressive, format vs
extension, EXIF, ICC, bit depth, generator text (also after the image data); never a pixel decode."""
from __future__ import annotations

import csv
import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image, ImageCms, ImageFile, PngImagePlugin, WebPImagePlugin

from pipeline.config import DataConfig
from pipeline.data.scan import scan
from pipeline.data.filefacts import ROW_COLUMNS, FileFacts, estimate_jpeg_quality, facts_from_image, ijg_table, \
    IJG_LUMA, read_facts


def _photo(w=40, h=32, seed=0, mode="RGB") -> Image.Image:
    arr = np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)
    return Image.fromarray(arr).convert(mode)


def _saved(tmp_path, name, img=None, **kw):
    path = tmp_path / name
    (img or _photo()).save(path, **kw)
    return path


@pytest.mark.parametrize("quality", [10, 50, 75, 90, 95, 100])
def test_jpeg_quality_recovers_what_pillow_saved_with(tmp_path, quality):
    f = read_facts(_saved(tmp_path, "q.jpg", quality=quality))
    assert f.jpeg_quality == quality and f.jpeg_tables == "standard" and f.jpeg_quality_text == f"q{quality}"


def test_jpeg_quality_of_a_grayscale_file_from_the_luma_table_alone(tmp_path):
    f = read_facts(_saved(tmp_path, "g.jpg", _photo(mode="L"), quality=80))
    assert f.jpeg_quality == 80 and f.subsampling == "gray" and f.mode == "L"


def test_custom_quantisation_tables_are_non_standard_not_a_number(tmp_path):
    flat = read_facts(_saved(tmp_path, "flat.jpg", qtables=[[7] * 64, [9] * 64]))
    assert flat.jpeg_quality is None and flat.jpeg_tables == "non-standard"
    assert flat.jpeg_quality_text == "non-standard"
    # IJG luma at q85 but a foreign chroma table: both tables must match
    mixed = read_facts(_saved(tmp_path, "mixed.jpg", qtables=[ijg_table(IJG_LUMA, 85).tolist(), [3] * 64]))
    assert mixed.jpeg_quality is None


def test_quality_estimate_tolerates_other_rounding_of_the_ijg_scaling():
    exact = ijg_table(IJG_LUMA, 70)
    off_by_one = np.clip(exact + np.tile([0, 1], 32), 1, 255)  # another encoder's rounding
    assert estimate_jpeg_quality({0: off_by_one.tolist()}) == 70
    assert estimate_jpeg_quality({0: (exact * 2).tolist()}) != 70  # a real scaling change is not 70


@pytest.mark.parametrize("subsampling,expected", [(0, "4:4:4"), (1, "4:2:2"), (2, "4:2:0")])
def test_subsampling_reads_back(tmp_path, subsampling, expected):
    assert read_facts(_saved(tmp_path, "s.jpg", subsampling=subsampling)).subsampling == expected


def test_progressive_reads_back(tmp_path):
    assert read_facts(_saved(tmp_path, "p.jpg", progressive=True)).progressive is True
    assert read_facts(_saved(tmp_path, "b.jpg")).progressive is False


def test_format_from_bytes_and_extension_and_their_mismatch(tmp_path):
    buf = io.BytesIO()
    _photo().save(buf, "JPEG")
    (tmp_path / "lying.png").write_bytes(buf.getvalue())
    lying = read_facts(tmp_path / "lying.png")
    assert (lying.format, lying.ext_format, lying.format_mismatch) == ("JPEG", "PNG", True)
    honest = read_facts(_saved(tmp_path, "honest.png"))
    assert (honest.format, honest.ext_format, honest.format_mismatch) == ("PNG", "PNG", False)
    assert honest.jpeg_tables == "" and honest.subsampling == "" and honest.jpeg_quality is None


def test_size_file_size_and_bytes_per_pixel(tmp_path):
    path = _saved(tmp_path, "s.png", _photo(50, 20))
    f = read_facts(path)
    assert (f.width, f.height, f.pixels, f.aspect, f.size) == (50, 20, 1000, 2.5, "50x20")
    assert f.file_bytes == path.stat().st_size
    assert f.bytes_per_pixel == pytest.approx(path.stat().st_size / 1000, abs=1e-5)


def test_exif_make_orientation_and_generator_software(tmp_path):
    exif = Image.Exif()
    exif[0x010F] = "Canon"
    exif[0x0112] = 6  # shown rotated: width and height swap
    camera = read_facts(_saved(tmp_path, "c.jpg", _photo(40, 30), exif=exif.tobytes()))
    assert camera.exif and camera.camera_make == "Canon" and (camera.width, camera.height) == (30, 40)
    assert camera.generator_hint == ""
    exif = Image.Exif()
    exif[0x0131] = "Midjourney v6"
    made = read_facts(_saved(tmp_path, "m.jpg", exif=exif.tobytes()))
    assert made.software == "Midjourney v6" and "EXIF Software mentions 'midjourney'" in made.generator_hint
    assert read_facts(_saved(tmp_path, "none.jpg")).exif is False


def test_icc_dpi_mode_and_bit_depth(tmp_path):
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    f = read_facts(_saved(tmp_path, "i.jpg", icc_profile=icc, dpi=(300, 300)))
    assert f.icc and f.dpi == 300 and f.mode == "RGB" and f.bit_depth == 8
    deep = Image.fromarray((np.arange(32 * 40).reshape(32, 40) * 50).astype(np.uint16))
    d = read_facts(_saved(tmp_path, "d.png", deep))
    assert d.bit_depth == 16 and d.mode.startswith("I;16") and not d.icc and d.dpi == 0


def test_png_text_chunks_of_generators(tmp_path):
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", "a cat, Steps: 20, Sampler: Euler a, CFG scale: 7")
    info.add_itxt("workflow", '{"nodes": []}', zip=True)
    info.add_text("Software", "GIMP 2.10")
    f = read_facts(_saved(tmp_path, "sd.png", pnginfo=info))
    assert f.text_keys == "Software;parameters;workflow" and f.software == "GIMP 2.10"
    assert "PNG text 'parameters'" in f.generator_hint and "PNG text 'workflow'" in f.generator_hint
    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", "Created with GIMP")
    plain = read_facts(_saved(tmp_path, "gimp.png", pnginfo=info))
    assert plain.text_keys == "Comment" and plain.generator_hint == ""  # a comment is not a trace


def _with_chunk_before_iend(data: bytes, ctype: bytes, payload: bytes) -> bytes:
    chunk = struct.pack(">I", len(payload)) + ctype + payload
    chunk += struct.pack(">I", zlib.crc32(ctype + payload) & 0xFFFFFFFF)
    end = data.rindex(b"IEND") - 4
    return data[:end] + chunk + data[end:]


def test_png_text_after_the_image_data_is_found_by_the_chunk_walk(tmp_path):
    buf = io.BytesIO()
    _photo().save(buf, "PNG")
    data = _with_chunk_before_iend(buf.getvalue(), b"zTXt", b"prompt\x00\x00" + zlib.compress(b'{"1": {}}'))
    (tmp_path / "late.png").write_bytes(data)
    with Image.open(tmp_path / "late.png") as im:
        assert "prompt" not in im.info  # Pillow's header read stops at the image data
        f = facts_from_image(im, tmp_path / "late.png", len(data))
    assert f.text_keys == "prompt" and "PNG text 'prompt'" in f.generator_hint


def test_facts_never_decode_pixels(tmp_path, monkeypatch):
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", "x")
    paths = [_saved(tmp_path, "a.png", pnginfo=info), _saved(tmp_path, "b.jpg", quality=60),
             _saved(tmp_path, "c.webp")]

    def no_decode(self):
        raise AssertionError("pixels were decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decode)
    monkeypatch.setattr(WebPImagePlugin.WebPImageFile, "load", no_decode)
    with Image.open(paths[0]) as im, pytest.raises(AssertionError, match="decoded"):
        im.getexif()  # the trap facts_from_image avoids: Pillow decodes a PNG to look for EXIF
    facts = [read_facts(p) for p in paths]
    assert [f.format for f in facts] == ["PNG", "JPEG", "WEBP"]
    assert facts[1].jpeg_quality == 60 and facts[0].text_keys == "parameters"


def test_rows_round_trip_through_csv(tmp_path):
    exif = Image.Exif()
    exif[0x010F] = "Nikon, Inc."  # a comma: the CSV writer must quote it
    facts = [read_facts(_saved(tmp_path, "a.jpg", exif=exif.tobytes(), quality=88)),
             read_facts(_saved(tmp_path, "b.png"))]
    with open(tmp_path / "facts.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=ROW_COLUMNS)
        writer.writeheader()
        writer.writerows(f.to_row() for f in facts)
    with open(tmp_path / "facts.csv", newline="") as fh:
        back = [FileFacts.from_row(r) for r in csv.DictReader(fh)]
    assert back == facts
    assert back[1].jpeg_quality is None and back[0].camera_make == "Nikon, Inc."


def test_scan_returns_facts_parallel_to_records(tmp_path):
    root = tmp_path / "data"
    for label, fmt in (("0_real", "jpg"), ("1_fake", "png")):
        (root / label).mkdir(parents=True)
        for i in range(3):
            _photo(30 + i, 20, seed=i).save(root / label / f"{i}.{fmt}")
    (root / "1_fake" / "broken.png").write_bytes(b"not an image")
    result = scan(DataConfig(root=str(root)))
    assert len(result.facts) == len(result.records) == 6
    for rec, f in zip(result.records, result.facts):
        assert (f.width, f.height, f.file_bytes) == (rec.width, rec.height, rec.bytes)
        assert f.format == ("JPEG" if rec.label == 0 else "PNG")
    assert scan(DataConfig(root=str(root)), with_facts=False).facts == []


def test_a_metadata_reader_failure_keeps_the_image_with_probe_facts(tmp_path, monkeypatch):
    root = tmp_path / "data" / "0_real"
    root.mkdir(parents=True)
    _photo(33, 21).save(root / "a.jpg")

    def broken(*args, **kwargs):
        raise ValueError("unexpected metadata")

    monkeypatch.setattr("pipeline.data.scan.facts_from_image", broken)
    result = scan(DataConfig(root=str(tmp_path / "data")))
    assert len(result.records) == 1 and result.facts[0].size == "33x21" and result.facts[0].format == "JPEG"


def test_jpeg_comment_and_xmp_naming_a_generator(tmp_path):
    made = read_facts(_saved(tmp_path, "c.jpg", comment=b"made with Stable Diffusion XL"))
    assert made.text_keys == "comment" and made.generator_hint == "text 'comment' mentions 'stable diffusion'"
    xmp = (b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:Description Iptc4xmpExt:DigitalSourceType='
           b'"http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"/></x:xmpmeta>')
    tagged = read_facts(_saved(tmp_path, "x.jpg", xmp=xmp))
    assert tagged.text_keys == "xmp" and tagged.generator_hint == "XMP mentions 'trainedalgorithmicmedia'"
    plain = read_facts(_saved(tmp_path, "p.jpg", comment=b"holiday 2019"))
    assert plain.text_keys == "comment" and plain.generator_hint == ""


def _exif_orientation(value: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = value
    return exif.tobytes()


def test_scan_records_are_the_same_with_and_without_facts(tmp_path):
    """With facts the scan takes the oriented size from them (no PNG decode): it must agree with the
    probe on every kind of file, EXIF orientation in a PNG after its image data included."""
    real, fake = tmp_path / "d" / "0_real", tmp_path / "d" / "1_fake"
    real.mkdir(parents=True)
    fake.mkdir(parents=True)
    _photo(40, 30).save(real / "rotated.jpg", exif=_exif_orientation(6))
    _photo(40, 30, mode="CMYK").save(real / "cmyk.jpg")
    _photo(40, 30).save(real / "early_exif.png", exif=_exif_orientation(8))
    buf = io.BytesIO()
    _photo(44, 30).save(buf, "PNG")
    raw = _exif_orientation(6)
    (fake / "late_exif.png").write_bytes(_with_chunk_before_iend(buf.getvalue(), b"eXIf", raw[6:]))
    hexed = raw.hex()
    profile = f"\nexif\n{len(raw):8d}\n" + "\n".join(hexed[i:i + 72] for i in range(0, len(hexed), 72))
    info = PngImagePlugin.PngInfo()
    info.add_text("Raw profile type exif", profile, zip=True)
    _photo(46, 30).save(fake / "magick.png", pnginfo=info)
    Image.fromarray((np.arange(30 * 40).reshape(30, 40) * 50).astype(np.uint16)).save(fake / "deep.png")
    _photo(40, 30).convert("P").save(fake / "palette.png")
    for ext in ("gif", "webp", "tif", "bmp"):
        _photo(36, 30).save(fake / f"other.{ext}")
    with_facts = scan(DataConfig(root=str(tmp_path / "d")))
    without = scan(DataConfig(root=str(tmp_path / "d")), with_facts=False)
    assert [r.to_dict() for r in with_facts.records] == [r.to_dict() for r in without.records]
    sizes = {r.path.split("/")[-1]: (r.width, r.height) for r in with_facts.records}
    assert sizes["rotated.jpg"] == (30, 40) and sizes["early_exif.png"] == (30, 40)
    assert sizes["late_exif.png"] == (30, 44) and sizes["magick.png"] == (30, 46)
    assert len(with_facts.records) == 11 and with_facts.bad == without.bad == []
