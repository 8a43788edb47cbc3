"""The vision-only projection is trained once per encoder on a background photo set and reused
for every data set (projection.train_on: background)."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from pipeline import projection_stage, runner
from pipeline.model.background import build_background
from pipeline.config import REPO_ROOT, load_config
from tests.integration.test_pipeline_tiny import make_dataset


def test_builtin_background_is_real_crops_of_the_package_photos(tmp_path):
    paths = build_background(tmp_path / "bg", size=12, cache_dir=tmp_path / "c", debian=False)
    assert len(paths) == 12
    with Image.open(paths[0]) as im:
        assert im.size == (256, 256)
    mtimes = [p.stat().st_mtime_ns for p in paths]
    again = build_background(tmp_path / "bg", size=12, cache_dir=tmp_path / "c", debian=False)
    assert again == paths and [p.stat().st_mtime_ns for p in again] == mtimes  # reused, not rebuilt


def test_one_projection_serves_every_data_set(tmp_path, monkeypatch):
    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    for i in range(40):
        Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(photos / f"{i}.png")

    def cfg(data):
        return load_config(REPO_ROOT / "configs" / "test.yaml", [
            f"data.root={data}", f"runs_dir={tmp_path / 'runs'}", f"cache_dir={tmp_path / 'cache'}",
            "projection.train_on=background", f"projection.background={photos}"])

    first = runner.run_pipeline(cfg(make_dataset(tmp_path / "a", n_per_class=20, salt=False)))
    proj = first.read_meta()["metrics"]["projection"]
    assert proj["trained_on"].startswith("folder-") and proj["n_images"] == 40
    assert proj["n_eval_pairs"] > 0  # measured on background photos it was not trained on
    trained = []
    monkeypatch.setattr(projection_stage, "fit_projection", lambda *a, **k: trained.append(1) or pytest.fail())
    second = runner.run_pipeline(cfg(make_dataset(tmp_path / "b", n_per_class=20, seed=1, salt=False)))
    assert second.run_id != first.run_id and not trained  # another data set, the same projection
    assert np.array_equal(second.load_torch("projection.pt")["weight"], first.load_torch("projection.pt")["weight"])
