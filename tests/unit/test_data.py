"""Scanning folders and manifests; every kind of bad file is reported with its reason."""
from __future__ import annotations

import io
import os

import numpy as np
import pytest
from PIL import Image

from pipeline.config import DataConfig
from pipeline.data.scan import BadImageError, load_image_rgb, probe_image, scan


def _photo(w=64, h=48, seed=0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8))


def _save(img: Image.Image, path, **kw):
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, **kw)
    return path


@pytest.fixture()
def salted(tmp_path):
    """A CNNDetection-style folder with good images of every awkward kind and broken files."""
    root = tmp_path / "data"
    real, fake = root / "gen_a" / "cat" / "0_real", root / "gen_a" / "cat" / "1_fake"
    for i in range(3):
        _save(_photo(seed=i), real / f"ok_{i}.jpg", quality=90)
        _save(_photo(seed=10 + i), fake / f"ok_{i}.png")
    # awkward but valid
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW on display
    _save(_photo(80, 40, 3), real / "rotated.jpg", exif=exif.tobytes())
    _save(_photo(seed=4).convert("CMYK"), real / "cmyk.jpg")
    _save(_photo(seed=5).convert("L"), real / "gray.png")
    pal = _photo(seed=6).convert("P")
    pal.info["transparency"] = 0
    _save(pal, fake / "palette_alpha.png", transparency=0)
    _save(Image.fromarray((np.arange(64 * 48).reshape(48, 64) * 20).astype(np.uint16)), fake / "deep16.png")
    _save(_photo(seed=7), fake / "ünïcode name with spaces.png")
    rgba = Image.new("RGBA", (32, 32), (255, 0, 0, 0))
    _save(rgba, fake / "transparent.png")
    # broken
    good = io.BytesIO()
    _photo(seed=8).save(good, "JPEG")
    (real / "truncated.jpg").write_bytes(good.getvalue()[: len(good.getvalue()) // 2])
    (real / "empty.jpg").write_bytes(b"")
    (fake / "text.png").write_text("this is not an image")
    outside = _save(_photo(seed=9), tmp_path / "elsewhere" / "secret.png")
    os.symlink(outside, fake / "link_out.png")
    _save(Image.new("L", (5000, 5000)), fake / "bomb.png")
    return root


def test_salted_folder_completes_and_reports_every_bad_file(salted):
    result = scan(DataConfig(root=str(salted), max_image_pixels=4_000_000))
    reasons = {b["path"].split("/")[-1]: b["reason"] for b in result.bad}
    assert reasons["empty.jpg"] == "zero-byte file"
    assert "not a readable image" in reasons["text.png"]
    assert "leaves the data root" in reasons["link_out.png"]
    assert "decompression bomb" in reasons["bomb.png"]
    # the truncated JPEG's header is fine: the scan keeps it, full decoding rejects it
    names = {r.path.split("/")[-1] for r in result.records}
    assert "truncated.jpg" in names
    with pytest.raises(BadImageError, match="truncated|corrupt"):
        load_image_rgb(salted / "gen_a/cat/0_real/truncated.jpg")
    good = {"ok_0.jpg", "rotated.jpg", "cmyk.jpg", "gray.png", "palette_alpha.png", "deep16.png",
            "ünïcode name with spaces.png", "transparent.png"}
    assert good <= names
    rec = {r.path.split("/")[-1]: r for r in result.records}
    assert rec["ok_0.jpg"].label == 0 and rec["ok_0.png"].label == 1
    assert rec["ok_0.jpg"].generator == "gen_a" and rec["ok_0.jpg"].category == "cat"
    assert (rec["rotated.jpg"].width, rec["rotated.jpg"].height) == (40, 80)  # EXIF applied


def test_awkward_modes_load_as_upright_rgb(salted):
    real, fake = salted / "gen_a/cat/0_real", salted / "gen_a/cat/1_fake"
    rotated = load_image_rgb(real / "rotated.jpg")
    assert rotated.mode == "RGB" and rotated.size == (40, 80)
    assert load_image_rgb(real / "cmyk.jpg").mode == "RGB"
    g = np.asarray(load_image_rgb(real / "gray.png"))
    assert (g[..., 0] == g[..., 1]).all()
    deep = np.asarray(load_image_rgb(fake / "deep16.png"))
    assert deep.dtype == np.uint8 and deep.max() > 200 and deep.min() < 5  # scaled, not clipped
    transparent = np.asarray(load_image_rgb(fake / "transparent.png"))
    assert (transparent == 255).all()  # fully transparent red composites to white


def test_manifest_rows_missing_file_and_bad_label(tmp_path):
    _save(_photo(), tmp_path / "a.png")
    _save(_photo(seed=1), tmp_path / "b.png")
    (tmp_path / "list.csv").write_text("path,label,generator\na.png,real,\nb.png,fake,gan\n"
                                       "missing.png,fake,gan\na.png,maybe,\n../up.png,real,\n")
    result = scan(DataConfig(manifest=str(tmp_path / "list.csv")))
    assert [(r.path, r.label, r.generator) for r in result.records] == [("a.png", 0, ""), ("b.png", 1, "gan")]
    reasons = [b["reason"] for b in result.bad]
    assert any("does not exist" in r for r in reasons)
    assert any("bad label 'maybe'" in r for r in reasons)
    assert any("leaves the data root" in r for r in reasons)


def test_filters_and_fingerprint(tmp_path):
    for gen in ("g1", "g2"):
        _save(_photo(seed=1), tmp_path / gen / "0_real" / "r.png")
        _save(_photo(seed=2), tmp_path / gen / "1_fake" / "f.png")
    all_ = scan(DataConfig(root=str(tmp_path)))
    only = scan(DataConfig(root=str(tmp_path), generators=("g2",)))
    assert len(all_.records) == 4 and {r.generator for r in only.records} == {"g2"}
    assert scan(DataConfig(root=str(tmp_path))).fingerprint == all_.fingerprint
    _save(_photo(seed=3), tmp_path / "g1" / "1_fake" / "f2.png")
    assert scan(DataConfig(root=str(tmp_path))).fingerprint != all_.fingerprint


def test_empty_folder_gives_clear_error(tmp_path):
    (tmp_path / "0_real").mkdir()
    with pytest.raises(ValueError, match="no usable images"):
        scan(DataConfig(root=str(tmp_path)))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        scan(DataConfig(root=str(tmp_path / "nope")))


def test_probe_reports_format(tmp_path):
    p = _save(_photo(), tmp_path / "x.webp")
    assert probe_image(p, 10**8) == (64, 48, "WEBP")
