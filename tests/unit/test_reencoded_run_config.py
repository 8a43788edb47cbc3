"""The configuration of a run's re-run with both classes re-encoded (app.jobs.work): the run's own
data and settings, the app's folders, only ``data.reencode`` changed."""
from __future__ import annotations

import dataclasses

import pytest

from app.jobs.work import reencoded_run_config
from pipeline.config import REPO_ROOT, load_config


def test_the_rerun_keeps_the_runs_data_and_settings_and_the_apps_folders(tmp_path):
    app_cfg = load_config(REPO_ROOT / "configs" / "test.yaml", [f"runs_dir={tmp_path / 'runs'}",
                                                                f"cache_dir={tmp_path / 'cache'}"])
    run_cfg = load_config(REPO_ROOT / "configs" / "test.yaml", ["data.root=/data/ml72", "head.seed=7",
                                                                "runs_dir=/elsewhere"])
    cfg = reencoded_run_config(app_cfg, run_cfg, "jpeg:90:256")
    assert cfg.data == dataclasses.replace(run_cfg.data, reencode="jpeg:90:256")
    assert cfg.data.reencode_spec.size == 256 and cfg.head.seed == 7
    assert cfg.runs_dir == str(tmp_path / "runs") and cfg.cache_dir == str(tmp_path / "cache")
    assert cfg.fingerprint("data") != run_cfg.fingerprint("data")  # a new run, not the old one


def test_a_bad_spec_or_a_run_without_data_is_refused_in_words():
    cfg = load_config(REPO_ROOT / "configs" / "test.yaml", ["data.root=/data/ml72"])
    with pytest.raises(ValueError, match="bad re-encoding spec"):
        reencoded_run_config(cfg, cfg, "gif:3")
    with pytest.raises(ValueError, match="names no data"):
        reencoded_run_config(cfg, load_config(REPO_ROOT / "configs" / "test.yaml"), "jpeg:90")
