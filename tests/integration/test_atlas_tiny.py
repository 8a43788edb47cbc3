"""The atlas of a real (tiny-encoder) run end to end: computed once with progress, kept and read
back without computing, printed by ``python -m pipeline atlas`` (text and --json), cancelled
without touching what is kept; the tiny encoder is a random CLIP, so the names column is there."""
from __future__ import annotations

import io
import json
import re
from contextlib import redirect_stdout

import pytest

from pipeline.cli.main import main as cli_main
from pipeline.config import REPO_ROOT, Config, load_config
from pipeline.explain.atlas import read_atlas
from pipeline.explain.atlas_jobs import get_atlas
from pipeline.explain.dimension_names import VOCABULARY
from pipeline.explain.profiles import EVIDENCE_VERDICTS, VERDICTS
from pipeline.runner import run_pipeline
from pipeline.store.derived import Cancelled
from tests.fixtures_runs import make_dataset
from tests.helpers import torch_threads

pytestmark = pytest.mark.slow
N = 4


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("atlas")
    data = make_dataset(tmp / "data", n_per_folder=4)
    cfg = load_config(REPO_ROOT / "configs" / "test.yaml",
                      [f"data.root={data}", f"runs_dir={tmp / 'runs'}", f"cache_dir={Config().cache_path}",
                       "cells.n_cells=4"])
    with torch_threads(2):
        return run_pipeline(cfg).path


def test_atlas_is_computed_once_kept_and_printed(run):
    seen = []
    with torch_threads(2):
        atlas = get_atlas(run, lambda done, total, stage: seen.append((done, total, stage)), n_images=N)
    assert atlas["n_images"] == N and atlas["n_real"] == atlas["n_fake"] == N // 2 and not atlas["skipped"]
    assert any(stage.startswith(f"relevance maps, subject masks and blur tests of {N}") and done == total
               for done, total, stage in seen)
    assert len(atlas["dimensions"]) == 16
    for d in atlas["dimensions"]:
        assert d["verdict"] in VERDICTS and 0 <= d["subject_share"] <= 1 and 0.1 <= d["concentration"] <= 1
        assert {e["index"] for e in d["top"]} <= set(atlas["image_indices"])
        assert d["sentence"].startswith(f"d{d['dim']}: ")
        assert [n["word"] for n in d["names"]] and all(n["word"] in VOCABULARY for n in d["names"])
        # the blur test of every sampled image, kept: the moves are >= 0 and the share is theirs
        assert d["evidence_verdict"] in EVIDENCE_VERDICTS and min(d["evidence_subject"], d["evidence_background"]) >= 0
        moved = d["evidence_subject"] + d["evidence_background"]
        assert moved == 0 or d["evidence_share"] == pytest.approx(d["evidence_subject"] / moved)
        assert "blurring the subject" in d["sentence"]
    assert len(list((run / "evidence").glob("*.npz"))) == N
    assert atlas["names_available"] is True  # the tiny encoder is a (random) CLIP with a text tower

    assert read_atlas(run, N) == atlas
    kept = (run / "atlas" / "atlas.json").stat().st_mtime_ns
    with torch_threads(2):
        assert get_atlas(run, n_images=N) == atlas  # read, not computed
    assert (run / "atlas" / "atlas.json").stat().st_mtime_ns == kept

    out = io.StringIO()
    with redirect_stdout(out):
        assert cli_main(["atlas", str(run), "--images", str(N)]) == 0
    text = out.getvalue().splitlines()
    assert text[0].startswith(f"dimension atlas: {N} held-out images")
    assert sum(bool(re.match(r"d\d+: ", line)) for line in text) == 16
    assert text[2].startswith(f"blur test on the {N} images: ")
    out = io.StringIO()
    with redirect_stdout(out):
        assert cli_main(["atlas", str(run), "--images", str(N), "--json"]) == 0
    assert json.loads(out.getvalue())["key"] == atlas["key"]


def test_a_cancelled_recompute_keeps_the_atlas(run):
    polls, seen = [], []

    def cancel_after_the_first_report() -> bool:  # polled once for the lock, then at each report
        polls.append(1)
        return len(polls) > 2

    with torch_threads(2):
        before = get_atlas(run, n_images=N)
        with pytest.raises(Cancelled):
            get_atlas(run, lambda *a: seen.append(a), n_images=N, recompute=True,
                      should_cancel=cancel_after_the_first_report)
    assert len(seen) == 1  # it had started computing
    assert read_atlas(run, N) == before
