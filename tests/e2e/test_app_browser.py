"""The app in a real (headless) browser, over a run made by the real pipeline (tiny encoder).

Each test starts from a fresh copy of the run and an empty app cache, so thumbnails, relevance maps
and concepts are computed by the background jobs during the test.
"""
from __future__ import annotations

import csv
import http.client
import io
import json
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

from app.state import ids
from app.jobs.panel import JobPanel
from app.figures.glyph_map import HOVER_TRACE_NAME
from app.figures.concept_palette import concept_colour, concept_colour_name
from app.figures.grid import GRID_TRACE_NAME
from pipeline.config import REPO_ROOT
from pipeline.explain.results import concepts_plan, relevance_name
from pipeline.store.locks import run_locks
from pipeline.store.run_store import RunStore
from tests.fixtures_runs import make_dataset

JOB_TIMEOUT = 180
BIG_PER_FOLDER = 500
HOVER = HOVER_TRACE_NAME  # the cells' hover/click layer  # background jobs import torch and run the tiny model on 2 shared cores


def wait_until(fn, timeout=30.0, interval=0.2, what="condition"):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        try:
            last = fn()
            if last:
                return last
        except Exception as e:  # element not there yet, stale element...
            last = e
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


def type_into(element, text: str) -> None:
    """Replace an input's value the way a user does (select all, type)."""
    element.send_keys(Keys.CONTROL, "a")
    element.send_keys(Keys.DELETE)
    element.send_keys(text)


def text_of(driver, element_id) -> str:
    return driver.find_element(By.ID, element_id).text


def page_box(driver, element_id) -> list[int]:
    """An element's box (x, y, width, height) on the page, in whole pixels (scrolling aside)."""
    return [round(v) for v in driver.execute_script(
        "const r = document.getElementById(arguments[0]).getBoundingClientRect();"
        "return [r.x + window.scrollX, r.y + window.scrollY, r.width, r.height];", element_id)]


def to_viewport(driver, graph_id, x, y):
    """Viewport pixel of data point (x, y) of a dcc.Graph."""
    return driver.execute_script(
        "var gd = document.getElementById(arguments[0]).querySelector('.js-plotly-plot');"
        "var fl = gd._fullLayout, r = gd.getBoundingClientRect();"
        "return [r.left + fl.xaxis._offset + fl.xaxis.d2p(arguments[1]),"
        "        r.top + fl.yaxis._offset + fl.yaxis.d2p(arguments[2])];", graph_id, x, y)


def click_point(driver, graph_id, x, y):
    driver.execute_script("document.getElementById(arguments[0]).scrollIntoView({block: 'center'});",
                          graph_id)
    vx, vy = to_viewport(driver, graph_id, x, y)
    actions = ActionChains(driver)
    actions.w3c_actions.pointer_action.move_to_location(int(vx), int(vy))
    actions.w3c_actions.pointer_action.pause(0.2)
    actions.w3c_actions.pointer_action.click()
    actions.perform()


def drag_box(driver, graph_id, x0, y0, x1, y1):
    driver.execute_script("document.getElementById(arguments[0]).scrollIntoView({block: 'center'});",
                          graph_id)
    (ax, ay), (bx, by) = to_viewport(driver, graph_id, x0, y0), to_viewport(driver, graph_id, x1, y1)
    actions = ActionChains(driver)
    pointer = actions.w3c_actions.pointer_action
    pointer.move_to_location(int(ax), int(ay))
    pointer.pointer_down()
    for t in np.linspace(0.1, 1.0, 8):
        pointer.move_to_location(int(ax + t * (bx - ax)), int(ay + t * (by - ay)))
    pointer.pointer_up()
    actions.perform()


def trace_info(driver, graph_id, trace: str = GRID_TRACE_NAME) -> dict | None:
    """Facts of the trace named ``trace`` of the figure on screen in ``graph_id`` (None before it)."""
    return driver.execute_script(
        "var el = document.getElementById(arguments[0]);"
        "var gd = el && el.querySelector('.js-plotly-plot');"
        "var name = arguments[1];"
        "var t = gd && gd._fullData && gd._fullData.find(function (d) { return d.name === name; });"
        "if (!t) return null;"
        "return {n: t.x ? t.x.length : 0, custom: t.customdata ? Array.from(t.customdata) : [],"
        "        text: t.text ? Array.from(t.text) : [],"
        "        image: (gd.layout.images && gd.layout.images[0]) || null};", graph_id, trace)


