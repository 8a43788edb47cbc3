"""The seed paper's use case (section 4), walked end to end in a real (headless) browser, as an
analyst does it: find a cell near the boundary in the cell table, open it, look closely at one of
its images in the viewer, box-select three images and compare what the dimensions see, open the
cell's concepts and show a concept's images, filter by label, and write the finding down, which
then appears in the findings sheet. Screenshots of each view at 1600 and 1024 px wide go to
``test-artifacts/``. Same app and run as tests/e2e/test_app_browser.py (a real tiny-encoder run).
"""
from __future__ import annotations

import urllib.request

from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

from app.state import ids
from app.views import notes
from pipeline.report.notes import NotesStore
from pipeline.store.run_store import RunStore
from tests.e2e.test_app_browser import (JOB_TIMEOUT, cells_of, click_point, drag_box, open_app, read_matrix,
                                        run_dir, text_of, trace_info, wait_for_grid, wait_until)
from tests.e2e.test_finder_browser import choose, table_rows
from tests.e2e.test_viewer_browser import SLOTS_JS, facts, viewer_open


def test_the_papers_use_case_end_to_end(dash_br, app_server, shot):
    open_app(dash_br, app_server)
    driver = dash_br.driver
    records = RunStore(run_dir(app_server)).read_records()
    cells = {c["id"]: c for c in cells_of(app_server)}

    # 1. the cell table, sorted by accuracy: the first row is the cell nearest to failing
    rows = wait_until(lambda: (lambda r: r if len(r) == len(cells) else None)(table_rows(driver)),
                      what="the cell table")
    cell = cells[int(rows[0]["id"])]
    assert cell["accuracy"] == min(c["accuracy"] for c in cells.values())
    driver.find_element(By.CSS_SELECTOR, f"#{ids.FINDER_TABLE} .ag-center-cols-container "
                                         f".ag-row[row-id='{cell['id']}']").click()
    grid = wait_for_grid(driver, cell["n"])
    members = [i for i, r in enumerate(records) if r["cell"] == cell["id"]]
    assert sorted(grid["custom"]) == members
    shot(driver, "20-use-case-cell")

    # 2. a close look: the viewer on a thumbnail says what the image is
    xs, ys, order = driver.execute_script(SLOTS_JS, ids.IMAGES_GRAPH)
    click_point(driver, ids.IMAGES_GRAPH, xs[0], ys[0])
    first = records[order[0]]
    shown = wait_until(lambda: viewer_open(driver) and (lambda f: f if f.get("file") == first["path"] else None)(
        facts(driver)), what="the viewer on the clicked image")
    assert shown["label"] == ("fake" if first["label"] else "real")
    shot(driver, "21-use-case-viewer")
    ActionChains(driver).send_keys(Keys.ESCAPE).perform()
    wait_until(lambda: not driver.find_elements(By.CSS_SELECTOR, ".fx-viewer"), what="the viewer closed")

    # 3. three images box-selected: their attention matrix, one column order for every row
    cols = int(grid["image"]["sizex"])
    assert cols >= 3, "the cell's grid is wide enough for a row of three"
    drag_box(driver, ids.IMAGES_GRAPH, 0.05, -0.05, 2.95, -0.95)
    wait_until(lambda: "sel=" in driver.current_url, what="the selection in the URL")
    selected = [order[k] for k in range(3)]
    order16, heads, dims = wait_until(lambda: read_matrix(driver, 3), timeout=JOB_TIMEOUT,
                                      what="the attention matrix of the three images")
    assert sorted(int(i) for i in dims) == sorted(selected)
    assert heads == order16 and all(row == order16 for row in dims.values())
    shot(driver, "22-use-case-attention")

    # 4. the finding written down, on the three images, with the dimensions the attention view
    # shows first (the picker is pre-filled with them): it is in the findings sheet, with the maps
    prefilled = [int(k) for k in order16[:3]]
    wait_until(lambda: all(f"dimension {k}" in text_of(driver, notes.NOTES_DIMS) for k in prefilled),
               what="the dimensions picker pre-filled with the attention view's first columns")
    driver.find_element(By.ID, ids.NOTES_TEXT).send_keys("flat skies fool the model")
    driver.find_element(By.ID, ids.NOTES_TAG).send_keys("sky")
    driver.find_element(By.ID, ids.NOTES_ADD_IMAGES).click()
    wait_until(lambda: "flat skies fool the model" in text_of(driver, ids.NOTES_LIST),
               what=f"the note (message: {text_of(driver, ids.NOTES_MESSAGE)!r}, url {driver.current_url})")
    with urllib.request.urlopen(f"{app_server.url}/files/notes/{app_server.run_id}.html") as r:
        sheet = r.read().decode()
    note = sheet[sheet.index("flat skies fool the model"):]
    assert ">sky</span>" in sheet and note.count('<figure class="pic') == 3
    assert all(records[i]["path"].split("/")[-1] in note for i in selected)
    assert NotesStore(run_dir(app_server)).list()[-1]["dims"] == prefilled
    # the attention view computed their maps: each image beside its aggregate and the 3 dimensions
    assert note.count('data-map="aggregate"') == 3 and "maps not computed yet" not in note
    assert all(note.count(f'data-map="d{k:02d}"') == 3 for k in prefilled)
    with urllib.request.urlopen(f"{app_server.url}/files/findings/{app_server.run_id}.pdf") as r:
        assert r.headers["Content-Type"] == "application/pdf" and r.read().startswith(b"%PDF-")

    # 5. the cell's concepts; "show its images" brings the grid back with those images outlined
    driver.find_element(By.ID, ids.VIEW_TOGGLE).find_elements(By.TAG_NAME, "label")[1].click()
    button = wait_until(lambda: driver.find_element(By.CSS_SELECTOR, ".fx-concept .fx-concept-show"),
                        timeout=JOB_TIMEOUT, what="the concepts")
    n_concept_images = int(button.text.split()[2])  # "Show its 5 images in the grid"
    shot(driver, "23-use-case-concepts")
    button.click()
    wait_until(lambda: driver.find_element(By.ID, ids.IMAGES_GRAPH).is_displayed(), what="back to the grid")
    outlined = wait_until(lambda: (lambda n: n if n == n_concept_images else None)(driver.execute_script(
        "var gd = document.getElementById(arguments[0]).querySelector('.js-plotly-plot');"
        "return (gd.layout.shapes || []).filter(function (s) { return s.line && s.line.dash === 'dot'; }).length;",
        ids.IMAGES_GRAPH)), what="the concept's images outlined in the grid")
    assert outlined == n_concept_images
    assert "concept 1" in text_of(driver, ids.IMAGES_HIGHLIGHT)

    # 6. a filter by label changes the grid's count
    fakes = [i for i in members if records[i]["label"] == 1]
    choose(driver, ids.FILTER_LABEL, "fake")
    grid = wait_for_grid(driver, len(fakes))
    assert sorted(grid["custom"]) == fakes and len(fakes) != len(members)
    shot(driver, "24-use-case-filtered")
    choose(driver, ids.FILTER_LABEL, "fake")  # untick: all images again
    wait_for_grid(driver, cell["n"])

    driver.get(f"{app_server.url}/files/notes/{app_server.run_id}.html")
    shot(driver, "25-use-case-findings-sheet")


def test_an_unknown_run_in_a_link_opens_nothing_and_says_why(dash_br, app_server, shot):
    dash_br.server_url = f"{app_server.url}/?run=no-such-run&cell=2&sel=0,1"
    driver = dash_br.driver
    wait_until(lambda: "Run 'no-such-run' cannot be shown" in text_of(driver, ids.FALLBACK_NOTICE),
               what="the message")
    assert "no-such-run" in driver.current_url  # the link is left as it was, nothing else opened
    assert text_of(driver, ids.STATUS) == "No run open."
    info = trace_info(driver, ids.IMAGES_GRAPH)
    assert not info or info["n"] == 0
    shot(driver, "26-unknown-run")
