"""Browser tests of the app (dash[testing] + Debian chromium/chromedriver, headless).

The app under test runs as a real server process (``python -m app``) over a run made by the real
pipeline with the tiny encoder (``configs/test.yaml``) on a small generated data set, so clicks,
background jobs (relevance maps, concepts, new runs) and restarts behave as in use. The browser
comes from dash's ``dash_br`` fixture with the options below. Screenshots go to
``test-artifacts/``.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from pipeline.config import REPO_ROOT
from tests.fixtures_runs import make_dataset, run_pipeline_cli

ARTIFACTS = REPO_ROOT / "test-artifacts"


def pytest_setup_options():
    from selenium.webdriver.chrome.options import Options

    options = Options()
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1500,1400", "--hide-scrollbars"):
        options.add_argument(arg)
    return options


def pytest_collection_modifyitems(config, items):
    if shutil.which("chromedriver") and (shutil.which("chromium") or shutil.which("google-chrome")):
        return
    skip = pytest.mark.skip(reason="browser tests need chromium and chromedriver "
                                   "(apt-get install chromium chromium-driver)")
    for item in items:
        if "tests/e2e" in str(item.fspath):
            item.add_marker(skip)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """(data folder, template runs folder, model cache folder, run id), made once per session."""
    base = tmp_path_factory.mktemp("e2e-template")
    data = make_dataset(base / "data")
    run_id = run_pipeline_cli(data, base / "runs", base / "cache")
    return data, base / "runs", base / "cache", run_id


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class AppServer:
    """``python -m app`` in its own process, restartable."""

    def __init__(self, config: Path, run_id: str, log: Path):
        self.config, self.run_id, self.log = config, run_id, log
        self.proc = None
        self.port = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "AppServer":
        self.port = free_port()
        env = dict(os.environ)
        env.pop("FAXPLAINER_RUNS_DIR", None)
        env.pop("FAXPLAINER_CACHE_DIR", None)
        self._log = open(self.log, "a")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "app", "--config", str(self.config), "--port", str(self.port)],
            cwd=REPO_ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.time() + 60
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"app exited: {self.log.read_text()[-3000:]}")
            try:
                urllib.request.urlopen(self.url + "/", timeout=2)
                return self
            except OSError:
                time.sleep(0.3)
        raise RuntimeError(f"app did not start: {self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        if self.proc:
            self._log.close()
        self.proc = None

    def restart(self) -> "AppServer":
        self.stop()
        return self.start()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Keep each phase's report on the test item, so a fixture can tell whether its test failed."""
    outcome = yield
    setattr(item, f"report_{call.when}", outcome.get_result())


@pytest.fixture
def app_server(tiny_run, tmp_path, request):
    """A fresh copy of the tiny run, a fresh app cache, and the app serving them. When the test
    fails, the end of the app's log is printed with the failure (a CI run leaves nothing else)."""
    data, template, model_cache, run_id = tiny_run
    runs = tmp_path / "runs"
    shutil.copytree(template, runs)
    config = tmp_path / "app.yaml"
    config.write_text(f"base: {REPO_ROOT / 'configs' / 'test.yaml'}\n"
                      f"runs_dir: {runs}\ncache_dir: {tmp_path / 'cache'}\n"
                      f"data:\n  root: {data}\n"
                      "cells:\n  n_cells: 4\nconcepts:\n  k: 3\n")
    server = AppServer(config, run_id, tmp_path / "server.log").start()
    yield server
    server.stop()
    report = getattr(request.node, "report_call", None)
    if report is not None and report.failed:
        print(f"--- end of the app's log ({server.log}) ---\n{server.log.read_text()[-6000:]}")


SHOT_WIDTHS = (1600, 1024)  # the screens an analyst has: a desktop and a small laptop
WINDOW = (1500, 1400)  # the tests' window (pytest_setup_options)


@pytest.fixture
def shot():
    """``shot(driver, name)`` saves the whole page at 1600 and 1024 px wide to
    test-artifacts/<name>-<width>.png (the window is made as tall as the page), then restores
    the window."""
    ARTIFACTS.mkdir(exist_ok=True)

    def save(driver, name: str) -> list[Path]:
        paths = []
        for width in SHOT_WIDTHS:
            height = 1000
            for _ in range(3):  # the page's height changes as it relayouts at the new width
                driver.set_window_size(width, height)
                time.sleep(0.6)  # plotly figures and the CSS grid relayout on resize
                page = int(driver.execute_script("return Math.max(document.body.scrollHeight, "
                                                 "document.documentElement.scrollHeight);"))
                if page <= height:
                    break
                height = min(page + 40, 5000)
            driver.execute_script("window.scrollTo(0, 0);")
            path = ARTIFACTS / f"{name}-{width}.png"
            driver.save_screenshot(str(path))
            paths.append(path)
        driver.set_window_size(*WINDOW)
        time.sleep(0.3)
        return paths

    return save