def images_loaded(driver, css) -> list[bool]:
    return driver.execute_script(
        "return Array.from(document.querySelectorAll(arguments[0]))"
        ".map(function (i) { return i.complete && i.naturalWidth > 0; });", css)


def run_dir(app_server) -> Path:
    return Path(app_server.config.parent / "runs" / app_server.run_id)


def cell_members(app_server, cell: dict) -> list[int]:
    """The run's image indices in ``cell``, ascending."""
    return [i for i, r in enumerate(RunStore(run_dir(app_server)).read_records()) if r["cell"] == cell["id"]]


def cells_of(app_server) -> list[dict]:
    return json.loads((run_dir(app_server) / "cells.json").read_text())["cells"]


def largest_cell(app_server) -> dict:
    return max(cells_of(app_server), key=lambda c: c["n"])


def open_app(dash_br, app_server, query=""):
    dash_br.server_url = app_server.url + (f"/?run={app_server.run_id}{query}" if query else "/")
    wait_until(lambda: "encoder: tiny" in text_of(dash_br.driver, ids.STATUS), what="status line")


def read_matrix(driver, n_rows):
    """(column order, header order, row orders) of the attention matrix once all ``n_rows`` rows
    are drawn and the deletion check's marks are in (it runs after the maps; retried on redraw)."""
    matrix = driver.find_element(By.CSS_SELECTOR, ".fx-attn-matrix")
    rows = [r.get_attribute("data-index") for r in matrix.find_elements(By.CSS_SELECTOR, ".fx-attn-big[data-index]")]
    heads = matrix.find_elements(By.CSS_SELECTOR, ".fx-attn-head")
    if len(rows) != n_rows or not all("✓" in h.text or "✗" in h.text for h in heads):
        return None
    dims = {i: [d.get_attribute("data-dim") for d in
                matrix.find_elements(By.CSS_SELECTOR, f".fx-attn-dim[data-index='{i}']")] for i in rows}
    return matrix.get_attribute("data-order").split(","), [h.get_attribute("data-dim") for h in heads], dims


MATRIX_NOW_JS = """
var m = document.querySelector('.fx-attn-matrix');
if (!m) return null;
var heads = Array.from(m.querySelectorAll('.fx-attn-head')).map(function (h) { return h.dataset.dim; });
var drawn = new Set(Array.from(m.querySelectorAll('.fx-attn-dim[data-index]')).map(function (d) { return d.dataset.index; }));
return [heads, drawn.size];
"""


# Every state of the matrix the page ever renders, recorded by the page itself from its first
# script on: polling from the test misses the header-only state when the first map is done before
# the first poll (the tiny encoder's maps take milliseconds).
MATRIX_RECORDER_JS = """
window.__fxMatrixSeen = [];
new MutationObserver(function () {
  var m = document.querySelector('.fx-attn-matrix');
  if (!m) return;
  var heads = Array.from(m.querySelectorAll('.fx-attn-head')).map(function (h) { return h.dataset.dim; });
  if (!heads.length) return;
  var drawn = new Set(Array.from(m.querySelectorAll('.fx-attn-dim[data-index]')).map(function (d) { return d.dataset.index; })).size;
  var seen = window.__fxMatrixSeen, last = seen[seen.length - 1];
  if (!last || last[0] !== drawn || last[1].join() !== heads.join()) seen.push([drawn, heads]);
}).observe(document, {childList: true, subtree: true, attributes: true});
"""


def record_matrix_states(driver) -> str:
    """Install MATRIX_RECORDER_JS for the next page load; returns its id for ``stop_recording``."""
    return driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": MATRIX_RECORDER_JS})["identifier"]


def record_matrix_states_here(driver) -> None:
    """Install MATRIX_RECORDER_JS in the page already open (a selection made in it)."""
    driver.execute_script(MATRIX_RECORDER_JS)


