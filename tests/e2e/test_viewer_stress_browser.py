"""The image viewer held open as an analyst uses it, with a same-source picture side by side (the
pan/zoom link of ``assets/viewer.js``): 20 presses of Next, wheel zooms, a pan and window resizes,
at 1024 and at 1600 px. The tab must stay responsive, the relayouts bounded and the link settled
(no relayout while nobody touches anything), and the linked picture must show the same spot.

The link once answered each relayout with a relayout (each graph widens its axes to its own box):
4,362 relayouts in 40 s and a frozen tab (issue 23). The runs of the other browser tests have no
same-source images, so no side-by-side picture, which is why none of them noticed.
"""
from __future__ import annotations

import shutil
import time

import pytest
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.remote_connection import RemoteConnection

from app.state import ids
from pipeline.config import REPO_ROOT
from tests.e2e.conftest import AppServer
from tests.e2e.test_app_browser import click_point, text_of, wait_for_grid, wait_until
from tests.e2e.test_viewer_browser import SLOTS_JS, viewer_open
from tests.fixtures_runs import make_fake_run

NEXT_PRESSES = 20
MAX_RELAYOUTS_PER_ACTION = 6  # a pan: its own, the link's on the other picture, their redraws
QUIET_S = 2.0  # a settled viewer does nothing while nobody touches it

# Counts every relayout of the two pictures (plotly's own event, whoever caused it) and every
# call of Plotly.relayout / Plotly.react, installed once per graph and once per page.
COUNT_JS = """
var c = window._fxCount || (window._fxCount = {events: 0, relayout: 0, react: 0});
if (!window._fxWrapped && window.Plotly) {
  window._fxWrapped = true;
  ['relayout', 'react'].forEach(function (name) {
    var f = window.Plotly[name];
    window.Plotly[name] = function () { c[name]++; return f.apply(this, arguments); };
  });
}
arguments[0].forEach(function (id) {
  var el = document.getElementById(id), gd = el && el.querySelector('.js-plotly-plot');
  if (gd && gd.on && !gd._fxCounted) {
    gd._fxCounted = true;
    gd.on('plotly_relayout', function () { c.events++; });
  }
});
return [c.events, c.relayout, c.react];
"""

# How long the page's main thread takes to run a task queued now (a frozen tab never answers).
LATENCY_JS = """
var done = arguments[arguments.length - 1], t = performance.now();
setTimeout(function () { done(performance.now() - t); }, 0);
"""

# The view box of a picture as fractions of it: [x centre, y centre, width] (y downwards).
BOX_JS = """
var gd = document.getElementById(arguments[0]).querySelector('.js-plotly-plot');
var fl = gd._fullLayout, w = fl.meta.width, h = fl.meta.height, x = fl.xaxis.range, y = fl.yaxis.range;
return [(x[0] + x[1]) / 2 / w, -(y[0] + y[1]) / 2 / h, Math.abs(x[1] - x[0]) / w];
"""


@pytest.fixture
def bounded_commands():
    """A frozen tab never answers a browser command: make each give up after 15 s (selenium retries it 3 times), so the test
    fails with the freeze instead of waiting for ever (measured: the frozen tab held a command for
    over 10 minutes)."""
    RemoteConnection.set_timeout(15)
    yield
    RemoteConnection.reset_timeout()


@pytest.fixture
def paired_server(tmp_path):
    """A generated run whose images come in same-source pairs (a real 'crop' and its fake), of a
    shape other than the graphs' boxes, served by ``python -m app``."""
    run = make_fake_run(tmp_path, n_images=48, n_cells=2, image_size=(160, 120), paired_sources=True)
    config = tmp_path / "app.yaml"
    config.write_text(f"base: {REPO_ROOT / 'configs' / 'test.yaml'}\n"
                      f"runs_dir: {run.parent}\ncache_dir: {tmp_path / 'cache'}\n"
                      f"data:\n  root: {tmp_path / 'data'}\n")
    server = AppServer(config, run.name, tmp_path / "server.log").start()
    yield server
    server.stop()
    shutil.rmtree(tmp_path / "cache", ignore_errors=True)


def counts(driver) -> list[int]:
    return driver.execute_script(COUNT_JS, [ids.VIEWER_GRAPH, ids.VIEWER_PAIR_GRAPH])


def assert_responsive_and_settled(driver, what: str) -> None:
    """The tab answers within a second, and nothing relayouts during QUIET_S of no input."""
    driver.set_script_timeout(10)
    latency = driver.execute_async_script(LATENCY_JS)
    assert latency < 1000, f"the tab took {latency:.0f} ms to answer after {what}"
    time.sleep(0.8)  # let the last action's redraws end
    before = counts(driver)
    time.sleep(QUIET_S)
    after = counts(driver)
    assert after == before, (f"the viewer keeps relayouting with nobody touching it after {what}: "
                             f"{before} -> {after} (events, relayout calls, react calls)")


