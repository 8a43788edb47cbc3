"""Demo data set: generators, sources, planning and a tiny offline build (package photos only)."""
from __future__ import annotations

import csv
import hashlib
import os
import shutil
import stat
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline.data.demo import build as B
from pipeline.data.demo.build import build_demo_dataset
from pipeline.data.demo.generators import GENERATOR_NAMES, SuperResolutionNet, get_spec
from pipeline.data.demo.sources import (debian_wallpapers, dep5_lookup, fetch_debian_package,
                                        package_photos, parse_dep5, to_srgb, user_photos)

pytestmark = pytest.mark.timeout(300)
ncnn = pytest.importorskip("ncnn")


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------
def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0 ** 2 / mse))


def _laplacian_var(a: np.ndarray) -> float:
    g = a.astype(np.float64).mean(axis=2)
    lap = 4 * g[1:-1, 1:-1] - g[:-2, 1:-1] - g[2:, 1:-1] - g[1:-1, :-2] - g[1:-1, 2:]
    return float(lap.var())


def _astronaut_path() -> Path:
    return next(p for p in package_photos() if p.id.endswith("astronaut")).files[0]


def _astronaut() -> Image.Image:
    return Image.open(_astronaut_path()).convert("RGB")


def _hashes(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != B.MARKER}


