"""The data-checks panel in a real (headless) browser (issue 12): on a run whose only difference
between the classes is the file (fakes PNG, reals JPEG, one file under both labels) the panel is
open when the page loads, names the format shortcut with its histogram and the conflicting file,
opens a near-duplicate pair in the viewer and runs the bias probe in the background; on a clean
set (both classes JPEG) it stays closed and says nothing is flagged. Two runs of the tiny encoder
in one runs folder, one app. Screenshots at 1600 and 1024 px wide go to test-artifacts/."""
from __future__ import annotations

import shutil

import pytest
from selenium.webdriver.common.by import By

from app.state import ids
from pipeline.checks.bias_probe import DEFAULT_TRANSFORMS
from pipeline.checks.validity import probe_transforms
from pipeline.config import REPO_ROOT
from pipeline.store.run_store import RunStore
from tests.e2e.conftest import AppServer
from tests.e2e.test_app_browser import JOB_TIMEOUT, text_of, wait_until
from tests.e2e.test_viewer_browser import viewer_open
from tests.fixtures_runs import run_pipeline_cli
from tests.integration.test_checks_run import make_set



@pytest.fixture(scope="module")
def checked_runs(tmp_path_factory):
    """(runs folder, cache folder, confounded run id, clean run id)."""
    base = tmp_path_factory.mktemp("checks")
    confounded = make_set(base / "confounded", "png")
    shutil.copy(confounded / "0_real" / "r000.jpg", confounded / "1_fake" / "same-bytes.jpg")
    run_a = run_pipeline_cli(confounded, base / "runs-a", base / "cache")
    run_b = run_pipeline_cli(make_set(base / "clean", "jpg", seed=1), base / "runs-b", base / "cache",
                             "--set", "checks.near_duplicate_cos=0.99999")
    runs = base / "runs"
    for folder, run_id in ((base / "runs-a", run_a), (base / "runs-b", run_b)):
        shutil.copytree(folder / run_id, runs / run_id)
    return runs, base / "cache", run_a, run_b


@pytest.fixture
def checks_server(checked_runs, tmp_path):
    runs, cache, run_a, run_b = checked_runs
    config = tmp_path / "app.yaml"
    config.write_text(f"base: {REPO_ROOT / 'configs' / 'test.yaml'}\nruns_dir: {runs}\ncache_dir: {cache}\n"
                      "cells:\n  n_cells: 4\n")
    server = AppServer(config, run_a, tmp_path / "server.log").start()
    yield server, runs, run_a, run_b
    server.stop()


def panel_open(driver) -> bool:
    return driver.find_element(By.ID, ids.CHECKS_PANEL).get_attribute("open") is not None


def test_the_panel_names_a_file_shortcut_and_the_probe_runs_from_it(dash_br, checks_server, shot):
    server, runs, run_a, run_b = checks_server
    driver = dash_br.driver
    dash_br.server_url = f"{server.url}/?run={run_a}"
    wait_until(lambda: "warning(s)" in text_of(driver, ids.CHECKS_SUMMARY), what="the checks summary")
    assert panel_open(driver)  # flagged: open without a click
    content = text_of(driver, ids.CHECKS_CONTENT)
    assert "every fake is PNG, every real is JPEG" in content
    assert "same bytes, both labels: " in content and "same-bytes.jpg" in content
    flagged_rows = driver.find_elements(By.CSS_SELECTOR, f"#{ids.CHECKS_CONTENT} .fx-check-row.flagged")
    flagged_facts = [r.get_attribute("data-fact") for r in flagged_rows]
    # the format and what follows from it (bytes, chroma subsampling...), never the size: both
    # classes are 64 x 64
    assert "format" in flagged_facts and not {"size", "width", "height", "pixels", "aspect"} & set(flagged_facts), flagged_facts
    # the flagged fact's per-class histogram: PNG only among fakes, JPEG only among reals
    bars = wait_until(lambda: driver.execute_script(
        "var gd = document.querySelector('.fx-check-hist .js-plotly-plot');"
        "return gd && gd._fullData.map(function (t) { return [t.name, Array.from(t.x), Array.from(t.y)]; });"),
        what="the format histogram")
    counts = {name: dict(zip(x, y)) for name, x, y in bars}
    assert counts["real"].get("PNG", 0) == 0 and counts["real"]["JPEG"] > 0
    assert counts["fake"].get("JPEG", 0) == 0 and counts["fake"]["PNG"] > 0
    shot(driver, "27-data-checks-flagged")

    # a near-duplicate pair opens its held-out image in the viewer
    pair = driver.find_elements(By.CSS_SELECTOR, f"#{ids.CHECKS_CONTENT} .fx-check-pair button")
    assert pair, "no near-duplicate pair listed"
    name = pair[0].text.removeprefix("held-out ")
    pair[0].click()
    wait_until(lambda: viewer_open(driver) and text_of(driver, ids.VIEWER_TITLE) == name, what="the viewer")
    driver.find_element(By.ID, ids.VIEWER_CLOSE).click()
    wait_until(lambda: not viewer_open(driver), what="the viewer closed")

    # the bias probe: a background job started from the panel; its table has one row a transformation
    driver.find_element(By.ID, ids.PROBE_START).click()
    wait_until(lambda: driver.find_elements(By.CSS_SELECTOR, ".fx-probe-table tbody tr"),
               timeout=JOB_TIMEOUT, what="the bias probe's table")
    rows = driver.find_elements(By.CSS_SELECTOR, ".fx-probe-table tbody tr")
    # the defaults, then the ones equalising the flagged facts: the format is flagged, so JPEG 90 too
    expected = [t.words for t in probe_transforms(runs / run_a)]
    assert expected[:len(DEFAULT_TRANSFORMS)] == [t.words for t in DEFAULT_TRANSFORMS]
    assert "JPEG quality 90" in expected
    assert [r.find_element(By.TAG_NAME, "td").text for r in rows] == expected
    verdicts = {r.find_element(By.CSS_SELECTOR, ".fx-verdict").text for r in rows}
    assert verdicts <= {"stable", "slight", "robustness", "bias"} and verdicts
    n_heldout = sum(1 for r in RunStore(runs / run_a).read_records() if r["split"] == "heldout")
    assert f"Bias probe on {n_heldout} held-out images" in text_of(driver, ids.PROBE_CONTENT)
    shot(driver, "28-data-checks-probe")

    # the clean set: nothing flagged, the panel stays closed
    dash_br.server_url = f"{server.url}/?run={run_b}"
    wait_until(lambda: "nothing flagged" in text_of(driver, ids.CHECKS_SUMMARY), what="the clean run's checks")
    assert not panel_open(driver)
    shot(driver, "29-data-checks-clean")