def pair_shown(driver) -> bool:
    graph = driver.find_elements(By.ID, ids.VIEWER_PAIR_GRAPH)
    return bool(graph) and graph[0].is_displayed() and bool(
        driver.execute_script("var gd = document.getElementById(arguments[0]).querySelector('.js-plotly-plot');"
                              "return gd && gd.layout.images && gd.layout.images.length > 0;",
                              ids.VIEWER_PAIR_GRAPH))


def wheel(driver, graph_id: str, notches: int) -> None:
    """Wheel over the centre of a graph (negative = zoom in), as a mouse does."""
    target = driver.find_element(By.CSS_SELECTOR, f"#{graph_id} .nsewdrag")
    for _ in range(abs(notches)):
        driver.execute_script(
            "var el = arguments[0], r = el.getBoundingClientRect();"
            "el.dispatchEvent(new WheelEvent('wheel', {deltaY: arguments[1], bubbles: true, cancelable: true,"
            "  clientX: r.left + r.width / 2, clientY: r.top + r.height / 2}));",
            target, 100 if notches > 0 else -100)
        time.sleep(0.15)


def drag(driver, graph_id: str, dx: int, dy: int) -> None:
    target = driver.find_element(By.CSS_SELECTOR, f"#{graph_id} .nsewdrag")
    ActionChains(driver).move_to_element(target).click_and_hold().move_by_offset(dx // 2, dy // 2) \
        .move_by_offset(dx - dx // 2, dy - dy // 2).release().perform()


def assert_linked(driver) -> None:
    """The side-by-side picture shows the spot the main one shows (centres agree; each graph
    widens its own ranges to its box, so only the centres are shared)."""
    def agree():
        a = driver.execute_script(BOX_JS, ids.VIEWER_GRAPH)
        b = driver.execute_script(BOX_JS, ids.VIEWER_PAIR_GRAPH)
        return (a, b) if abs(a[0] - b[0]) < 0.01 and abs(a[1] - b[1]) < 0.01 else None
    wait_until(agree, timeout=5, what="the side-by-side picture on the main picture's spot")


@pytest.mark.parametrize("width", [1024, 1600])
def test_viewer_with_a_pair_stays_responsive_through_next_zoom_pan_and_resize(bounded_commands, dash_br,
                                                                              paired_server, width, shot):
    driver = dash_br.driver
    driver.set_window_size(width, 900)
    dash_br.server_url = paired_server.url + f"/?run={paired_server.run_id}&cell=0"
    wait_until(lambda: "encoder: tiny" in text_of(driver, ids.STATUS), what="status line")
    wait_for_grid(driver, 24)
    xs, ys, _ = driver.execute_script(SLOTS_JS, ids.IMAGES_GRAPH)
    click_point(driver, ids.IMAGES_GRAPH, xs[0], ys[0])
    wait_until(lambda: viewer_open(driver) and pair_shown(driver), what="the viewer with its pair")
    counts(driver)
    actions = 0
    assert_responsive_and_settled(driver, "opening")

    for press in range(NEXT_PRESSES):
        title = text_of(driver, ids.VIEWER_TITLE)
        driver.find_element(By.ID, ids.VIEWER_NEXT).click()
        wait_until(lambda: text_of(driver, ids.VIEWER_TITLE) != title, what=f"Next #{press + 1}")
        actions += 1
    wait_until(lambda: pair_shown(driver), what="the pair after 20 Next")
    assert_responsive_and_settled(driver, f"{NEXT_PRESSES} Next")

    wheel(driver, ids.VIEWER_GRAPH, -4)
    actions += 4
    assert_linked(driver)
    drag(driver, ids.VIEWER_GRAPH, 60, 30)
    actions += 1
    assert_linked(driver)
    wheel(driver, ids.VIEWER_PAIR_GRAPH, -2)  # the link goes both ways
    actions += 2
    assert_linked(driver)
    assert_responsive_and_settled(driver, "zooms and a pan")

    for size in ((width // 2 + 300, 700), (width, 900), (1300, 800), (width, 900)):
        driver.set_window_size(*size)
        time.sleep(0.4)
        actions += 1
    assert_responsive_and_settled(driver, "window resizes")
    assert_linked(driver)

    events, relayout_calls, _ = counts(driver)
    assert events <= MAX_RELAYOUTS_PER_ACTION * actions, (events, actions)
    assert relayout_calls <= MAX_RELAYOUTS_PER_ACTION * actions, (relayout_calls, actions)
    if width == 1600:
        shot(driver, "07-viewer-pair-zoomed")
