"""Where each dimension looks, in a real (headless) browser (issue 25): the dimension atlas is built
from its panel as a background job (progress bar, then a row per dimension with its verdict, shares
and examples; an example opens the viewer on that dimension's map), and the attention matrix of
three box-selected images carries each column's subject / background share with the line that
counts them, so an analyst reads which dimensions look at the background without opening a map;
the viewer outlines an image's subject and the concept view counts for the open cell.
Same app and run as tests/e2e/test_app_browser.py (a real tiny-encoder run; the subject masks come
from the stand-in's DINOv2 weights). Screenshots at 1600 and 1024 px wide go to test-artifacts/."""
from __future__ import annotations

import io
import os
import shutil
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from selenium.webdriver.common.by import By

from app.jobs.panel import JobPanel
from app.state import ids
from pipeline.config import Config
from pipeline.explain.atlas import read_atlas
from pipeline.store.run_store import RunStore
from tests.e2e.test_app_browser import (JOB_TIMEOUT, drag_box, largest_cell, open_app, read_matrix, run_dir,
                                        text_of, wait_for_grid, wait_until)
from tests.e2e.test_viewer_browser import viewer_open

WEIGHTS = "weights"


@pytest.fixture(autouse=True)
def standin_weights(tiny_run):
    """The stand-in's converted weights (the subject masks' DINOv2) in the run's model cache, taken
    from this machine's cache when it has them, so the test does not download and convert them."""
    model_cache = Path(tiny_run[2]) / WEIGHTS
    source = Path(os.environ.get("FAXPLAINER_CACHE_DIR") or Config().cache_path) / WEIGHTS
    for f in source.glob("dinov2_*.safetensors") if source.is_dir() else []:
        model_cache.mkdir(parents=True, exist_ok=True)
        if not (model_cache / f.name).exists():
            shutil.copy(f, model_cache / f.name)


def atlas_rows(driver) -> dict[int, str]:
    return {int(r.get_attribute("data-dim")): r.get_attribute("data-verdict")
            for r in driver.find_elements(By.CSS_SELECTOR, f"#{ids.ATLAS_CONTENT} .fx-atlas-row[data-dim]")}


def named_background(line: str) -> set[int]:
    """The dimensions a count line names as looking mostly at the background."""
    part = line.split("background", 1)[1].split(";", 1)[0]
    return {int(w.strip(" ,:d")) for w in part.split(":", 1)[1].split(",")} if ":" in part else set()


