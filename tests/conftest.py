"""Shared fixtures.

``make_fake_run(n_images=40, n_cells=4, ...)`` writes a generated run folder (see
``tests/fixtures_runs.py``) under the test's tmp_path and returns its path; ``app_config`` is a
Config whose runs and cache folders are that tmp_path's ``runs/`` and ``cache/``.
"""
from __future__ import annotations

import pytest

from pipeline.config import from_dict
from tests.fixtures_runs import make_fake_run as _make_fake_run


@pytest.fixture
def make_fake_run(tmp_path):
    def make(**kwargs):
        return _make_fake_run(tmp_path, **kwargs)

    return make


@pytest.fixture
def app_config(tmp_path):
    return from_dict({"runs_dir": str(tmp_path / "runs"), "cache_dir": str(tmp_path / "cache")})
