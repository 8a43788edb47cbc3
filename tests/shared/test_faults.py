"""Faults on disk: a corrupted run artifact is detected by its checksum, never shown, and
recomputed; an unusable cache folder and a full disk give a clear error and damage nothing."""
from __future__ import annotations

import errno
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from app.state.context import AppContext
from pipeline.config import REPO_ROOT, load_config
from pipeline.store.diskcheck import StorageError, writable_folder
from pipeline.runner import run_pipeline
from pipeline.store.run_store import ArtifactError, RunStore


def _copy_run(shared_run, tmp_path) -> tuple[Path, Path]:
    runs, cache = tmp_path / "runs", tmp_path / "cache"
    shutil.copytree(shared_run["runs"], runs)
    shutil.copytree(shared_run["cache"], cache, ignore=shutil.ignore_patterns("shared", "locks"))
    return runs, cache


def _cfg(shared_run, runs, cache, *extra):
    # the settings tests.fixtures_runs.run_pipeline_cli made the shared run with: same run id
    return load_config(REPO_ROOT / "configs" / "test.yaml", [
        f"data.root={shared_run['data']}", f"runs_dir={runs}", f"cache_dir={cache}",
        "concepts.k=3", "cells.n_cells=4", *extra])


def _flip_bytes(path: Path, offset_from_end: int = 40) -> None:
    raw = bytearray(path.read_bytes())
    raw[-offset_from_end] ^= 0xFF
    path.write_bytes(bytes(raw))


def test_corrupted_array_is_detected_not_shown_and_recomputed(shared_run, tmp_path):
    runs, cache = _copy_run(shared_run, tmp_path)
    run_dir = runs / shared_run["run_id"]
    meta = RunStore(run_dir).read_meta()
    z_path = run_dir / "z16.npy"
    good = np.load(z_path)
    _flip_bytes(z_path)  # one flipped byte: still a valid .npy, wrong numbers
    assert not np.array_equal(np.load(z_path), good)
    with pytest.raises(ArtifactError, match="fails its checksum"):
        RunStore(run_dir).load_array("z16")  # checked against meta.json

    ctx = AppContext(_cfg(shared_run, runs, cache))
    assert ctx.run(shared_run["run_id"]) is None  # the app does not show it...
    assert "checksum" in ctx.run_error(shared_run["run_id"])  # ...and says why

    store = run_pipeline(_cfg(shared_run, runs, cache))  # the same run again: recomputed
    assert store.path == run_dir
    fresh = RunStore(run_dir).read_meta()
    z = RunStore(run_dir).load_array("z16")
    assert z.shape == good.shape and np.isfinite(z).all()
    assert ctx.run(shared_run["run_id"]) is not None


def test_cache_folder_that_is_a_file_gives_a_clear_error_before_any_work(shared_run, tmp_path):
    blocker = tmp_path / "cache-is-a-file"
    blocker.write_text("not a folder")
    cfg = _cfg(shared_run, tmp_path / "runs", blocker)
    with pytest.raises(StorageError, match=r"cache folder \(cache_dir\) .*cache-is-a-file cannot be "
                                           r"used: a file is in the way"):
        run_pipeline(cfg, progress=lambda *a: pytest.fail("no stage may start"))
    assert blocker.read_text() == "not a folder"
    # the command line says it in one line, without a traceback
    r = subprocess.run([sys.executable, "-m", "pipeline", "run", "--config",
                        str(REPO_ROOT / "configs" / "test.yaml"), "--data", str(shared_run["data"]),
                        "--set", f"cache_dir={blocker}", "--set", f"runs_dir={tmp_path / 'runs'}"],
                       cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "cache folder (cache_dir)" in r.stderr and "a file is in the way" in r.stderr


def test_read_only_folder_is_reported(tmp_path):
    if os.geteuid() == 0:  # root writes anywhere; a missing parent that is a file stands in
        target = tmp_path / "file"
        target.write_text("x")
        with pytest.raises(StorageError, match="a file is in the way"):
            writable_folder(target / "sub", "runs folder (runs_dir)")
        return
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        with pytest.raises(StorageError, match="permission denied"):
            writable_folder(ro / "runs", "runs folder (runs_dir)")
    finally:
        ro.chmod(0o700)


def _disk_full_when(monkeypatch, marker: str):
    """``os.fsync`` fails with ENOSPC for files whose (temporary) name contains ``marker``."""
    real = os.fsync

    def fsync(fd):
        name = os.readlink(f"/proc/self/fd/{fd}")
        if marker in name:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd)

    monkeypatch.setattr(os, "fsync", fsync)


@pytest.mark.skipif(not Path("/proc/self/fd").exists(), reason="needs /proc")
def test_full_disk_names_the_file_and_keeps_the_old_one(shared_run, tmp_path, monkeypatch):
    runs, _ = _copy_run(shared_run, tmp_path)
    run_dir = runs / shared_run["run_id"]
    before = (run_dir / "meta.json").read_bytes()
    _disk_full_when(monkeypatch, "meta.json")
    with pytest.raises(StorageError, match=r"cannot write .*meta\.json: the disk is full") as info:
        RunStore(run_dir).update_meta(note="x")
    assert info.value.errno == errno.ENOSPC
    assert (run_dir / "meta.json").read_bytes() == before  # the old file is intact
    assert not [p for p in run_dir.iterdir() if p.name.endswith(".tmp")]  # nothing left behind


@pytest.mark.skipif(not Path("/proc/self/fd").exists(), reason="needs /proc")
def test_run_stopped_by_a_full_disk_says_so_and_damages_no_cache(shared_run, tmp_path, monkeypatch):
    from tests.integration.test_pipeline_tiny import make_dataset

    _, cache = _copy_run(shared_run, tmp_path)
    chunks_before = {p: p.read_bytes() for p in cache.glob("embeddings/*/chunk-*.npz")}
    data = make_dataset(tmp_path / "new-data", n_per_class=20, seed=3, salt=False)
    cfg = load_config(REPO_ROOT / "configs" / "test.yaml", [
        f"data.root={data}", f"runs_dir={tmp_path / 'new-runs'}", f"cache_dir={cache}",
        "encoder.chunk_size=8"])
    _disk_full_when(monkeypatch, ".chunk-")
    with pytest.raises(StorageError, match=r"cannot write .*chunk-.*\.npz: the disk is full"):
        run_pipeline(cfg)
    monkeypatch.undo()
    assert {p: p.read_bytes() for p in cache.glob("embeddings/*/chunk-*.npz")} == chunks_before
    assert not list(cache.glob("embeddings/*/.chunk-*.tmp"))
    assert not list((tmp_path / "new-runs").glob("*/meta.json"))  # no half run looks finished


def test_the_app_reports_a_storage_error_of_a_run(tmp_path):
    """What the "new run" job shows: the exception's message, which names the folder."""
    from app.jobs.work import run_new

    blocker = tmp_path / "cache"
    blocker.write_text("x")
    cfg = load_config(REPO_ROOT / "configs" / "test.yaml", [f"runs_dir={tmp_path / 'runs'}",
                                                            f"cache_dir={blocker}"])
    with pytest.raises(OSError, match=re.escape(str(blocker)) + ".* a file is in the way"):
        run_new(cfg, progress=lambda *a: pytest.fail("no stage may start"))
