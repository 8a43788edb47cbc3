"""The image viewer in a real (headless) browser, over the tiny run of ``conftest.tiny_run``:
a click on a thumbnail opens it, Next steps through the cell, Esc closes, the keyboard reaches
the grid and Enter opens an image, and the relevance map is computed and laid over the square the
model saw. Screenshots at 1600 and 1024 px wide go to test-artifacts/."""
from __future__ import annotations

import io
import json
import urllib.request

from PIL import Image
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

from app.figures.grid import GRID_TRACE_NAME
from app.state import ids
from pipeline.store.run_store import RunStore
from tests.e2e.test_app_browser import (JOB_TIMEOUT, click_point, largest_cell, open_app, run_dir,
                                        text_of, wait_for_grid, wait_until)

SLOTS_JS = ("var gd = document.getElementById(arguments[0]).querySelector('.js-plotly-plot');"
            "var t = gd._fullData.filter(function (d) { return d.name === %s; })[0];"
            % json.dumps(GRID_TRACE_NAME) +
            "return [Array.from(t.x), Array.from(t.y), Array.from(t.customdata)];")
PICTURES_JS = ("var gd = document.getElementById(arguments[0]).querySelector('.js-plotly-plot');"
               "return gd && gd.layout.images ? gd.layout.images : [];")

FITS_JS = ("var el = document.getElementById(arguments[0]), gd = el.querySelector('.js-plotly-plot');"
           "return Math.abs(gd._fullLayout.width - el.clientWidth) < 2;")


def viewer_open(driver) -> bool:
    return bool(driver.find_elements(By.CSS_SELECTOR, ".fx-viewer")) and \
        driver.find_element(By.ID, ids.VIEWER_TITLE).is_displayed()


def facts(driver) -> dict:
    rows = driver.find_elements(By.CSS_SELECTOR, f"#{ids.VIEWER_FACTS} tr")
    return {r.find_element(By.TAG_NAME, "th").text: r.find_element(By.TAG_NAME, "td").text for r in rows}


def test_viewer_opens_on_a_thumbnail_steps_through_the_cell_and_closes(dash_br, app_server, shot):
    cell = largest_cell(app_server)
    open_app(dash_br, app_server, f"&cell={cell['id']}")
    driver = dash_br.driver
    wait_for_grid(driver, cell["n"])
    xs, ys, order = driver.execute_script(SLOTS_JS, ids.IMAGES_GRAPH)
    records = RunStore(run_dir(app_server)).read_records()
    name = [r["path"].split("/")[-1] for r in records]

    # a click opens the thumbnail's image, with its label, prediction and file
    click_point(driver, ids.IMAGES_GRAPH, xs[0], ys[0])
    wait_until(lambda: viewer_open(driver) and text_of(driver, ids.VIEWER_TITLE) == name[order[0]],
               what="the viewer on the clicked image")
    first = records[order[0]]
    shown = wait_until(lambda: (lambda f: f if f.get("file") == first["path"] else None)(facts(driver)),
                       what="the image's facts")
    assert shown["label"] == ("fake" if first["label"] else "real")
    assert shown["prediction"].startswith("fake" if first["pred"] else "real")
    assert ("✔ right" if first["correct"] else "✘ wrong") in shown["prediction"]
    picture = wait_until(lambda: driver.execute_script(PICTURES_JS, ids.VIEWER_GRAPH), what="the picture")[0]
    with urllib.request.urlopen(app_server.url + picture["source"]) as r:
        assert Image.open(io.BytesIO(r.read())).size == (first["width"], first["height"])

    # Next follows the grid's order; Esc closes and gives the focus back to the grid
    driver.find_element(By.ID, ids.VIEWER_NEXT).click()
    wait_until(lambda: text_of(driver, ids.VIEWER_TITLE) == name[order[1]], what="the next image")
    assert text_of(driver, ids.VIEWER_POSITION) == f"image 2 of {cell['n']} in cell {cell['id']}"
    ActionChains(driver).send_keys(Keys.ESCAPE).perform()
    wait_until(lambda: not driver.find_elements(By.CSS_SELECTOR, ".fx-viewer"), what="the viewer closed")

    # the keyboard: the page's first Tab stop is a skip link that puts the focus on the grid
    first = driver.execute_script("return document.querySelector('a[href], button, input, select, textarea, "
                                  "[tabindex]:not([tabindex=\"-1\"])');")
    assert first.get_attribute("class") == "fx-skip-link"
    driver.execute_script("arguments[0].focus();", first)
    assert first.is_displayed()  # off-screen until focused
    ActionChains(driver).send_keys(Keys.ENTER).perform()
    wait_until(lambda: driver.switch_to.active_element.get_attribute("id") == ids.IMAGES_GRAPH,
               what="the grid focused from the skip link")

    # the grid is in the Tab order; arrows move the cursor, Enter opens
    grid = driver.find_element(By.ID, ids.IMAGES_GRAPH)
    assert grid.get_attribute("tabindex") == "0" and grid.get_attribute("role") == "application"
    driver.execute_script("arguments[0].blur(); arguments[0].focus();", grid)
    ActionChains(driver).send_keys(Keys.ARROW_RIGHT).perform()
    wait_until(lambda: name[order[1]] in driver.find_element(By.CSS_SELECTOR, ".fx-sr-only")
               .get_attribute("textContent"), what="the cursor read out")
    assert driver.find_element(By.CSS_SELECTOR, ".fx-grid-cursor").is_displayed()
    ActionChains(driver).send_keys(Keys.ENTER).perform()
    wait_until(lambda: viewer_open(driver) and text_of(driver, ids.VIEWER_TITLE) == name[order[1]],
               what="the viewer opened with Enter")

    # the map: computed for this image, laid over the centre square the encoder saw
    driver.find_element(By.CSS_SELECTOR, f"#{ids.VIEWER_OVERLAY} input").click()
    pictures = wait_until(lambda: (lambda p: p if len(p) == 2 else None)(
        driver.execute_script(PICTURES_JS, ids.VIEWER_GRAPH)), timeout=JOB_TIMEOUT, what="the map")
    second = records[order[1]]
    side = min(second["width"], second["height"])
    assert (pictures[1]["x"], pictures[1]["sizex"]) == ((second["width"] - side) / 2, side)
    with urllib.request.urlopen(app_server.url + pictures[1]["source"]) as r:
        assert Image.open(io.BytesIO(r.read())).mode == "RGBA"
    for width, height in ((1600, 1000), (1024, 768)):
        driver.set_window_size(width, height)
        wait_until(lambda: driver.execute_script(FITS_JS, ids.VIEWER_GRAPH), what="the picture resized")
        shot(driver, f"07-viewer-{width}")