def stop_recording(driver, identifier: str) -> None:
    driver.execute_cdp_cmd("Page.removeScriptToEvaluateOnNewDocument", {"identifier": identifier})


class HeldMaps:
    """The relevance-map locks of some images, held by the test as another analyst's job computing
    them would hold them (``pipeline.store.locks``): the app's job waits for each until it is
    released, then computes it. Released one at a time, they let a test see every row of the
    matrix arrive, however fast the machine computes a map (the tiny encoder: ~0.1 s, less than
    the bar's 300 ms poll, so rows would otherwise come in one update)."""

    def __init__(self, app_server, indices):
        records = RunStore(run_dir(app_server)).read_records()
        locks = run_locks(run_dir(app_server))
        self.held = {int(i): locks.try_hold(relevance_name(records[int(i)]["id"])) for i in indices}
        assert all(self.held.values()), "a map's lock was already held"

    def release(self, index: int) -> None:
        self.held.pop(int(index)).release()

    def release_all(self) -> None:
        for index in list(self.held):
            self.release(index)


def rows_arriving_one_at_a_time(driver, held: HeldMaps, chosen: list[int]) -> None:
    """Release ``chosen``'s maps in the job's order, each once the matrix shows the rows before it
    and no more: the headers before any map, then one more row per map, never all at once."""
    for k, index in enumerate([None, *chosen]):
        if index is not None:
            held.release(index)
        wait_until(lambda: (lambda now: now is not None and len(now[0]) == 16 and now[1] == k)(
            driver.execute_script(MATRIX_NOW_JS)), timeout=JOB_TIMEOUT,
            what=f"the matrix with {k} of {len(chosen)} rows drawn while the others compute "
                 f"(now: {driver.execute_script(MATRIX_NOW_JS)})")
        time.sleep(0.7)  # two polls of the bar: no row may come before its map is released
        assert driver.execute_script(MATRIX_NOW_JS)[1] == k


def selection_in_url(driver) -> list[int]:
    """The selected image indices of the page's URL (``sel=3,12-14``), in its order."""
    selected = driver.current_url.split("sel=")[1].split("&")[0]
    return [i for part in selected.split(",") for a, _, b in [part.partition("-")]
            for i in range(int(a), int(b or a) + 1)]


def header_orders_while_drawing(driver, n_rows):
    """[(rows drawn, header order)] of the attention matrix until all ``n_rows`` rows are drawn:
    every state the page rendered when MATRIX_RECORDER_JS is installed, else as polled."""
    seen, deadline = [], time.time() + JOB_TIMEOUT
    while time.time() < deadline:
        now = driver.execute_script(MATRIX_NOW_JS)
        if now is not None and now[0]:
            heads, drawn = now
            seen.append((drawn, heads))
            if drawn == n_rows:
                recorded = driver.execute_script("return window.__fxMatrixSeen || null;")
                return [(d, h) for d, h in recorded] if recorded else seen
        time.sleep(0.05)
    message = driver.find_element(By.ID, JobPanel.ids.message(ids.ATTN_JOB)).text
    raise AssertionError(f"timed out waiting for {n_rows} rows of the attention matrix (seen: {seen[-1:]}, "
                         f"now: {driver.execute_script(MATRIX_NOW_JS)}, message: {message!r}, "
                         f"console: {driver.get_log('browser')[-5:]})")


def wait_for_grid(driver, n):
    return wait_until(lambda: (lambda t: t if t and t["n"] == n and t["image"] else None)(
        trace_info(driver, ids.IMAGES_GRAPH)), timeout=JOB_TIMEOUT, what=f"a grid of {n} images")


# -------------------------------------------------------------------------------------------------
def test_app_loads_a_generated_run(dash_br, app_server, shot):
    open_app(dash_br, app_server)
    driver = dash_br.driver
    assert f"run={app_server.run_id}" in driver.current_url
    cells = cells_of(app_server)
    hover = wait_until(lambda: trace_info(driver, ids.REPR_GRAPH, HOVER), what="hover layer")
    assert hover["n"] == len(cells)
    assert "48 images" in text_of(driver, ids.STATUS)
    assert "real, predicted fake" in text_of(driver, ids.REPR_LEGEND)
    assert "held-out accuracy" in text_of(driver, ids.METRICS)
    shot(driver, "01-representation")


