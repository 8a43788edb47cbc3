"""A run folder written by an older version (commit f38e286, before ``RunStore`` owned the format
and ``pipeline.model.run_models`` loaded the models) still opens and explains.

``tests/fixtures/run-f38e286.tar.gz`` holds a 24-image data set (``tests.fixtures_runs
.make_dataset(seed=3, n_per_folder=3)``) and the run that commit's ``python -m pipeline run
--config configs/test.yaml --set concepts.k=3 --set cells.n_cells=4`` made of it (tiny encoder).
Only ``meta.json``'s data root is rewritten after unpacking, as when a run folder is moved.
"""
from __future__ import annotations

import json
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest

from app.figures.common import trace_index
from app.figures.grid import GRID_TRACE_NAME
from app.files import artifacts
from app.state.context import AppContext
from app.views import attention, concepts, images
from pipeline.config import REPO_ROOT, from_dict
from pipeline.report.notes import NotesStore
from pipeline.store.run_store import RunStore

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "run-f38e286.tar.gz"
RUN_ID = "data-df36470771"


class Progress:
    def __init__(self):
        self.calls = []

    def __call__(self, value):
        self.calls.append(value)


@pytest.fixture
def old_run(tmp_path, monkeypatch):
    with tarfile.open(FIXTURE) as tar:
        tar.extractall(tmp_path, filter="data")
    run = tmp_path / "runs" / RUN_ID
    meta = json.loads((run / "meta.json").read_text())
    meta["data"]["root"] = str(tmp_path / "data")
    (run / "meta.json").write_text(json.dumps(meta))
    monkeypatch.setenv("FAXPLAINER_CACHE_DIR", str(tmp_path / "cache"))
    return run


def test_old_run_is_intact_and_reads_with_the_new_store(old_run):
    store = RunStore(old_run)
    assert store.damaged() == []  # its own checksums, listed by hand in the old runner, still hold
    records = store.read_records()
    assert len(records) == 24 and {r["label"] for r in records} == {0, 1}
    assert all(r["split"] in ("train", "heldout") and 0 <= r["prob_fake"] <= 1 for r in records)
    assert store.image_path(0).is_file()
    assert store.config().encoder.name == "tiny"


def test_old_run_opens_and_explains_in_the_app(old_run, tmp_path):
    ctx = AppContext(from_dict({"runs_dir": str(tmp_path / "runs"), "cache_dir": str(tmp_path / "cache")}))
    assert ctx.initial_run() == RUN_ID and ctx.run_error(RUN_ID) is None
    view = ctx.run(RUN_ID)
    cell = int(view.cells["cells"][0]["id"])
    request = images.JOB.render(ctx, cell, RUN_ID, None)[-1]
    fig, shown, message = images.JOB.prepare(ctx, request, Progress())
    grid = fig.data[trace_index(fig, GRID_TRACE_NAME)]
    assert message == "" and sorted(grid.customdata) == view.cell_members(cell).tolist()

    chosen = view.cell_members(cell).tolist()[:2]
    request = attention.JOB.render(ctx, {"ids": chosen}, RUN_ID, cell)[-1]
    content, ready, message = attention.JOB.prepare(ctx, request, Progress())  # the real explain stack
    assert len(content) == 1 and ready == {"run": RUN_ID}, message
    cache = ctx.app_cache(view)
    run_logits = RunStore(old_run).load_array("logit")
    for i in chosen:
        meta = artifacts.read_attention(cache, i)
        assert meta["error"] is None and len(meta["contributions"]) == 16
        # the explained forward pass is the run's own: same encoder, projection and head
        assert meta["logit"] == pytest.approx(float(run_logits[i]), abs=1e-4)
    check = attention.CHECK.render(ctx, ready, RUN_ID, None)[-1]
    assert attention.CHECK.prepare(ctx, check, Progress())[0] == RUN_ID  # the deletion check runs
    request = concepts.JOB.render(ctx, "concepts", cell, RUN_ID)[-1]
    content, message = concepts.JOB.prepare(ctx, request, Progress())
    assert content and f"concepts of cell {cell}" in message

    NotesStore(old_run).add("old run, new code", cell=cell, images=chosen)
    rows = NotesStore(old_run).export_csv().splitlines()
    assert len(rows) == 1 + len(chosen) and str(Path(tmp_path / "data").resolve()) in rows[1]


def test_pipeline_info_prints_an_old_run(old_run):
    r = subprocess.run([sys.executable, "-m", "pipeline", "info", str(old_run)], cwd=REPO_ROOT,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert f"run {RUN_ID}" in r.stdout and "held-out accuracy" in r.stdout