def _manifest(root: Path) -> list[dict]:
    with open(root / "manifest.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def _synthetic_photo(path: Path, w: int = 1200, h: int = 900, seed: int = 3) -> None:
    """A smooth, textured stand-in for a large camera photo (deterministic)."""
    rng = np.random.default_rng(seed)
    base = Image.fromarray((rng.random((h // 30, w // 30, 3)) * 255).astype(np.uint8)).resize((w, h), Image.BICUBIC)
    noise = rng.normal(0, 6, (h, w, 3))
    arr = np.clip(np.asarray(base, dtype=np.float64) + noise, 0, 255).astype(np.uint8)
    Image.fromarray(arr).save(path)


# ---------------------------------------------------------------------------------------------
# generators
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", GENERATOR_NAMES)
def test_generator_regenerates_a_downscaled_crop(name):
    """The net's x4 output of a 64x64 crop is close to, not equal to, the 256x256 original, in the
    right colours, and far sharper than interpolation: evidence that the GAN really ran."""
    img = _astronaut()
    box = (100, 50, 356, 306)
    hr = np.asarray(img.crop(box))
    lr = np.asarray(img.resize((64, 64), Image.Resampling.LANCZOS, box=box))
    bicubic = np.asarray(Image.fromarray(lr).resize((256, 256), Image.Resampling.BICUBIC))
    sr = SuperResolutionNet(name).upscale(lr)
    assert sr.shape == (256, 256, 3) and sr.dtype == np.uint8
    assert 20.0 < _psnr(sr, hr) < 40.0
    # RGB order right: mean colour within a few levels of the original's (the suit is orange)
    assert np.abs(sr.reshape(-1, 3).mean(0) - hr.reshape(-1, 3).mean(0)).max() < 5.0
    # GAN-invented detail: bicubic's Laplacian variance is ~25, these nets give 150-1100
    assert _laplacian_var(sr) > 4 * _laplacian_var(bicubic)


def test_upscale_in_tiles_matches_whole_image():
    net = SuperResolutionNet("realesr-animevideov3", tile=1000)
    x = np.asarray(_astronaut().resize((96, 80)))
    whole = net.upscale(x)
    net.tile = 40  # 3 x 2 tiles with 10 px of context each
    tiled = net.upscale(x)
    assert tiled.shape == whole.shape == (320, 384, 3)
    assert np.abs(tiled.astype(int) - whole).mean() < 0.5
    net.tile_pad = 0  # without context the seams show: the padding is what makes tiles agree
    assert np.abs(net.upscale(x).astype(int) - whole).mean() > 4 * np.abs(tiled.astype(int) - whole).mean()


def test_generator_errors_name_the_problem():
    with pytest.raises(ValueError, match="unknown generator 'nope'.*realesrgan-x4plus"):
        get_spec("nope")
    with pytest.raises(ValueError, match="realesr-animevideov3.*uint8"):
        SuperResolutionNet("realesr-animevideov3").upscale(np.zeros((8, 8, 3), np.float32))


# ---------------------------------------------------------------------------------------------
# sources
# ---------------------------------------------------------------------------------------------
def test_package_photos_are_found_with_credit_and_licence():
    photos = package_photos()
    ids = [p.id for p in photos]
    assert len(ids) == len(set(ids)) >= 7  # scikit-image 5 scenes, scikit-learn 2 (+ matplotlib)
    for p in photos:
        assert p.credit and p.licence and all(f.is_file() for f in p.files)
    moto = next(p for p in photos if p.id.endswith("motorcycle"))
    assert len(moto.files) == 2  # the stereo pair is one scene (never split across train/held-out)
    assert next(p for p in photos if p.id.endswith("china")).licence == "CC-BY-2.0"


DEP5 = """Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: demo

Files: *
Copyright: 2020 Someone
License: GPL-2+

Files: 16.04/aitz_*.jpg
       16.04/other.jpg
Copyright: Aitzol Berasategi,
 2018
License: CC-BY-4.0

Files: debian/*
 16.04/.placeholder
Copyright: 2018, Packager
License: Expat

License: CC-BY-4.0
 Attribution 4.0 International
"""


def test_parse_dep5_last_matching_paragraph_wins():
    paras = parse_dep5(DEP5)
    assert [p["license"] for p in paras] == ["GPL-2+", "CC-BY-4.0", "Expat"]
    assert dep5_lookup(paras, "aitz_sunset.jpg")["copyright"] == "Aitzol Berasategi, 2018"
    assert dep5_lookup(paras, "other.jpg")["license"] == "CC-BY-4.0"
    assert dep5_lookup(paras, "Storm.jpg")["license"] == "GPL-2+"  # "debian/*" is another folder's
    assert dep5_lookup(paras, ".placeholder")["license"] == "Expat"


def test_debian_sources_degrade_without_apt(tmp_path):
    messages = []
    assert debian_wallpapers(tmp_path, messages.append, apt_get=str(tmp_path / "no-apt-get")) == []
    assert len(messages) == 2 and all("not found" in m for m in messages)


def _script(path: Path, body: str) -> str:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return str(path)


def test_debian_sources_degrade_when_download_fails(tmp_path):
    apt = _script(tmp_path / "apt-get", 'for p; do :; done; echo "E: Unable to locate package $p" >&2; exit 100\n')
    messages = []
    assert fetch_debian_package("mate-backgrounds", tmp_path / "cache", messages.append, apt_get=apt) is None
    assert "Unable to locate package" in messages[-1] and "mate-backgrounds" in messages[-1]
    assert not (tmp_path / "cache" / "demo_sources" / "mate-backgrounds").exists()


@pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="dpkg-deb not available")
def test_debian_package_is_unpacked_once_without_root(tmp_path):
    """A stand-in apt-get hands over a real .deb; it is unpacked into the cache with its licences,
    and a second call uses the cache without calling apt-get again."""
    tree = tmp_path / "pkg"
    (tree / "DEBIAN").mkdir(parents=True)
    (tree / "DEBIAN" / "control").write_text("Package: mate-backgrounds\nVersion: 9.9-1\nArchitecture: all\n"
                                             "Maintainer: t <t@example.org>\nDescription: test\n")
    photo_dir = tree / "usr/share/backgrounds/mate/nature"
    photo_dir.mkdir(parents=True)
    Image.new("RGB", (40, 30), (10, 200, 30)).save(photo_dir / "Aqua.jpg")
    doc = tree / "usr/share/doc/mate-backgrounds"
    doc.mkdir(parents=True)
    (doc / "copyright").write_text("Files: nature/Aqua.jpg\nCopyright: 2008, Charles Barbin\nLicense: GPL-2+\n")
    deb = tmp_path / "mate-backgrounds_9.9-1_all.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "--build", str(tree), str(deb)], check=True,
                   capture_output=True)
    calls = tmp_path / "calls"
    apt = _script(tmp_path / "apt-get", f'for p; do :; done; echo "$p" >> "{calls}"\n'
                  f'if [ "$p" = mate-backgrounds ]; then cp "{deb}" .; else echo "E: no $p" >&2; exit 100; fi\n')
    sources = [s for s in debian_wallpapers(tmp_path / "cache", apt_get=apt)
               if s.collection == "mate-backgrounds"]
    assert [s.id for s in sources] == ["mate-backgrounds/Aqua.jpg"]
    assert sources[0].credit == "2008, Charles Barbin" and sources[0].licence == "GPL-2+"
    assert "9.9-1" in sources[0].version and sources[0].licence_file.is_file()
    again = [s for s in debian_wallpapers(tmp_path / "cache", apt_get=apt) if s.collection == "mate-backgrounds"]
    assert again == sources
    # the second call asked apt only for the package that failed the first time
    assert calls.read_text().split() == ["mate-backgrounds", "lomiri-wallpapers-16.04", "lomiri-wallpapers-16.04"]


def test_user_photos_skip_unreadable_files_with_reason(tmp_path):
    Image.new("RGB", (50, 40)).save(tmp_path / "good.png")
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "text.jpg").write_text("not an image")
    (tmp_path / "notes.txt").write_text("ignored: not an image extension")
    messages = []
    photos = user_photos([tmp_path], messages.append)
    assert [p.id for p in photos] == ["user-photos/good.png"]
    assert any("empty.jpg" in m and "zero-byte" in m for m in messages)
    assert any("text.jpg" in m and "not a readable image" in m for m in messages)
    with pytest.raises(NotADirectoryError, match="missing"):
        user_photos([tmp_path / "missing"])


def test_to_srgb_converts_only_other_colour_spaces():
    lcd = Path(package_photos()[0].files[0]).parent / "color.png"  # scikit-image, "Color LCD" profile
    if not lcd.is_file():
        pytest.skip("scikit-image's color.png not present")
    icc_lcd = Image.open(lcd).info["icc_profile"]
    icc_srgb = Image.open(_astronaut_path()).info["icc_profile"]
    im = Image.fromarray(np.asarray(_astronaut().resize((64, 64))))
    im.info["icc_profile"] = icc_srgb
    assert to_srgb(im) is im
    im.info["icc_profile"] = icc_lcd
    converted = np.asarray(to_srgb(im)).astype(int)
    assert converted.shape == (64, 64, 3) and np.abs(converted - np.asarray(im)).mean() > 1.0


# ---------------------------------------------------------------------------------------------
# planning
# ---------------------------------------------------------------------------------------------
def test_crop_side_range():
    assert B.crop_side_range(250) is None  # no room for a 256 crop plus the fakes' context
    lo, hi = B.crop_side_range(300)
    assert 256 <= lo <= hi and hi + 2 * B._margin(hi) <= 300
    assert B.crop_side_range(600)[0] == 512  # large enough: reals shrink >= 2x
    assert B.crop_side_range(10_000) == (512, B.MAX_CROP)
    for short in range(288, 700):
        r = B.crop_side_range(short)
        assert r is None or r[1] + 2 * B._margin(r[1]) <= short


def test_allocate_is_proportional_and_exact():
    assert B.allocate([1, 1, 2], 8) == [2, 2, 4]
    assert B.allocate([1, 1, 1], 10) == [4, 3, 3]  # ties go to the first
    counts = B.allocate(np.random.default_rng(0).random(40), 400)
    assert sum(counts) == 400


def test_assign_splits_groups_by_source_and_hits_the_fraction():
    rng = np.random.default_rng(1)
    counts = {f"s{i:02d}": {g: int(n) for g, n in zip("abc", rng.integers(1, 8, 3))} for i in range(30)}
    total = sum(sum(c.values()) for c in counts.values())
    splits = B.assign_splits(counts, seed=0)
    assert set(splits) == set(counts) and set(splits.values()) == {"train", "heldout"}
    held = sum(sum(counts[s].values()) for s, v in splits.items() if v == "heldout")
    assert abs(held / total - B.HOLDOUT_FRACTION) < 0.02
    for side in ("train", "heldout"):
        assert {g for s, v in splits.items() if v == side for g, n in counts[s].items() if n} == set("abc")
    assert B.assign_splits(counts, seed=0) == splits
    assert B.assign_splits(counts, seed=1) != splits


# ---------------------------------------------------------------------------------------------
# a tiny offline build
# ---------------------------------------------------------------------------------------------
SIZE = 6


@pytest.fixture(scope="module")
def user_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("user_photos")
    _synthetic_photo(d / "big.png")
    return d


def _build(out: Path, user_dir: Path, cache: Path, **kw):
    kw.setdefault("size", SIZE)
    return build_demo_dataset(out, real_dirs=[user_dir], cache_dir=cache, debian=False, **kw)


@pytest.fixture(scope="module")
def built(tmp_path_factory, user_dir):
    root = tmp_path_factory.mktemp("demo")
    messages, calls = [], []
    summary = _build(root / "demo", user_dir, root / "cache", log=messages.append,
                     progress=lambda *a: calls.append(a))
    return root / "demo", summary, messages, calls


def test_build_layout_and_manifest(built):
    out, summary, messages, calls = built
    rows = _manifest(out)
    assert len(rows) == 2 * SIZE == summary["n_real"] + summary["n_fake"]
    assert sum(r["label"] == "real" for r in rows) == SIZE
    for r in rows:
        gen, cat, label_dir, _ = r["path"].split("/")
        assert gen == r["generator"] in GENERATOR_NAMES and cat == r["category"]
        assert label_dir == {"real": "0_real", "fake": "1_fake"}[r["label"]]
        assert r["split"] in ("train", "heldout") and r["source"] in summary["sources"]
    on_disk = {p.relative_to(out).as_posix() for p in out.rglob("*.png")}
    assert on_disk == {r["path"] for r in rows}
    assert {r["generator"] for r in rows if r["label"] == "fake"} == set(GENERATOR_NAMES)
    # reals and fakes are paired per photo and generator folder, so no folder is unbalanced
    for key in {(r["source"], r["generator"]) for r in rows}:
        labels = [r["label"] for r in rows if (r["source"], r["generator"]) == key]
        assert labels.count("real") == labels.count("fake")
    assert calls[-1][1:] == (2 * SIZE, 2 * SIZE) and {c[0] for c in calls} == {"real", *GENERATOR_NAMES}
    assert any("images/s" in m for m in messages)
    for g in GENERATOR_NAMES:
        assert summary["generators"][g]["images_per_s"] > 0


def test_build_split_is_by_source(built):
    out, summary, _, _ = built
    rows = _manifest(out)
    side = {}
    for r in rows:
        assert side.setdefault(r["source"], r["split"]) == r["split"], f"{r['source']} on both sides"
    for split in ("train", "heldout"):
        assert {r["label"] for r in rows if r["split"] == split} == {"real", "fake"}
    assert {r["generator"] for r in rows if r["split"] == "train" and r["label"] == "fake"} == set(GENERATOR_NAMES)


def test_build_both_classes_same_format_and_size(built):
    out, _, _, _ = built
    seen = set()
    for r in _manifest(out):
        with Image.open(out / r["path"]) as im:
            seen.add((r["label"], im.format, im.mode, im.size, tuple(sorted(im.info))))
    assert {s[1:] for s in seen if s[0] == "real"} == {s[1:] for s in seen if s[0] == "fake"} \
        == {("PNG", "RGB", (256, 256), ())}


def test_build_real_crops_shrink_2x_where_the_photo_allows(built):
    out, _, _, _ = built
    with open(out / "provenance.csv", newline="") as fh:
        prov = list(csv.DictReader(fh))
    big = [p for p in prov if p["source"] == "user-photos/big.png"]
    assert big and all(float(p["downscale"]) >= 2.0 for p in big if p["label"] == "real")
    assert all(float(p["downscale"]) >= 4.0 for p in prov if p["label"] == "fake")
    boxes = {(p["source"], p["view_file"], p["crop_x"], p["crop_y"], p["crop_side"], p["label"]) for p in prov}
    real_boxes = {b[:5] for b in boxes if b[5] == "real"}
    assert not real_boxes & {b[:5] for b in boxes if b[5] == "fake"}  # fakes are *other* crops


def test_build_readme_credits_every_source(built):
    out, summary, _, _ = built
    readme = (out / "README.md").read_text()
    for p in package_photos():
        if p.id in summary["sources"]:
            assert p.credit in readme and p.licence in readme
    for g in GENERATOR_NAMES:
        assert f"`{g}`" in readme
    assert "PNG" in readme


def test_build_is_deterministic_and_reused(built, user_dir, tmp_path):
    out, summary, _, _ = built
    again = _build(tmp_path / "again", user_dir, tmp_path / "cache")
    assert _hashes(tmp_path / "again") == _hashes(out)
    assert again["key"] == summary["key"]
    # a second call with the same parameters reuses the finished build
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "again").rglob("*.png")}
    reused = _build(tmp_path / "again", user_dir, tmp_path / "cache")
    assert reused["reused"] is True and reused["n_fake"] == SIZE
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "again").rglob("*.png")} == before


