"""Odd folder entries are reported as bad entries and the scan goes on: symbolic-link loops (which
used to end the scan with ``RuntimeError: Symlink loop``) and folders named like image files."""
from __future__ import annotations

import csv
import os

from PIL import Image

from pipeline.config import DataConfig
from pipeline.data.scan import scan


def _data(tmp_path):
    root = tmp_path / "data"
    for label in ("0_real", "1_fake"):
        (root / label).mkdir(parents=True)
        Image.new("RGB", (16, 16), (10, 20, 30)).save(root / label / "ok.png")
    return root


def test_symlink_loops_are_reported_and_the_scan_goes_on(tmp_path):
    root = _data(tmp_path)
    os.symlink("b.jpg", root / "0_real" / "a.jpg")  # a -> b -> a
    os.symlink("a.jpg", root / "0_real" / "b.jpg")
    os.symlink("self.png", root / "1_fake" / "self.png")
    os.symlink("loopdir", root / "1_fake" / "loopdir")  # a folder link that loops
    result = scan(DataConfig(root=str(root)))
    reasons = {b["path"]: b["reason"] for b in result.bad}
    for rel in ("0_real/a.jpg", "0_real/b.jpg", "1_fake/self.png", "1_fake/loopdir"):
        assert "symbolic link loop" in reasons[rel], reasons
    assert sorted(r.path for r in result.records) == ["0_real/ok.png", "1_fake/ok.png"]


def test_a_manifest_entry_that_loops_is_reported(tmp_path):
    root = _data(tmp_path)
    os.symlink("loop.png", root / "1_fake" / "loop.png")
    with open(root / "manifest.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerows([["path", "label"], ["0_real/ok.png", "real"], ["1_fake/ok.png", "fake"],
                     ["1_fake/loop.png", "fake"]])
    result = scan(DataConfig(root=str(root)))
    assert {b["path"]: b["reason"] for b in result.bad} == {
        "1_fake/loop.png": "symbolic link loop (the link leads back to itself); not followed"}
    assert len(result.records) == 2


def test_a_folder_named_like_an_image_is_reported(tmp_path):
    root = _data(tmp_path)
    (root / "1_fake" / "x.jpg").mkdir()  # empty: used to vanish without a word
    (root / "0_real" / "y.png").mkdir()
    Image.new("RGB", (16, 16)).save(root / "0_real" / "y.png" / "inside.png")
    result = scan(DataConfig(root=str(root)))
    reasons = {b["path"]: b["reason"] for b in result.bad}
    assert "a folder named like an image file" in reasons["1_fake/x.jpg"]
    assert "a folder named like an image file" in reasons["0_real/y.png"]
    # a real image inside such a folder is still an image of that label
    assert sorted(r.path for r in result.records) == ["0_real/ok.png", "0_real/y.png/inside.png", "1_fake/ok.png"]
