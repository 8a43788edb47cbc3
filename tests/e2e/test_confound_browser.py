"""A flagged size confound, re-run from the data checks (issue 23.7), in a real (headless)
browser: on a run whose classes differ only in size (reals 64x48, fakes 80x80) the panel offers
"Re-run with both classes re-encoded (jpeg:90:48)"; the re-run is a background job; when it is
ready the compare view shows both runs side by side. Screenshots at 1600 and 1024 px wide go to
test-artifacts/."""
from __future__ import annotations

import pytest
from selenium.webdriver.common.by import By

from app.state import ids
from pipeline.config import REPO_ROOT
from tests.e2e.conftest import AppServer
from tests.e2e.test_app_browser import JOB_TIMEOUT, text_of, wait_until
from tests.fixtures_runs import run_pipeline_cli
from tests.integration.test_confound_rerun import make_size_set


@pytest.fixture
def confound_server(tmp_path):
    data = make_size_set(tmp_path / "sized")
    runs, cache = tmp_path / "runs", tmp_path / "cache"
    run_a = run_pipeline_cli(data, runs, cache, "--set", "checks.near_duplicate_cos=0.99999")
    config = tmp_path / "app.yaml"
    # the app's settings are the ones the run was made with: the re-run differs only in data.reencode
    config.write_text(f"base: {REPO_ROOT / 'configs' / 'test.yaml'}\nruns_dir: {runs}\ncache_dir: {cache}\n")
    server = AppServer(config, run_a, tmp_path / "server.log").start()
    yield server, runs, run_a
    server.stop()


def displayed(driver, element_id) -> bool:
    found = driver.find_elements(By.ID, element_id)
    return bool(found) and found[0].is_displayed()


def test_a_flagged_size_is_rerun_reencoded_and_compared(dash_br, confound_server, shot):
    server, runs, run_a = confound_server
    driver = dash_br.driver
    dash_br.server_url = f"{server.url}/?run={run_a}"
    wait_until(lambda: displayed(driver, ids.CONFOUND_START), what="the re-run button")
    button = driver.find_element(By.ID, ids.CONFOUND_START)
    assert button.text == "Re-run with both classes re-encoded (jpeg:90:48)"
    assert "every fake is 80x80, every real is 64x48" in text_of(driver, ids.CONFOUND_REASON)
    assert not displayed(driver, ids.COMPARE_SHOW) and not displayed(driver, ids.COMPARE_PANEL)
    shot(driver, "50-checks-confound-button")

    button.click()
    wait_until(lambda: "is ready" in text_of(driver, ids.CONFOUND_MESSAGE), timeout=JOB_TIMEOUT,
               what="the re-encoded run")
    new = [p.name for p in runs.iterdir() if (p / "meta.json").exists() and p.name != run_a]
    assert len(new) == 1
    run_b = new[0]
    assert run_b in text_of(driver, ids.CONFOUND_MESSAGE)
    wait_until(lambda: displayed(driver, ids.COMPARE_SHOW), what="the compare button")
    driver.find_element(By.ID, ids.COMPARE_SHOW).click()
    wait_until(lambda: displayed(driver, ids.COMPARE_PANEL) and run_b in text_of(driver, ids.COMPARE_CONTENT),
               what="the compare view")
    content = text_of(driver, ids.COMPARE_CONTENT)
    assert run_a in content and "jpeg:90:48" in content and "held-out AUC" in content
    header = [th.text for th in driver.find_elements(By.CSS_SELECTOR, ".fx-compare-table thead th")]
    assert header == ["", run_a, run_b]
    cells = driver.find_elements(By.CSS_SELECTOR, ".fx-compare-cells tbody tr")
    assert cells  # run A's cells, each with its share predicted fake in both runs
    driver.execute_script("document.getElementById(arguments[0]).scrollIntoView()", ids.COMPARE_PANEL)
    shot(driver, "51-compare-runs")
