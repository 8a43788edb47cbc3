"""pipeline.data.provenance: which images of one source photo show the same region, and the
demo's source photos found again and cut like the reals."""
import json
import os
import re

import numpy as np
import pytest
from PIL import Image

from pipeline.data import provenance
from pipeline.data.provenance import OTHER_CROP, SAME_REGION, UNKNOWN, Region

ROWS = """path,label,source,view_file,crop_x,crop_y,crop_side
g/0_real/a_000.png,real,pkg/a.jpg,a.jpg,10,20,300
g/1_fake/a_000.png,fake,pkg/a.jpg,a.jpg,10,20,300
g/1_fake/a_001.png,fake,pkg/a.jpg,a.jpg,40,20,300
g/1_fake/a_002.png,fake,pkg/a.jpg,a_right.jpg,10,20,300
"""


def _write(root, text=ROWS):
    root.mkdir(parents=True, exist_ok=True)
    (root / "provenance.csv").write_text(text)
    return root


def test_same_box_of_the_same_view_is_the_same_region_anything_else_another_crop(tmp_path):
    root = _write(tmp_path / "set")
    assert provenance.region_of(root, "g/1_fake/a_001.png") == Region("pkg/a.jpg", "a.jpg", 40, 20, 300)
    assert provenance.relation(root, "g/0_real/a_000.png", "g/1_fake/a_000.png") == SAME_REGION
    assert provenance.relation(root, "g/0_real/a_000.png", "g/1_fake/a_001.png") == OTHER_CROP  # other box
    assert provenance.relation(root, "g/0_real/a_000.png", "g/1_fake/a_002.png") == OTHER_CROP  # other view
    assert provenance.relation(root, "g/0_real/a_000.png", "g/1_fake/unlisted.png") == UNKNOWN


def test_without_provenance_the_region_is_unknown(tmp_path):
    (tmp_path / "set").mkdir()
    assert provenance.read_provenance(tmp_path / "set") is None
    assert provenance.relation(tmp_path / "set", "a.png", "b.png") == UNKNOWN


def test_read_once_per_root_and_again_when_the_file_changes(tmp_path, monkeypatch):
    root = _write(tmp_path / "set")
    calls = []
    parse = provenance._parse
    monkeypatch.setattr(provenance, "_parse", lambda p: calls.append(p) or parse(p))
    first = provenance.read_provenance(root)
    assert provenance.read_provenance(root) is first and len(calls) == 1
    _write(root, ROWS.replace("40,20,300", "10,20,300"))
    os.utime(root / "provenance.csv", ns=(1, 1))  # a new mtime even on a coarse clock
    assert provenance.relation(root, "g/0_real/a_000.png", "g/1_fake/a_001.png") == SAME_REGION
    assert len(calls) == 2


@pytest.mark.parametrize("text, reason", [
    ("path,source,view_file,crop_x,crop_y\na.png,s,v,1,2\n", "missing column(s) crop_side"),
    ("path,source,view_file,crop_x,crop_y,crop_side\na.png,s,v,1,two,3\n", "line 2: crop box"),
    ("path,source,view_file,crop_x,crop_y,crop_side\na.png,s,v,1,2,0\n", "line 2: crop_side 0 is not positive"),
])
def test_a_bad_provenance_file_is_refused_naming_the_file_and_reason(tmp_path, text, reason):
    root = _write(tmp_path / "set", text)
    with pytest.raises(ValueError, match=re.escape(reason)) as e:
        provenance.read_provenance(root)
    assert str(root / "provenance.csv") in str(e.value)


def _unpacked_wallpapers(cache, name="lake.jpg", image=None):
    """A Debian wallpaper package as sources.fetch_debian_package leaves it in the cache."""
    root = cache / "demo_sources" / "mate-backgrounds"
    folder = root / "usr/share/backgrounds/mate/nature"
    folder.mkdir(parents=True)
    (image or Image.new("RGB", (64, 48), (0, 0, 255))).save(folder / name, quality=95)
    return root


def test_a_debian_source_photo_is_found_only_when_unpacked_completely(tmp_path):
    root = _unpacked_wallpapers(tmp_path)
    assert provenance.source_photo_file("mate-backgrounds/lake.jpg", "lake.jpg", tmp_path) is None  # no marker
    (root / provenance.DEBIAN_MARKER).write_text(json.dumps({"package": "mate-backgrounds"}))
    found = provenance.source_photo_file("mate-backgrounds/lake.jpg", "lake.jpg", tmp_path)
    assert found == root / "usr/share/backgrounds/mate/nature/lake.jpg"
    assert provenance.source_photo_file("mate-backgrounds/sea.jpg", "sea.jpg", tmp_path) is None
    assert provenance.source_photo_file("user-photos/lake.jpg", "lake.jpg", tmp_path) is None  # folder unknown


def test_a_package_photo_is_found_by_its_id_and_view(tmp_path):
    pytest.importorskip("skimage")
    found = provenance.source_photo_file("python-packages/skimage-motorcycle", "motorcycle_right.png", tmp_path)
    assert found is not None and found.name == "motorcycle_right.png" and found.is_file()
    assert provenance.source_photo_file("python-packages/skimage-motorcycle", "other.png", tmp_path) is None


def test_the_region_is_cut_and_resized_like_the_reals(tmp_path):
    photo = np.zeros((48, 64, 3), np.uint8)
    photo[:, :] = (0, 0, 255)
    photo[8:40, 16:48] = (255, 0, 0)  # the box (16, 8, 32) is red, the rest blue
    Image.fromarray(photo).save(tmp_path / "p.png")
    cut = provenance.region_pixels(tmp_path / "p.png", Region("s", "p.png", 16, 8, 32), size=16)
    assert cut.shape == (16, 16, 3) and cut.dtype == np.uint8
    assert np.abs(cut[2:-2, 2:-2].astype(int) - (255, 0, 0)).max() <= 2
    left = provenance.region_pixels(tmp_path / "p.png", Region("s", "p.png", 0, 0, 16), size=16)
    assert np.array_equal(left, np.broadcast_to(np.array([0, 0, 255], np.uint8), (16, 16, 3)))
    with pytest.raises(ValueError, match="outside the 64 x 48 photo"):
        provenance.region_pixels(tmp_path / "p.png", Region("s", "p.png", 40, 0, 32))


def test_the_difference_is_absolute_and_amplified():
    a = np.array([[[10, 200, 0]]], np.uint8)
    b = np.array([[[20, 100, 0]]], np.uint8)
    assert provenance.difference_pixels(a, b, gain=4).tolist() == [[[40, 255, 0]]]
    with pytest.raises(ValueError, match="shapes"):
        provenance.difference_pixels(a, np.zeros((2, 2, 3), np.uint8))