def test_build_other_seed_gives_other_images_and_replaces_the_old_build(user_dir, tmp_path):
    fast = {"generators": ("realesr-animevideov3",)}
    first = _build(tmp_path / "demo", user_dir, tmp_path / "c", seed=0, **fast)
    a = _hashes(tmp_path / "demo")
    second = _build(tmp_path / "demo", user_dir, tmp_path / "c", seed=1, **fast)
    b = _hashes(tmp_path / "demo")
    assert second["key"] != first["key"] and second["reused"] is False
    shared = [p for p in a if p.endswith(".png") and p in b]
    assert sum(a[p] != b[p] for p in shared) >= 0.9 * len(shared) > 0
    assert sorted(os.listdir(tmp_path)) == ["demo"]  # the old build and temp folders are gone


def test_build_refuses_foreign_folder_and_leaves_nothing_on_failure(user_dir, tmp_path):
    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "mine.jpg").write_bytes(b"x")
    with pytest.raises(FileExistsError, match="not a demo data set"):
        _build(foreign, user_dir, tmp_path / "c")
    assert (foreign / "mine.jpg").read_bytes() == b"x"

    def stop(stage, done, total):
        if done == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _build(tmp_path / "demo", user_dir, tmp_path / "c", progress=stop, generators=("realesr-animevideov3",))
    assert sorted(os.listdir(tmp_path)) == ["photos"]  # no half-written build, no temp folder
