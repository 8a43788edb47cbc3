"""app.state.last_run: each user's last opened run, kept server side, so that on a shared server a bare
URL opens the run that user last opened and not the newest run anyone made."""
from __future__ import annotations

import dataclasses
import json
import multiprocessing as mp
import os
import signal
import time

import pytest

from app.state import last_run
from app.state.context import AppContext
from app.state.last_run import LastRuns
from app.state.urlstate import ViewState
from app.views import shell

fork = mp.get_context("fork")


def test_each_user_keeps_their_own_last_run(tmp_path):
    store = LastRuns(tmp_path)
    store.set("alice", "run-a")
    store.set("bob", "run-b")
    store.set("alice", "run-c")
    again = LastRuns(tmp_path)  # another web process, or after a restart
    assert (again.get("alice"), again.get("bob"), again.get("carol")) == ("run-c", "run-b", None)
    assert set(json.loads((tmp_path / "last-runs.json").read_text())["users"]) == {"alice", "bob"}


def _writer(folder, user, count):
    store = LastRuns(folder)
    for i in range(count):
        store.set(user, f"run-{i}")


def test_writers_in_several_processes_lose_no_user(tmp_path):
    procs = [fork.Process(target=_writer, args=(tmp_path, f"user{u}", 20)) for u in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    store = LastRuns(tmp_path)
    assert {f"user{u}": store.get(f"user{u}") for u in range(4)} == {f"user{u}": "run-19" for u in range(4)}


def _write_forever(folder):
    store, i = LastRuns(folder), 0
    while True:
        store.set(f"user{i % 7}", f"run-{i}")
        i += 1


def test_a_writer_killed_mid_write_leaves_a_whole_file(tmp_path):
    LastRuns(tmp_path).set("bob", "run-b")
    for _ in range(5):
        p = fork.Process(target=_write_forever, args=(tmp_path,))
        p.start()
        time.sleep(0.3)
        os.kill(p.pid, signal.SIGKILL)
        p.join(10)
        data = json.loads((tmp_path / "last-runs.json").read_text())  # always parses
        assert data["users"]["bob"]["run"] == "run-b"  # and no entry is lost
    assert LastRuns(tmp_path).get("user0") is not None


def test_a_damaged_file_is_set_aside_not_fatal(tmp_path, caplog):
    (tmp_path / "last-runs.json").write_text("{half a file")
    store = LastRuns(tmp_path)
    assert store.get("alice") is None  # the page opens the default run
    store.set("alice", "run-a")
    assert store.get("alice") == "run-a"
    aside = list(tmp_path.glob("last-runs.json.damaged-*"))
    assert len(aside) == 1 and aside[0].read_text() == "{half a file"
    assert "cannot be read" in caplog.text


@pytest.fixture
def runs(make_fake_run, app_config):
    """Two runs; ``newer`` is the newest (a bare URL's fallback)."""
    older = make_fake_run(n_images=12, n_cells=3, run_id="older")
    newer = make_fake_run(n_images=12, n_cells=3, run_id="newer")
    os.utime(older / "meta.json", (time.time() - 60, time.time() - 60))
    return app_config


def _as(monkeypatch, user):
    monkeypatch.setattr(last_run, "current_identity", lambda cfg: (user, "analyst"))


def test_a_bare_url_opens_the_user_s_last_run_in_shared_mode(runs, monkeypatch):
    cfg = dataclasses.replace(runs, server=dataclasses.replace(runs.server, mode="shared"))
    ctx = AppContext(cfg)
    _as(monkeypatch, "bob")
    assert shell.route(ctx, None, "", ViewState())[0].run == "newer"  # never opened one: newest
    last_run.remember(ctx, "older")
    last_run.remember(ctx, "no-such-run")  # not a run: not remembered
    state, write_url = shell.route(ctx, None, "?cell=1", ViewState())
    assert (state.run, state.cell, write_url) == ("older", 1, True)
    _as(monkeypatch, "alice")  # another user is not moved by bob's choice
    assert shell.route(ctx, None, "", ViewState())[0].run == "newer"
    _as(monkeypatch, "bob")
    (ctx.runs_path / "older" / "meta.json").unlink()  # bob's run is gone: the default again
    assert shell.route(ctx, None, "", ViewState())[0].run == "newer"


def test_local_mode_keeps_the_newest_run_and_writes_nothing(runs, monkeypatch):
    ctx = AppContext(runs)
    last_run.remember(ctx, "older")
    assert shell.route(ctx, None, "", ViewState())[0].run == "newer"
    assert not (ctx.cache_path / "users").exists()
