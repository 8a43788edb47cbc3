"""Demo data set built from every default source, Debian wallpapers included.

Skipped when the Debian wallpaper packages cannot be fetched (no apt, offline) and are not cached.
They are unpacked into the project cache (``.cache/faxplainer/demo_sources``), shared with
``make serve``.
"""
from __future__ import annotations

import csv
from pathlib import Path

import pytest

from pipeline.config import Config
from pipeline.data.demo.build import HOLDOUT_FRACTION, MIN_REAL_DOWNSCALE, build_demo_dataset
from pipeline.data.demo.generators import GENERATOR_NAMES
from pipeline.data.demo.sources import debian_wallpapers

pytest.importorskip("ncnn")
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]
SIZE = 30


@pytest.fixture(scope="module")
def cache_dir() -> Path:
    return Config().cache_path


@pytest.fixture(scope="module")
def debian_sources(cache_dir):
    reasons: list[str] = []
    found = debian_wallpapers(cache_dir, reasons.append)
    if not found:
        pytest.skip("Debian wallpaper packages unavailable: " + "; ".join(reasons))
    return found


@pytest.fixture(scope="module")
def built(tmp_path_factory, cache_dir, debian_sources):
    out = tmp_path_factory.mktemp("demo_full") / "demo"
    summary = build_demo_dataset(out, size=SIZE, seed=0, cache_dir=cache_dir)
    with open(out / "provenance.csv", newline="") as fh:
        return out, summary, list(csv.DictReader(fh))


def test_debian_sources_carry_their_own_credits(debian_sources):
    by_pkg = {}
    for s in debian_sources:
        by_pkg.setdefault(s.collection, []).append(s)
    # what the issue promises: 12 MATE nature photos, 14 Lomiri photos (the 15th is not a photo)
    assert len(by_pkg.get("mate-backgrounds", [])) in (0, 12)
    assert len(by_pkg.get("lomiri-wallpapers-16.04", [])) in (0, 14)
    licences = {s.licence for s in debian_sources}
    assert licences <= {"GPL-2+", "CC-BY-4.0", "CC-BY-SA-4.0", "CC0-1.0"}, licences
    seeding = [s for s in debian_sources if s.files[0].name == "seeding_by_Clements_Engelhardt.jpg"]
    if seeding:  # read from the package's DEP-5 copyright file, not typed in
        assert seeding[0].licence == "CC0-1.0" and "Clemens Engelhardt" in seeding[0].credit


def test_full_build_split_balance_and_scale(built, debian_sources):
    out, summary, prov = built
    assert summary["n_real"] == summary["n_fake"] == SIZE
    debian_ids = {s.id for s in debian_sources}
    used_debian = debian_ids & set(summary["sources"])
    assert len(used_debian) >= 15
    # no scene on both sides; both sides hold both classes and every generator
    side = {}
    for p in prov:
        assert side.setdefault(p["source"], p["split"]) == p["split"]
    for split in ("train", "heldout"):
        rows = [p for p in prov if p["split"] == split]
        assert {p["label"] for p in rows} == {"real", "fake"}
        assert {p["generator"] for p in rows if p["label"] == "fake"} == set(GENERATOR_NAMES)
    held = sum(p["split"] == "heldout" for p in prov) / len(prov)
    assert abs(held - HOLDOUT_FRACTION) < 0.1
    # wallpapers are large: every real crop from them shrinks at least 2x (JPEG blocks vanish)
    assert all(float(p["downscale"]) >= MIN_REAL_DOWNSCALE
               for p in prov if p["label"] == "real" and p["source"] in debian_ids)
    for g in GENERATOR_NAMES:
        assert summary["generators"][g]["images_per_s"] > 0


def test_full_build_readme_and_licence_files(built, debian_sources):
    out, summary, _ = built
    readme = (out / "README.md").read_text()
    for s in debian_sources:
        if s.id in summary["sources"]:
            assert s.credit in readme and s.licence in readme
    for pkg in {s.collection for s in debian_sources if s.id in summary["sources"]}:
        text = (out / "LICENSES" / f"{pkg}.copyright").read_text()
        assert text.startswith("Format: https://www.debian.org/doc/packaging-manuals/copyright-format/")
