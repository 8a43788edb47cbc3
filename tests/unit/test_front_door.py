"""The front door: ``import pipeline`` and ``import app`` stay cheap (no torch, Dash, timm,
scikit-learn), every public name resolves, a run opens by folder or id, and ``app.show`` serves the
run it is given (outside Jupyter: in a thread, over HTTP) and stops."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request

import pytest

from pipeline.config import REPO_ROOT
from tests.shared.dash_client import DashSession

HEAVY = ("torch", "timm", "sklearn", "skimage", "dash", "flask", "open_clip", "plotly")


def _python(code: str) -> str:
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_import_pipeline_and_app_load_nothing_heavy_and_every_public_name_resolves():
    out = json.loads(_python(
        "import json, sys\n"
        "import pipeline, app\n"
        f"heavy = {HEAVY!r}\n"
        "loaded = lambda: sorted({m.split('.')[0] for m in sys.modules} & set(heavy))\n"
        "at_import = loaded()\n"
        "names = {n: type(getattr(pipeline, n)).__name__ for n in pipeline.__all__}\n"
        "show = app.show\n"
        "print(json.dumps({'at_import': at_import, 'after_names': loaded(), 'names': names,\n"
        "                  'dir': dir(pipeline), 'app_dir': dir(app), 'all': pipeline.__all__}))\n"))
    assert out["at_import"] == []
    assert out["after_names"] == []  # resolving the names (not calling them) loads no heavy module
    assert set(out["all"]) >= {"run", "open_run", "Run", "apply", "maps", "concepts", "matrix",
                               "bias_probe", "list_runs", "make_config", "Config", "__version__"}
    assert set(out["all"]) <= set(out["dir"]) and "show" in out["app_dir"]
    assert out["names"]["run"] == "function" and out["names"]["Run"] == "type"


def test_an_unknown_name_is_an_attribute_error():
    import app
    import pipeline

    with pytest.raises(AttributeError, match="no_such_name"):
        pipeline.no_such_name  # noqa: B018
    with pytest.raises(AttributeError):
        app.no_such_name  # noqa: B018
    assert not hasattr(pipeline, "no_such_name")


def test_make_config_takes_overrides_as_keywords():
    import pipeline

    cfg = pipeline.make_config("configs/test.yaml", head__ortho_weight=0.5, cells={"n_cells": 3})
    assert cfg.head.ortho_weight == 0.5 and cfg.cells.n_cells == 3 and cfg.encoder.name == "tiny"
    assert pipeline.make_config(cfg) is cfg
    with pytest.raises(ValueError, match="unknown config key"):
        pipeline.make_config(None, head__no_such_key=1)


def test_open_run_by_folder_id_store_and_run(make_fake_run, monkeypatch):
    import pipeline
    from pipeline.store.run_store import RunStore

    folder = make_fake_run(n_images=12, n_cells=3)
    monkeypatch.setenv("FAXPLAINER_RUNS_DIR", str(folder.parent))
    by_folder = pipeline.open_run(folder)
    by_id = pipeline.open_run("fake-run")
    assert by_folder == by_id == pipeline.open_run(RunStore(folder)) == pipeline.open_run(by_id)
    assert os.fspath(by_id) == str(folder) and by_id.id == "fake-run" and not by_id.is_applied
    assert len(by_id.records) == 12 and by_id.metrics["head"]["n"] == by_id.meta["metrics"]["head"]["n"]
    assert [c["id"] for c in by_id.cells["cells"]] == [0, 1, 2]
    assert by_id.probe is None and by_id.applied_sets == []
    assert "fake-run: 12 images" in repr(by_id)
    assert [r.id for r in pipeline.list_runs()] == ["fake-run"]
    with pytest.raises(FileNotFoundError, match="no run 'nope'"):
        pipeline.open_run("nope")


def test_image_ids_and_rows_name_the_same_images(make_fake_run):
    import pipeline
    from pipeline.api import _indices

    run = pipeline.open_run(make_fake_run(n_images=12, n_cells=3))
    ids = [r["id"] for r in run.records]
    assert _indices(run, [ids[3], 5]) == [(ids[3], 3), (5, 5)]
    assert _indices(run, 4) == [(4, 4)]
    with pytest.raises(ValueError, match="image ids not in run fake-run: nope"):
        _indices(run, ["nope"])


@pytest.mark.parametrize("kwargs, message", [
    ({"mode": "sideways"}, "mode 'sideways'"),
    ({"host": "0.0.0.0"}, "loopback only"),
])
def test_show_refuses_bad_modes_and_hosts_before_serving(make_fake_run, kwargs, message):
    import app

    with pytest.raises(ValueError, match=message):
        app.show(make_fake_run(n_images=8, n_cells=2), **kwargs)


def test_show_refuses_a_run_outside_the_imposed_runs_folder(make_fake_run, tmp_path, monkeypatch):
    import app

    run = make_fake_run(n_images=8, n_cells=2)
    monkeypatch.setenv("FAXPLAINER_RUNS_DIR", str(tmp_path / "elsewhere"))
    with pytest.raises(ValueError, match="FAXPLAINER_RUNS_DIR"):
        app.show(run, "external")


def route(session: DashSession, search: str) -> str | None:
    """The run the page opens for the address ``?...`` ``search`` (the shell's routing callback)."""
    out = session.call("shell-run-store.data", {"shell-url-location.search": search},
                       ["shell-url-location.search"])
    return (out.get("shell-run-store") or {}).get("data")


def check_served(shown, run_id: str) -> None:
    """``shown``'s page opens ``run_id`` at its bare address and at ``?run=run_id``."""
    base = shown.url.split("/?")[0]
    assert shown.url.endswith(f"/?run={run_id}")
    bare = DashSession(base).open("/")
    assert run_id in bare.get("/_dash-layout").body.decode()  # the run picker lists it
    assert route(bare, "") == run_id  # a bare address opens the run shown
    linked = DashSession(base).open(f"/?run={run_id}")
    assert route(linked, f"?run={run_id}") == run_id


def test_show_outside_jupyter_serves_the_run_in_a_thread_until_stopped(make_fake_run, tmp_path,
                                                                        monkeypatch, capsys):
    import app
    import pipeline

    monkeypatch.delenv("FAXPLAINER_RUNS_DIR", raising=False)
    monkeypatch.setenv("FAXPLAINER_CACHE_DIR", str(tmp_path / "cache"))
    folder = make_fake_run(n_images=12, n_cells=3, run_id="shown-run")
    newer = make_fake_run(n_images=8, n_cells=2, run_id="newer") / "meta.json"
    os.utime(newer, (newer.stat().st_atime, newer.stat().st_mtime + 60))  # the newest: a bare URL's default
    cfg = pipeline.make_config(None, server__preload_job_stack=False)
    from app.jobs.fork_safety import blas_threads

    before = blas_threads()
    shown = app.show(pipeline.open_run(folder), "external", config=cfg)
    try:
        assert f"FaXplainer on {shown.url}" in capsys.readouterr().out
        check_served(shown, "shown-run")
        assert blas_threads() == 1  # the kernel forks the app's jobs (app.jobs.fork_safety)
    finally:
        shown.stop()
    assert blas_threads() == before  # given back
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(shown.url, timeout=5)
    shown.stop()  # a second stop does nothing


def test_show_in_jupyter_hands_the_app_to_dashs_jupyter_mode(make_fake_run, tmp_path, monkeypatch):
    """In a kernel, Dash's own Jupyter mode serves and displays the app (no kernel here: the
    check is that show asks it with the mode, the run opened by default, and that stop ends it)."""
    import dash
    from dash._jupyter import jupyter_dash

    import app
    import app.notebook
    import pipeline

    monkeypatch.delenv("FAXPLAINER_RUNS_DIR", raising=False)
    monkeypatch.setenv("FAXPLAINER_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(app.notebook, "_in_jupyter", lambda: True)
    calls, stopped = [], []

    class Server:
        def shutdown(self):
            stopped.append(True)

    def fake_run(self, **kwargs):
        calls.append((self, kwargs))
        jupyter_dash._servers[(kwargs["host"], kwargs["port"])] = Server()

    monkeypatch.setattr(dash.Dash, "run", fake_run)
    import app.main
    made, create_app = [], app.main.create_app
    monkeypatch.setattr(app.main, "create_app",
                        lambda cfg, run_id: made.append((cfg, run_id)) or create_app(cfg, run_id))
    folder = make_fake_run(n_images=8, n_cells=2, run_id="in-jupyter")
    cfg = pipeline.make_config(None, server__preload_job_stack=False)
    shown = app.show(folder, "inline", config=cfg, port=8123, height=500)
    (dash_app, kwargs), = calls
    assert kwargs == {"host": "127.0.0.1", "port": 8123, "jupyter_mode": "inline",
                      "jupyter_width": "100%", "jupyter_height": 500}
    assert shown.url == "http://127.0.0.1:8123/?run=in-jupyter" and shown.app is dash_app
    (cfg_made, run_id), = made
    assert run_id == "in-jupyter" and cfg_made.runs_path == folder.parent  # opened by default
    shown.stop()
    assert stopped == [True] and ("127.0.0.1", 8123) not in jupyter_dash._servers
