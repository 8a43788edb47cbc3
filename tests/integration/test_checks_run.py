"""Every run checks its data before anything is explained (issue 12): a planted file confound is
flagged with the right fact in the run, in ``pipeline info`` and in the app's data-checks panel;
the same file under both labels is reported and left out; a clean set flags nothing."""
from __future__ import annotations

import io
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from app.state.context import AppContext
from app.views import checks
from pipeline.config import REPO_ROOT, load_config
from pipeline.runner import run_pipeline
from tests.unit.test_app_callbacks import _texts

N_PER_CLASS = 36


def _scene(rng, size=(64, 64)) -> Image.Image:
    a = rng.normal(size=(size[1] // 8, size[0] // 8, 3)).cumsum(0).cumsum(1)
    a = (a - a.min()) / (np.ptp(a) + 1e-9)
    return Image.fromarray((a * 255).astype(np.uint8)).resize(size, Image.Resampling.BICUBIC)


def make_set(root, fake_format: str, seed=0):
    """Both classes drawn from one distribution of scenes; reals saved as JPEG q90, fakes as
    ``fake_format``: the only difference between the classes is the file."""
    rng = np.random.default_rng(seed)
    for label in ("0_real", "1_fake"):
        (root / label).mkdir(parents=True, exist_ok=True)
    for i in range(N_PER_CLASS):
        _scene(rng).save(root / "0_real" / f"r{i:03d}.jpg", quality=90)
        im = _scene(rng)
        if fake_format == "png":
            im.save(root / "1_fake" / f"f{i:03d}.png")
        else:
            im.save(root / "1_fake" / f"f{i:03d}.jpg", quality=90)
    return root


def _cfg(tmp_path, data, *extra):
    return load_config(REPO_ROOT / "configs" / "test.yaml",
                       [f"data.root={data}", f"runs_dir={tmp_path / 'runs'}", f"cache_dir={tmp_path / 'cache'}",
                        *extra])


def test_a_format_confound_is_flagged_and_a_conflicting_file_left_out(tmp_path):
    data = make_set(tmp_path / "confounded", "png")
    shutil.copy(data / "0_real" / "r000.jpg", data / "1_fake" / "same-bytes.jpg")  # both labels
    store = run_pipeline(_cfg(tmp_path, data))
    meta = store.read_meta()
    flags = meta["checks"]["shortcuts"]["flags"]
    assert flags and flags[0]["fact"] == "format" and "every fake is PNG, every real is JPEG" in flags[0]["reason"]
    dup = meta["checks"]["duplicates"]
    assert dup["n_conflicts"] == 1 and dup["n_excluded"] == 2
    paths = {r["path"] for r in store.read_records()}
    assert "1_fake/same-bytes.jpg" not in paths and "0_real/r000.jpg" not in paths  # left out
    assert meta["data"]["n_images"] == 2 * N_PER_CLASS - 1
    facts = store.read_facts()
    assert len(facts) == len(paths) and {f["format"] for f in facts} == {"JPEG", "PNG"}

    info = subprocess.run([sys.executable, "-m", "pipeline", "info", str(store.path)], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=120)
    assert "WARNING" in info.stdout and "every fake is PNG, every real is JPEG" in info.stdout
    assert "under both labels" in info.stdout

    ctx = AppContext(_cfg(tmp_path, data))
    summary, content, probe, opened = checks.panel(ctx, store.run_id)
    assert opened and "warning(s)" in _texts(summary)
    assert "every fake is PNG" in _texts(content) and "both labels" in _texts(content)
    assert "Run the bias probe" in _texts(probe)


def test_a_clean_set_flags_nothing(tmp_path):
    # the tiny random encoder maps these smooth scenes to nearly one point, so its near-duplicates
    # mean nothing here (they are tested in tests/unit/test_duplicates.py and shown on real data)
    near = "checks.near_duplicate_cos=0.99999"
    store = run_pipeline(_cfg(tmp_path, make_set(tmp_path / "clean", "jpg"), near))
    meta = store.read_meta()
    assert meta["checks"]["shortcuts"]["flags"] == [] and meta["checks"]["duplicates"]["n_conflicts"] == 0
    assert meta["checks"]["shortcuts"]["status"] == "ok"  # scored, not skipped
    ctx = AppContext(_cfg(tmp_path, tmp_path / "clean", near))
    summary, _, _, opened = checks.panel(ctx, store.run_id)
    assert not opened and "nothing flagged" in _texts(summary)
