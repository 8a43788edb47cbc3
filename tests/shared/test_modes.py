"""Local and shared mode set-up, without Redis: which job manager each mode gets, what a Celery
worker's main process imports (no torch before the fork), and where the local app may bind."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

from app.jobs.managers import make_managers
from pipeline.config import REPO_ROOT, from_dict


def test_local_mode_keeps_diskcache_and_shared_mode_uses_celery_queues(tmp_path):
    from dash import CeleryManager, DiskcacheManager

    folders = {"runs_dir": str(tmp_path / "runs"), "cache_dir": str(tmp_path / "cache")}
    local = make_managers(from_dict(folders))
    assert isinstance(local.views, DiskcacheManager) and isinstance(local.runs, DiskcacheManager)
    shared = make_managers(from_dict({**folders, "server": {"mode": "shared",
                                                            "redis_url": "redis://127.0.0.1:1/3"}}))
    assert isinstance(shared.views, CeleryManager) and isinstance(shared.runs, CeleryManager)
    assert (shared.views.queue, shared.runs.queue) == ("faxplainer-views", "faxplainer-runs")
    # a cell's grid has a queue (and a worker) of its own in shared mode; locally every job is
    # its own process, so the grids share the views' manager
    assert shared.grids.queue == "faxplainer-grids" and local.grids is local.views
    # no memo in either mode: each request has a nonce, the files on disk are the cache (app.jobs.managers)
    assert not (shared.views.cache_by or shared.runs.cache_by or local.views.cache_by)
    assert shared.views.handle.conf.broker_url == "redis://127.0.0.1:1/3"
    assert shared.views.handle is shared.runs.handle
    conf = shared.views.handle.conf
    assert conf.task_acks_late and conf.task_reject_on_worker_lost and conf.worker_prefetch_multiplier == 1


def test_worker_main_process_registers_the_jobs_and_imports_no_torch(tmp_path, monkeypatch):
    """What the worker's main process does before forking its pool: build the app's tasks only."""
    config = tmp_path / "shared.yaml"
    config.write_text(json.dumps({"base": str(REPO_ROOT / "configs" / "test.yaml"),
                                  "runs_dir": str(tmp_path / "runs"), "cache_dir": str(tmp_path / "c"),
                                  "server": {"mode": "shared", "redis_url": "redis://127.0.0.1:1/0"}}))
    script = textwrap.dedent("""
        import json, sys
        from app.shared.worker import celery
        names = sorted(n for n in celery.tasks if n.startswith("background_callback_"))
        heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "open_clip", "timm"))
        print(json.dumps({"tasks": names, "heavy": heavy}))
    """)
    monkeypatch.delenv("FAXPLAINER_USERS_FILE", raising=False)  # a worker needs no users file
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "no-config"))
    env = dict(os.environ, FAXPLAINER_CONFIG=str(config), PYTHONPATH=str(REPO_ROOT))
    r = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, env=env, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert len(out["tasks"]) >= 4  # new run, grid, maps, concepts
    assert out["heavy"] == []


def test_worker_refuses_a_local_config(tmp_path):
    env = dict(os.environ, FAXPLAINER_CONFIG=str(REPO_ROOT / "configs" / "test.yaml"))
    r = subprocess.run([sys.executable, "-c", "from app.shared.worker import celery"], cwd=REPO_ROOT,
                       env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and "server.mode: shared" in r.stderr


def _app_cli(*args):
    # refused at once; if it ever served instead, the timeout ends it
    return subprocess.run([sys.executable, "-m", "app", *args], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=60)


def test_local_mode_binds_to_loopback_only():
    r = _app_cli("--config", str(REPO_ROOT / "configs" / "test.yaml"), "--host", "0.0.0.0")
    assert r.returncode == 2 and "127.0.0.1 only" in r.stderr
    r = _app_cli("--config", str(REPO_ROOT / "configs" / "shared.yaml"))
    assert r.returncode == 2 and "serve-shared" in r.stderr


def test_heavy_workers_run_behind_the_grids_on_the_cpu(tmp_path, monkeypatch):
    """The launcher's command lines: views and runs at ``server.heavy_nice``, without it the grids
    worker, which also skips the torch warm-up (its jobs never need torch)."""
    import app.shared.stack as shared_stack

    cfg = from_dict({"runs_dir": str(tmp_path / "runs"), "cache_dir": str(tmp_path / "cache"),
                     "server": {"mode": "shared", "redis_url": "redis://127.0.0.1:1/0",
                                "job_workers": 2, "grid_workers": 1, "heavy_nice": 7}})
    spawned = {}
    monkeypatch.setattr(shared_stack, "recover", lambda celery, queues: 0)
    stack = shared_stack.SharedStack(cfg, state_dir=tmp_path / "state")
    monkeypatch.setattr(stack, "_spawn", lambda name, cmd, **kw: spawned.__setitem__(name, (cmd, kw)))
    for name in stack.WORKERS:
        stack.start_worker(name, wait=False)
    for name, queue, concurrency in (("views", "faxplainer-views", "2"), ("grids", "faxplainer-grids", "1"),
                                     ("runs", "faxplainer-runs,faxplainer-embed", "1")):
        cmd, kw = spawned[f"worker-{name}"]
        assert cmd[cmd.index("-Q") + 1] == queue and cmd[cmd.index("-c") + 1] == concurrency
        heavy = name != "grids"
        assert (cmd[:3] == ["nice", "-n", "7"]) is heavy, cmd
        assert kw["warm_up"] is heavy


def test_a_worker_started_without_warm_up_imports_nothing_heavy(monkeypatch):
    import app.shared.worker as worker

    started = []
    monkeypatch.setattr(worker.threading, "Thread", lambda **kw: started.append(kw) or
                        type("T", (), {"start": lambda self: None})())
    monkeypatch.setenv("FAXPLAINER_WARM_UP", "0")
    worker.warm_up_pool_process()
    assert started == []
    monkeypatch.setenv("FAXPLAINER_WARM_UP", "1")
    worker.warm_up_pool_process()
    assert len(started) == 1 and started[0]["target"] is worker._import_explain_stack