def test_clicking_a_cell_fills_the_grid_with_framed_thumbnails(dash_br, app_server, shot):
    open_app(dash_br, app_server)
    driver = dash_br.driver
    cell = largest_cell(app_server)
    wait_until(lambda: trace_info(driver, ids.REPR_GRAPH, HOVER), what="representation figure")
    click_point(driver, ids.REPR_GRAPH, cell["x"], cell["y"])
    grid = wait_for_grid(driver, cell["n"])
    assert f"cell={cell['id']}" in driver.current_url
    assert text_of(driver, ids.IMAGES_TITLE).startswith(f"Cell {cell['id']} · {cell['n']} images")
    records = RunStore(run_dir(app_server)).read_records()
    assert sorted(grid["custom"]) == cell_members(app_server, cell)
    wrong = {i for i in grid["custom"] if not records[i]["correct"]}
    assert sum("✘" in t for t in grid["text"]) == len(wrong)

    # every thumbnail of the sprite is framed: red where the prediction is wrong, green elsewhere
    image = grid["image"]
    with urllib.request.urlopen(app_server.url + image["source"]) as r:
        sprite = np.asarray(Image.open(io.BytesIO(r.read())).convert("RGB"), dtype=int)
    cols, rows = int(image["sizex"]), int(image["sizey"])
    tile = sprite.shape[1] // cols
    assert sprite.shape[0] == rows * tile
    red = green = 0
    xs = driver.execute_script("var gd=document.getElementById(arguments[0]).querySelector('.js-plotly-plot');"
                               "var name = arguments[1];"
                               "var t = gd._fullData.find(function (d) { return d.name === name; });"
                               "return [Array.from(t.x), Array.from(t.y)];", ids.IMAGES_GRAPH, GRID_TRACE_NAME)
    for x, y, index in zip(xs[0], xs[1], grid["custom"]):
        c, r_ = int(x), int(-y)
        edge = sprite[r_ * tile + 1, c * tile + tile // 2]
        is_red = edge[0] > 150 and edge[1] < 90
        is_green = edge[1] > 120 and edge[0] < 90
        assert is_red or is_green, f"thumbnail {index} has no frame ({edge})"
        assert is_red == (index in wrong)
        red += is_red
        green += is_green
    assert red + green == cell["n"] and red == len(wrong)

    # hovering a thumbnail shows it larger, fetched from the thumbnail route by index
    vx, vy = to_viewport(driver, ids.IMAGES_GRAPH, xs[0][0], xs[1][0])
    actions = ActionChains(driver)
    actions.w3c_actions.pointer_action.move_to_location(int(vx) - 3, int(vy) - 3)
    actions.w3c_actions.pointer_action.move_to_location(int(vx), int(vy))
    actions.perform()
    src = wait_until(lambda: driver.find_element(By.ID, ids.IMAGES_TOOLTIP_IMG).get_attribute("src"),
                     what="the hover tooltip")
    assert src.endswith(f"/files/thumb/{app_server.run_id}/{grid['custom'][0]}.jpg")
    wait_until(lambda: images_loaded(driver, f"#{ids.IMAGES_TOOLTIP_IMG}") == [True],
               what="the thumbnail")
    assert records[grid["custom"][0]]["path"].split("/")[-1] in \
        text_of(driver, ids.IMAGES_TOOLTIP_TEXT)
    shot(driver, "02-image-grid")


def test_box_selection_shows_an_attention_matrix_in_one_column_order(dash_br, app_server, shot):
    cell = largest_cell(app_server)
    open_app(dash_br, app_server, f"&cell={cell['id']}")
    driver = dash_br.driver
    grid = wait_for_grid(driver, cell["n"])
    cols = int(grid["image"]["sizex"])
    record_matrix_states_here(driver)
    held = HeldMaps(app_server, cell_members(app_server, cell))
    try:
        # a box over the first two columns of the first two rows
        drag_box(driver, ids.IMAGES_GRAPH, 0.05, -0.05, min(2, cols) - 0.05, -1.95)
        wait_until(lambda: "sel=" in driver.current_url, what="the selection in the URL")
        chosen = selection_in_url(driver)
        n_selected = len(chosen)
        assert 1 <= n_selected <= 4
        # the columns' order is there before the first map and never moves while the rows arrive
        rows_arriving_one_at_a_time(driver, held, chosen)
    finally:
        held.release_all()
    seen = header_orders_while_drawing(driver, n_selected)
    order, heads, dims = wait_until(lambda: read_matrix(driver, n_selected), timeout=JOB_TIMEOUT,
                                    what=f"{n_selected} rows of the attention matrix, checked")
    assert len(order) == 16 and heads == order
    # every state the page rendered (recorded by the page itself): each row count once, in order
    drawn_counts = [n for n, _ in seen]
    assert sorted(set(drawn_counts)) == list(range(n_selected + 1)) == drawn_counts, drawn_counts
    assert all(h == order for _, h in seen), [(n, h) for n, h in seen if h != order][:1]
    assert all(row == order for row in dims.values())  # every row in one order: a column reads down
    wait_until(lambda: all(images_loaded(driver, ".fx-attn-matrix img")), what="maps loaded")
    assert len(images_loaded(driver, ".fx-attn-matrix img")) == n_selected * 18
    # the panel was brought into view when the images were selected
    assert driver.execute_script("var r = document.getElementById(arguments[0]).getBoundingClientRect();"
                                 "return r.top < window.innerHeight && r.bottom > 0;", ids.ATTN_PANEL)
    shot(driver, "03-attention")
    # cached now: a reload shows the maps without a job
    t0 = time.time()
    dash_br.server_url = driver.current_url
    wait_until(lambda: len(driver.find_elements(By.CSS_SELECTOR, ".fx-attn-big[data-index]")) == n_selected,
               timeout=20, what="cached maps")
    assert time.time() - t0 < 20


def test_attention_columns_are_ordered_before_the_first_map_and_never_move(dash_br, app_server, shot):
    # a selection from a link (the same job as a box selection, without a drag)
    cell = largest_cell(app_server)
    records = RunStore(run_dir(app_server)).read_records()
    chosen = cell_members(app_server, cell)[:5]
    driver = dash_br.driver
    recorder = record_matrix_states(driver)
    held = HeldMaps(app_server, chosen)
    try:
        try:
            open_app(dash_br, app_server, f"&cell={cell['id']}&sel={','.join(map(str, chosen))}")
        finally:
            stop_recording(driver, recorder)
        wait_until(lambda: (lambda now: now is not None and now[1] == 0)(driver.execute_script(MATRIX_NOW_JS)),
                   timeout=JOB_TIMEOUT, what="the matrix's headers before any map")
        driver.execute_script("document.querySelector('.fx-attn-matrix').scrollIntoView();")
        (REPO_ROOT / "test-artifacts").mkdir(exist_ok=True)
        driver.save_screenshot(str(REPO_ROOT / "test-artifacts" / "03a-attention-before-the-first-map.png"))
        rows_arriving_one_at_a_time(driver, held, chosen)
    finally:
        held.release_all()
    seen = header_orders_while_drawing(driver, len(chosen))
    order, heads, dims = wait_until(lambda: read_matrix(driver, len(chosen)), timeout=JOB_TIMEOUT,
                                    what="the attention matrix, checked")
    assert sorted(int(i) for i in dims) == chosen and all(row == order for row in dims.values())
    drawn_counts = [n for n, _ in seen]
    assert sorted(set(drawn_counts)) == list(range(len(chosen) + 1)) == drawn_counts, drawn_counts
    assert all(h == order for _, h in seen), [(n, h) for n, h in seen if h != order][:1]
    # one p(fake) per image, the run's (as the grid): the maps' logit only where it differs
    captions = driver.find_elements(By.CSS_SELECTOR, ".fx-attn-big .fx-caption")
    for i in chosen:
        assert f"p(fake) {records[i]['prob_fake']:.3f}" in " ".join(c.text for c in captions)
    shot(driver, "03b-attention-all-rows")


def test_concept_toggle_shows_three_concepts(dash_br, app_server, shot):
    cell = largest_cell(app_server)
    open_app(dash_br, app_server, f"&cell={cell['id']}")
    driver = dash_br.driver
    wait_for_grid(driver, cell["n"])
    toggle = driver.find_element(By.ID, ids.VIEW_TOGGLE)
    toggle.find_elements(By.TAG_NAME, "label")[1].click()
    wait_until(lambda: "view=concepts" in driver.current_url, what="view in the URL")
    concepts = wait_until(lambda: (lambda c: c if len(c) == 3 else None)(
        driver.find_elements(By.CSS_SELECTOR, ".fx-concept")), timeout=JOB_TIMEOUT,
        what="3 concepts")
    wait_until(lambda: images_loaded(driver, ".fx-patches img") and
               all(images_loaded(driver, ".fx-patches img")), what="concept patches")
    assert not driver.find_element(By.ID, ids.IMAGES_GRAPH).is_displayed()
    # every count names its unit: segments and the images they come from, each by label, as in
    # the concepts file (each segment records its image; the run records each image's label)
    found = concepts_plan(run_dir(app_server), cell["id"]).result.read()["concepts"]
    labels = [r["label"] for r in RunStore(run_dir(app_server)).read_records()]
    total = sum(c["size"] for c in found)

    def n(count, word):
        return f"{count} {word}{'' if count == 1 else 's'}"

    for k, (shown, c) in enumerate(zip(concepts, found)):
        real = sum(labels[i] == 0 for i in c["images"])
        fake = sum(labels[i] == 1 for i in c["images"])
        many = "" if len(c["images"]) == 1 else "s"
        assert (f"Concept {k + 1} · {n(c['size'], 'segment')} from {n(len(c['images']), 'image')} "
                f"({real} real, {fake} fake image{many}) · {c['size'] / total:.0%} of the cell's "
                f"{total} segments") in shown.text
        assert (f"{n(c['segments_real'], 'segment')} from real images ({c['segments_real'] / c['size']:.0%}), "
                f"{c['segments_fake']} from fake images ({c['segments_fake'] / c['size']:.0%})") in shown.text
        # its colour: a swatch in the concept's own colour, never the real blue or fake orange
        swatch = shown.find_element(By.CSS_SELECTOR, ".fx-concept-swatch").value_of_css_property("background-color")
        assert swatch == "rgba({}, {}, {}, 1)".format(*(int(concept_colour(k)[i:i + 2], 16) for i in (1, 3, 5)))
    shot(driver, "04-concepts")
    # "show its images": the grid outlines concept 2's images in concept 2's colour
    concepts[1].find_element(By.CSS_SELECTOR, ".fx-concept-show").click()
    wait_until(lambda: driver.find_element(By.ID, ids.IMAGES_GRAPH).is_displayed(), what="back to the grid")
    outlines = wait_until(lambda: driver.execute_script(
        "var gd = document.getElementById(arguments[0]).querySelector('.js-plotly-plot');"
        "return (gd.layout.shapes || []).filter(function (s) { return s.line && s.line.dash === 'dot'; })"
        ".map(function (s) { return s.line.color; });", ids.IMAGES_GRAPH), what="concept 2's outlines")
    assert outlines == [concept_colour(1)] * len(found[1]["images"])
    assert text_of(driver, ids.IMAGES_HIGHLIGHT) == (
        f"Highlighted (dotted {concept_colour_name(1)}): the {n(len(found[1]['images']), 'image')} of concept 2")
    shot(driver, "04-concept-outlined")


def test_a_note_survives_a_restart_and_is_exported(dash_br, app_server, shot):
    cell = largest_cell(app_server)
    open_app(dash_br, app_server, f"&cell={cell['id']}")
    driver = dash_br.driver
    wait_for_grid(driver, cell["n"])
    driver.find_element(By.ID, ids.NOTES_TEXT).send_keys("bird in yellow grass, fools the model")
    driver.find_element(By.ID, ids.NOTES_TAG).send_keys("grass")
    driver.find_element(By.ID, ids.NOTES_ADD_CELL).click()
    wait_until(lambda: "bird in yellow grass" in text_of(driver, ids.NOTES_LIST), what="the note")

    app_server.restart()
    dash_br.server_url = f"{app_server.url}/?run={app_server.run_id}"
    wait_until(lambda: "bird in yellow grass" in text_of(driver, ids.NOTES_LIST), what="note after restart")
    assert "grass" in text_of(driver, ids.NOTES_LIST)

    with urllib.request.urlopen(f"{app_server.url}/files/notes/{app_server.run_id}.csv") as r:
        rows = list(csv.DictReader(io.StringIO(r.read().decode())))
    records = RunStore(run_dir(app_server)).read_records()
    members = [i for i, rec in enumerate(records) if rec["cell"] == cell["id"]]
    assert {r["text"] for r in rows} == {"bird in yellow grass, fools the model"}
    assert [r["image_path"] for r in rows] == [records[i]["path"] for i in members]

    # the note's "show" button jumps back to its cell
    driver.find_element(By.CSS_SELECTOR, ".fx-note-actions button").click()
    wait_until(lambda: text_of(driver, ids.IMAGES_TITLE).startswith(f"Cell {cell['id']} "),
               what="jump to the note's cell")
    assert f"cell={cell['id']}" in driver.current_url
    shot(driver, "05-notes")


def test_thumbnail_urls_with_paths_are_refused(dash_br, app_server, tmp_path):
    host, port = "127.0.0.1", app_server.port
    ok = urllib.request.urlopen(f"{app_server.url}/files/thumb/{app_server.run_id}/0.jpg")
    assert ok.status == 200 and ok.headers["Content-Type"] == "image/jpeg"
    assert "max-age" in ok.headers["Cache-Control"]
    for path in (f"/files/thumb/{app_server.run_id}/../../../../etc/passwd",
                 f"/files/thumb/{app_server.run_id}/..%2F..%2F..%2Fetc%2Fpasswd",
                 f"/files/thumb/{app_server.run_id}//etc/passwd",
                 f"/files/thumb/{app_server.run_id}/%2Fetc%2Fpasswd",
                 "/files//etc/passwd"):
        conn = http.client.HTTPConnection(host, port, timeout=10)
        conn.request("GET", path)  # sent as is: no client-side normalisation of ../
        response = conn.getresponse()
        body = response.read()
        assert response.status == 404, path
        assert b"root:" not in body and response.getheader("Content-Type") != "image/jpeg"
        conn.close()
    # and through the browser
    dash_br.driver.get(f"{app_server.url}/files/thumb/{app_server.run_id}/..%2F..%2Fetc%2Fpasswd")
    assert "root:" not in dash_br.driver.page_source


def test_back_and_forward_restore_the_open_cell(dash_br, app_server):
    open_app(dash_br, app_server)
    driver = dash_br.driver
    a, b = sorted(cells_of(app_server), key=lambda c: -c["n"])[:2]
    wait_until(lambda: trace_info(driver, ids.REPR_GRAPH, HOVER), what="representation figure")
    for cell in (a, b):
        click_point(driver, ids.REPR_GRAPH, cell["x"], cell["y"])
        wait_until(lambda: text_of(driver, ids.IMAGES_TITLE).startswith(f"Cell {cell['id']} "),
                   timeout=JOB_TIMEOUT, what=f"cell {cell['id']}")
    driver.back()
    wait_until(lambda: text_of(driver, ids.IMAGES_TITLE).startswith(f"Cell {a['id']} "),
               what="back to the first cell")
    assert f"cell={a['id']}" in driver.current_url
    driver.forward()
    wait_until(lambda: text_of(driver, ids.IMAGES_TITLE).startswith(f"Cell {b['id']} "),
               what="forward to the second cell")


def test_new_run_in_the_background_with_a_category_filter(dash_br, app_server, tmp_path, shot):
    # large enough (2,000 bird images) that the run is still computing while the cell is opened
    data = make_dataset(tmp_path / "bigger", seed=1, n_per_folder=BIG_PER_FOLDER)
    open_app(dash_br, app_server)
    driver = dash_br.driver
    driver.find_element(By.ID, ids.NEWRUN_TOGGLE).click()
    type_into(driver.find_element(By.ID, ids.NEWRUN_PATH), str(data))
    driver.find_element(By.ID, ids.NEWRUN_CATEGORIES).send_keys("bird")
    idle_box = page_box(driver, ids.REPR_GRAPH)
    driver.find_element(By.ID, ids.NEWRUN_START).click()
    wait_until(lambda: driver.find_element(By.ID, ids.NEWRUN_CANCEL).is_enabled(), what="running")
    wait_until(lambda: ":" in text_of(driver, ids.NEWRUN_PROGRESS_LABEL)
               or text_of(driver, ids.NEWRUN_MESSAGE), timeout=JOB_TIMEOUT, what="progress")
    assert text_of(driver, ids.NEWRUN_MESSAGE) == ""  # no error
    # the page does not move under the analyst's pointer as the run's progress line comes and goes
    assert page_box(driver, ids.REPR_GRAPH) == idle_box
    # the app stays usable while the run is computed
    cell = largest_cell(app_server)
    wait_until(lambda: trace_info(driver, ids.REPR_GRAPH, HOVER), what="representation figure")
    click_point(driver, ids.REPR_GRAPH, cell["x"], cell["y"])
    wait_for_grid(driver, cell["n"])
    wait_until(lambda: "is ready" in text_of(driver, ids.NEWRUN_MESSAGE), timeout=JOB_TIMEOUT,
               what="the new run")
    assert page_box(driver, ids.REPR_GRAPH) == idle_box
    new_id = text_of(driver, ids.NEWRUN_MESSAGE).split()[1].rstrip(":")
    assert new_id != app_server.run_id
    assert f"run={app_server.run_id}" in driver.current_url  # the analyst stays where they are...
    driver.find_element(By.ID, ids.NEWRUN_OPEN).click()  # ...until they follow the link
    wait_until(lambda: f"run={new_id}" in driver.current_url, what="the new run opened")
    # Leaving the open cell cancels its grid job with an empty request; that job has nothing to
    # report, so the image panel must not show the old job's progress meanwhile.
    stale = []
    for _ in range(15):
        if driver.find_element(By.ID, JobPanel.ids.progress_wrap(ids.IMAGES_JOB)).is_displayed():
            stale.append(text_of(driver, JobPanel.ids.progress_label(ids.IMAGES_JOB)))
        time.sleep(0.2)
    assert not stale, f"stale progress shown after the run switch: {stale}"
    n_bird = 2 * 2 * BIG_PER_FOLDER  # two generators x real/fake
    wait_until(lambda: f"{n_bird:,} images" in text_of(driver, ids.STATUS)
               or f"{n_bird} images" in text_of(driver, ids.STATUS), what="the bird-only run")
    meta = RunStore(run_dir(app_server).parent / new_id).read_meta()
    assert meta["config"]["data"]["categories"] == ["bird"]
    assert not driver.find_element(By.ID, ids.NEWRUN_CANCEL).is_enabled()
    shot(driver, "06-new-run")


def test_a_new_run_can_be_cancelled(dash_br, app_server, tiny_run):
    open_app(dash_br, app_server)
    driver = dash_br.driver
    runs = run_dir(app_server).parent
    before = sorted(p.name for p in runs.iterdir() if (p / "meta.json").exists())
    driver.find_element(By.ID, ids.NEWRUN_TOGGLE).click()
    type_into(driver.find_element(By.ID, ids.NEWRUN_PATH), str(tiny_run[0]))
    driver.find_element(By.ID, ids.NEWRUN_CATEGORIES).send_keys("cat")
    driver.find_element(By.ID, ids.NEWRUN_START).click()
    cancel = driver.find_element(By.ID, ids.NEWRUN_CANCEL)
    wait_until(cancel.is_enabled, what="running")
    cancel.click()
    wait_until(lambda: driver.find_element(By.ID, ids.NEWRUN_START).is_enabled(), what="cancelled")
    time.sleep(3)
    after = sorted(p.name for p in runs.iterdir() if (p / "meta.json").exists())
    assert after == before
    assert "is ready" not in text_of(driver, ids.NEWRUN_MESSAGE)
    assert text_of(driver, ids.NEWRUN_MESSAGE).startswith("Cancelled")  # said, and no stale label
    assert text_of(driver, ids.NEWRUN_PROGRESS_LABEL) == ""