def test_the_atlas_and_the_matrix_say_which_dimensions_look_at_the_background(dash_br, app_server, shot):
    open_app(dash_br, app_server)
    driver = dash_br.driver
    wait_until(lambda: "not built yet" in text_of(driver, ids.ATLAS_SUMMARY), what="the atlas panel")

    # 1. the atlas, built in the background with a progress bar
    driver.find_element(By.ID, ids.ATLAS_START).click()
    wait_until(lambda: driver.find_element(By.ID, ids.ATLAS_CANCEL).is_enabled(), what="the job running")
    rows = wait_until(lambda: (lambda r: r if len(r) == 16 else None)(atlas_rows(driver)), timeout=JOB_TIMEOUT,
                      what=f"the atlas's rows ({text_of(driver, ids.ATLAS_MESSAGE)})")
    kept = read_atlas(run_dir(app_server))
    assert rows == {d["dim"]: d["verdict"] for d in kept["dimensions"]}
    assert f"{kept['n_images']} held-out images" in text_of(driver, ids.ATLAS_SUMMARY)
    line = driver.find_element(By.CSS_SELECTOR, f"#{ids.ATLAS_CONTENT} .fx-count-line").text
    assert line.startswith("of 16 dimensions, ")
    assert named_background(line) == {k for k, v in rows.items() if v == "background"}
    for r in driver.find_elements(By.CSS_SELECTOR, f"#{ids.ATLAS_CONTENT} .fx-atlas-row[data-dim]"):
        assert r.find_element(By.CSS_SELECTOR, ".fx-verdict-chip").text == r.get_attribute("data-verdict")
        assert "subject" in r.find_element(By.CSS_SELECTOR, ".fx-sb-words").text
    # the tiny encoder is a (random) CLIP with a text tower: its regions are named, marked CLIP-only
    names = driver.find_elements(By.CSS_SELECTOR, f"#{ids.ATLAS_CONTENT} .fx-atlas-names")
    assert len(names) == (16 if kept["names_available"] else 0)
    assert ("regions named (CLIP only)" in text_of(driver, ids.ATLAS_CONTENT)) == kept["names_available"]
    # every example shows its dimension's map (drawn by the job)
    srcs = [i.get_attribute("src") for i in driver.find_elements(By.CSS_SELECTOR, ".fx-atlas-ex img")]
    assert srcs and all("/files/attn/" in s for s in srcs)
    wait_until(lambda: all(driver.execute_script(
        "return Array.from(document.querySelectorAll('.fx-atlas-ex img')).map(i => i.complete && i.naturalWidth > 0)")),
        what="the examples' maps loaded")
    driver.execute_script(f"document.getElementById('{ids.ATLAS_PANEL}').scrollIntoView();")
    shot(driver, "40-atlas")

    # an example opens the viewer on its image, with that dimension's map
    row = driver.find_element(By.CSS_SELECTOR, f"#{ids.ATLAS_CONTENT} .fx-atlas-row[data-dim]")
    top = next(d for d in kept["dimensions"] if d["dim"] == int(row.get_attribute("data-dim")))
    row.find_element(By.CSS_SELECTOR, ".fx-atlas-ex").click()
    records = RunStore(run_dir(app_server)).read_records()
    name = Path(records[top["top"][0]["index"]]["path"]).name
    wait_until(lambda: viewer_open(driver) and text_of(driver, ids.VIEWER_TITLE) == name,
               what=f"the viewer on {name}")
    wait_until(lambda: f"dimension {top['dim']}" in text_of(driver, ids.VIEWER_MAP), what="its map chosen")
    driver.find_element(By.ID, ids.VIEWER_CLOSE).click()
    wait_until(lambda: not viewer_open(driver), what="the viewer closed")

    # 2. three images of the largest cell: the matrix's headers and its count line
    cell = largest_cell(app_server)
    open_app(dash_br, app_server, f"&cell={cell['id']}")
    wait_for_grid(driver, cell["n"])
    drag_box(driver, ids.IMAGES_GRAPH, 0.05, -0.05, 2.95, -0.95)
    wait_until(lambda: read_matrix(driver, 3), timeout=JOB_TIMEOUT, what="the attention matrix")
    line = wait_until(lambda: (lambda t: t if t.startswith("of 16 dimensions") else None)(
        driver.find_element(By.CSS_SELECTOR, f"#{ids.ATTN_CONTENT} .fx-count-line").text),
        timeout=JOB_TIMEOUT, what="the matrix's count line")
    assert "of these 3 images" in line
    heads = driver.find_elements(By.CSS_SELECTOR, ".fx-attn-head")
    verdicts = {int(h.get_attribute("data-dim")): h.get_attribute("data-verdict") for h in heads}
    assert len(verdicts) == 16 and set(verdicts.values()) <= {"subject", "background", "mixed"}
    assert named_background(line) == {k for k, v in verdicts.items() if v == "background"}
    for h in heads:
        chip = h.find_element(By.CSS_SELECTOR, ".fx-share-chip")
        assert chip.text.split("\n")[0] == h.get_attribute("data-verdict") and "%" in chip.text
    driver.execute_script(f"document.getElementById('{ids.ATTN_PANEL}').scrollIntoView();")
    shot(driver, "41-matrix-where-dimensions-look")

    # 3. the viewer outlines the subject of one of them (its mask is kept by now)
    driver.find_element(By.CSS_SELECTOR, ".fx-attn-big[data-index] .fx-attn-map").click()
    wait_until(lambda: viewer_open(driver), what="the viewer")
    driver.find_element(By.CSS_SELECTOR, f"#{ids.VIEWER_SUBJECT} input").click()
    source = wait_until(lambda: driver.execute_script(
        "var gd = document.querySelector('#" + ids.VIEWER_GRAPH + " .js-plotly-plot');"
        "var im = gd && (gd.layout.images || []).find(function (i) { return i.name === 'subject'; });"
        "return im ? im.source : null;"), timeout=JOB_TIMEOUT, what="the subject's outline")
    with urllib.request.urlopen(app_server.url + source) as r:
        alpha = np.asarray(Image.open(io.BytesIO(r.read())))[..., 3]
    assert 0 < (alpha == 255).mean() < 0.25  # a line around the subject, not a filled area
    shot(driver, "42-viewer-subject-outline")
    driver.find_element(By.ID, ids.VIEWER_CLOSE).click()
    wait_until(lambda: not viewer_open(driver), what="the viewer closed")

    # 4. the concept view counts for the cell
    driver.find_element(By.ID, ids.VIEW_TOGGLE).find_elements(By.TAG_NAME, "label")[1].click()
    wait_until(lambda: "view=concepts" in driver.current_url, what="the concept view in the URL")
    # its job starts with the concepts' own (two job processes loading their models on a busy machine)
    line = wait_until(lambda: (lambda t: t if t.startswith("of 16 dimensions") else None)(
        text_of(driver, ids.CONCEPTS_COUNT)), timeout=2 * JOB_TIMEOUT,
        what=f"the cell's count line ({text_of(driver, ids.CONCEPTS_COUNT)!r}, "
             f"{text_of(driver, JobPanel.ids.message(ids.CONCEPTS_PROFILE_JOB))!r})")
    assert f"of cell {cell['id']}" in line
