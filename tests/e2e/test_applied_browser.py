"""Scoring new images with a run and the cross-generator matrix, in a real (headless) browser: a
folder scored from the app ("Score a folder with this run…") appears in the data switch, and
switching to it changes the glyphs to the set's tallies (then "both" draws its images over the
run's glyphs); a click on a pair of the matrix opens that pair's misclassified held-out images in
the image view. Same app and run as tests/e2e/test_app_browser.py (a real tiny-encoder run)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from selenium.webdriver.common.by import By

from app.state import ids
from app.figures.applied import MARKERS_NAME
from app.figures.glyph_map import CLASSES, EMPTY_TRACE_NAME
from app.figures.matrix import TITLES, pair_title
from app.state.runs import applied_id
from pipeline.store.sealed import read_sealed_json
from pipeline.store.run_store import MATRIX, RunStore
from tests.e2e.test_app_browser import (HOVER, JOB_TIMEOUT, click_point, largest_cell, open_app, run_dir,
                                        text_of, trace_info, type_into, wait_for_grid, wait_until)
from tests.e2e.test_finder_browser import choose

MARKERS = MARKERS_NAME  # the set's images over the run's glyphs


def glyph_counts(driver) -> dict[int, list[int]] | None:
    info = trace_info(driver, ids.REPR_GRAPH, HOVER)
    return {int(c[0]): [int(v) for v in c[1:5]] for c in info["custom"]} if info else None


def tallies(cells: list[dict]) -> dict[int, list[int]]:
    return {int(c["id"]): [int(c[k]) for k in CLASSES] for c in cells}


def test_a_scored_folder_appears_in_the_switch_and_changes_the_glyphs(dash_br, app_server, tmp_path, shot):
    run = RunStore(run_dir(app_server))
    records = run.read_records()
    big = largest_cell(app_server)["id"]
    picked = [r for r in records if r["cell"] == big][:10]  # one cell's images: other cells stay empty
    folder = tmp_path / "newbatch"
    for n, r in enumerate(picked):
        target = folder / ("1_fake" if r["label"] else "0_real") / f"{n}.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(run.data_root() / r["path"], target)

    open_app(dash_br, app_server)
    driver = dash_br.driver
    run_tallies = tallies(run.read_cells()["cells"])
    wait_until(lambda: glyph_counts(driver) == run_tallies, what="the run's glyphs")

    driver.find_element(By.ID, ids.APPLY_TOGGLE).click()
    type_into(driver.find_element(By.ID, ids.APPLY_PATH), str(folder))
    driver.find_element(By.ID, ids.APPLY_START).click()
    wait_until(lambda: "is ready" in text_of(driver, ids.APPLY_MESSAGE) or "fx-error" in
               driver.find_element(By.ID, ids.APPLY_MESSAGE).get_attribute("innerHTML"),
               timeout=JOB_TIMEOUT, what="the applied set")
    assert f"Applied set newbatch is ready: {len(picked)} images" in text_of(driver, ids.APPLY_MESSAGE)
    assert f"run={app_server.run_id}" in driver.current_url  # the analyst stays until they switch
    driver.find_element(By.ID, ids.APPLY_TOGGLE).click()  # close the panel

    rid = applied_id(app_server.run_id, "newbatch")
    choose(driver, ids.REPR_DATA, rid)  # the data switch lists the new set
    wait_until(lambda: "newbatch" in driver.current_url, what="the set opened")
    set_cells = run.applied("newbatch").read_cells()["cells"]
    wait_until(lambda: glyph_counts(driver) == tallies(set_cells), what="the set's glyphs")
    assert tallies(set_cells) != run_tallies
    empty = sum(1 for c in set_cells if c["n"] == 0)
    assert empty > 0
    wait_until(lambda: trace_info(driver, ids.REPR_GRAPH, EMPTY_TRACE_NAME)["n"] > 0, what="empty discs")
    status = text_of(driver, ids.STATUS)
    assert status.startswith(f"applied set newbatch of run {app_server.run_id}")
    assert f"applied set newbatch of run {app_server.run_id}" in text_of(driver, ids.REPR_TITLE)
    assert "accuracy on the set" in text_of(driver, ids.METRICS)
    shot(driver, "20-applied-set")

    # "both": the run's glyphs again, with the set's images as markers over them
    both = driver.find_element(By.CSS_SELECTOR, f"#{ids.REPR_LAYERS} input[value='both']")
    label = both.find_element(By.XPATH, "./ancestor::label")
    wait_until(label.is_displayed, what="the layers switch")
    label.click()
    wait_until(lambda: (trace_info(driver, ids.REPR_GRAPH, MARKERS) or {}).get("n") == len(picked),
               what="the set's markers")
    assert glyph_counts(driver) == run_tallies
    assert "black outline = far" in text_of(driver, ids.REPR_APPLIED_NOTE)
    shot(driver, "21-applied-both")

    # a click on the cell opens the set's images of that cell
    cell = max(set_cells, key=lambda c: c["n"])
    click_point(driver, ids.REPR_GRAPH, cell["x"], cell["y"])
    grid = wait_for_grid(driver, cell["n"])
    applied_records = run.applied("newbatch").read_records()
    assert sorted(grid["custom"]) == [i for i, r in enumerate(applied_records) if r["cell"] == cell["id"]]
    assert text_of(driver, ids.IMAGES_TITLE).startswith(f"Cell {cell['id']} of applied set newbatch")

    choose(driver, ids.REPR_DATA, app_server.run_id)  # back to the training data, same cell
    wait_until(lambda: glyph_counts(driver) == run_tallies, what="the run's glyphs again")
    assert f"cell={cell['id']}" in driver.current_url


def test_a_matrix_click_opens_the_misclassified_images(dash_br, app_server, shot):
    open_app(dash_br, app_server)
    driver = dash_br.driver
    driver.find_element(By.ID, ids.MATRIX_SUMMARY).click()  # open the panel
    wait_until(lambda: "2 generators" in text_of(driver, ids.MATRIX_SUMMARY), what="the matrix summary")
    driver.find_element(By.ID, ids.MATRIX_START).click()
    wait_until(lambda: (trace_info(driver, ids.MATRIX_GRAPH, TITLES["one"]) or {}).get("n") == 2,
               timeout=JOB_TIMEOUT, what="the heatmap")
    matrix = read_sealed_json(Path(run_dir(app_server)) / MATRIX)["matrix"]
    gens = matrix["generators"]
    train, test = next((a, b) for a in gens for b in gens
                       if a != b and (matrix["one"][a] or {}).get(b) and matrix["one"][a][b]["misclassified"])
    wrong = sorted(matrix["one"][train][test]["misclassified"])
    # the heatmap shows the matrix's AUCs in its cells
    z = driver.execute_script("var gd=document.getElementById(arguments[0]).querySelector('.js-plotly-plot');"
                              "var name = arguments[1];"
                              "return gd.data.find(function (d) { return d.name === name; }).z;",
                              ids.MATRIX_GRAPH, TITLES["one"])
    assert json.dumps(z[gens.index(train)][gens.index(test)]) == json.dumps(matrix["one"][train][test]["auc"])
    shot(driver, "22-matrix")

    click_point(driver, ids.MATRIX_GRAPH, gens.index(test), gens.index(train))
    grid = wait_for_grid(driver, len(wrong))
    assert sorted(grid["custom"]) == wrong
    assert text_of(driver, ids.IMAGES_TITLE) == f"{pair_title('one', train, test)} · {len(wrong)} images"
    assert "cell=set%3A" in driver.current_url
    assert f"{len(wrong)} images, opened in the image view" in text_of(driver, ids.MATRIX_MESSAGE)
    shot(driver, "23-matrix-misclassified")
