"""The cell finder in a real (headless) browser: the cell table sorted by accuracy opens a cell, a
cell opened on the map selects its row, and a filter by label changes the grid's image count and
the glyphs. Same app and run as tests/e2e/test_app_browser.py (a real tiny-encoder run)."""
from __future__ import annotations

from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

from app.state import ids
from app.figures.glyph_map import HIGHLIGHT_TRACE_NAME, NOTES_TRACE_NAME
from pipeline.store.run_store import RunStore
from tests.e2e.test_app_browser import (HOVER, JOB_TIMEOUT, cells_of, click_point, largest_cell, open_app,
                                        run_dir, text_of, trace_info, wait_for_grid, wait_until)


def table_rows(driver) -> list[dict]:
    """The cell table's rows in display order: row id (= cell id), images, selected?"""
    return driver.execute_script(
        "return Array.from(document.querySelectorAll("
        "  '#' + arguments[0] + ' .ag-center-cols-container .ag-row'))"
        ".map(function (r) { return {index: parseInt(r.getAttribute('row-index'), 10),"
        "  id: r.getAttribute('row-id'), selected: r.classList.contains('ag-row-selected'),"
        "  n: parseInt((r.querySelector(\"[col-id='n']\") || {}).textContent, 10)}; })"
        ".sort(function (a, b) { return a.index - b.index; });", ids.FINDER_TABLE)


def choose(driver, dropdown_id, value):
    """Tick ``value`` in a (Dash 4) multi-select dropdown, then close it."""
    driver.find_element(By.ID, dropdown_id).click()
    option = wait_until(lambda: driver.find_element(
        By.CSS_SELECTOR, f".dash-dropdown-options input[value='{value}']"), what=f"option {value}")
    option.find_element(By.XPATH, "./ancestor::label").click()
    driver.find_element(By.TAG_NAME, "body").send_keys(Keys.ESCAPE)


def graphs_fit(driver) -> bool:
    """Every plotly graph on screen has been laid out again at its container's width (after a
    resize); a hidden one (e.g. in a closed panel) has no width to fit."""
    return driver.execute_script(
        "return Array.from(document.querySelectorAll('.js-plotly-plot')).every(function (gd) {"
        "  return !gd._fullLayout || gd.offsetParent === null || gd.clientWidth === 0"
        "    || Math.abs(gd._fullLayout.width - gd.clientWidth) <= 1; });")


def both_widths(driver, shot, name):
    """Screenshots at 1600 and 1024 px wide (the ``shot`` fixture), once every graph on screen is
    laid out at the window's width."""
    wait_until(lambda: graphs_fit(driver), what="graphs laid out at the window's width")
    shot(driver, name)


def test_the_lowest_accuracy_cell_opens_from_the_cell_table(dash_br, app_server, shot):
    open_app(dash_br, app_server)
    driver = dash_br.driver
    cells = {c["id"]: c for c in cells_of(app_server)}
    rows = wait_until(lambda: (lambda r: r if len(r) == len(cells) else None)(table_rows(driver)),
                      what="one table row per cell")
    # sorted by accuracy, lowest first (ties by id)
    assert [int(r["id"]) for r in rows] == sorted(cells, key=lambda c: (round(cells[c]["accuracy"], 4), c))
    lowest = cells[int(rows[0]["id"])]
    assert lowest["accuracy"] == min(c["accuracy"] for c in cells.values())

    driver.find_element(By.CSS_SELECTOR, f"#{ids.FINDER_TABLE} .ag-center-cols-container "
                                         f".ag-row[row-id='{lowest['id']}']").click()
    grid = wait_for_grid(driver, lowest["n"])
    assert f"cell={lowest['id']}" in driver.current_url
    assert text_of(driver, ids.IMAGES_TITLE).startswith(f"Cell {lowest['id']} · {lowest['n']} images")
    records = RunStore(run_dir(app_server)).read_records()
    assert sorted(grid["custom"]) == [i for i, r in enumerate(records) if r["cell"] == lowest["id"]]
    wait_until(lambda: trace_info(driver, ids.REPR_GRAPH, HIGHLIGHT_TRACE_NAME)["n"] > 0, what="the map's ring")
    wait_until(lambda: [r["id"] for r in table_rows(driver) if r["selected"]] == [str(lowest["id"])],
               what="the row selected")
    # a note on the cell puts a diamond on the map, without a reload
    assert trace_info(driver, ids.REPR_GRAPH, NOTES_TRACE_NAME)["n"] == 0
    driver.find_element(By.ID, ids.NOTES_TEXT).send_keys("boundary cell, look at the noise")
    driver.find_element(By.ID, ids.NOTES_ADD_CELL).click()
    wait_until(lambda: trace_info(driver, ids.REPR_GRAPH, NOTES_TRACE_NAME)["n"] == 1, what="the notes mark")
    both_widths(driver, shot, "10-cell-table")

    # the other way: a cell clicked on the map selects its row
    other = max((c for c in cells.values() if c["id"] != lowest["id"]), key=lambda c: c["n"])
    wait_until(lambda: trace_info(driver, ids.REPR_GRAPH, HOVER), what="representation figure")
    click_point(driver, ids.REPR_GRAPH, other["x"], other["y"])
    wait_until(lambda: f"cell={other['id']}" in driver.current_url, what=f"cell {other['id']} opened")
    wait_until(lambda: [r["id"] for r in table_rows(driver) if r["selected"]] == [str(other["id"])],
               what=f"the map's cell {other['id']} selected in the table")


def test_a_label_filter_changes_the_grid_count_and_the_glyphs(dash_br, app_server, shot):
    cell = largest_cell(app_server)
    open_app(dash_br, app_server, f"&cell={cell['id']}")
    driver = dash_br.driver
    wait_for_grid(driver, cell["n"])
    records = RunStore(run_dir(app_server)).read_records()
    fakes = [i for i, r in enumerate(records) if r["cell"] == cell["id"] and r["label"] == 1]
    assert 0 < len(fakes) < cell["n"]

    choose(driver, ids.FILTER_LABEL, "fake")
    grid = wait_for_grid(driver, len(fakes))
    assert sorted(grid["custom"]) == fakes
    assert text_of(driver, ids.IMAGES_TITLE).endswith(f"· {len(fakes)} shown (filter)")
    n_fake = sum(r["label"] == 1 for r in records)
    wait_until(lambda: f"{n_fake} of {len(records)} images pass" in text_of(driver, ids.FILTER_INFO),
               what="the filter's count")
    # the glyphs are recounted: no real image left in any cell
    hover = wait_until(lambda: (lambda t: t if t and all(c[1] == c[2] == 0 for c in t["custom"]) else None)(
        trace_info(driver, ids.REPR_GRAPH, HOVER)), what="glyphs of fake images only")
    assert sum(c[3] + c[4] for c in hover["custom"]) == n_fake
    # the table follows: its rows count the fake images only
    wait_until(lambda: sum(r["n"] for r in table_rows(driver)) == n_fake, what="table of fake images")

    # the name search lists a file of another cell; a click opens that cell (filtered grid)
    target = next(i for i in range(len(records)) if records[i]["label"] == 1
                  and records[i]["cell"] != cell["id"])
    name = records[target]["path"].rsplit("/", 1)[-1]  # e.g. "3.png", one per folder
    driver.find_element(By.ID, ids.FILTER_NAME).send_keys(name)
    hit_id = f'{{"index":{target},"type":"{ids.finder_hit(0)["type"]}"}}'  # as Dash writes a dict id
    hit = wait_until(lambda: driver.execute_script("return document.getElementById(arguments[0])", hit_id),
                     what="the file among the hits")
    both_widths(driver, shot, "11-filtered")
    assert name in hit.text
    hit.click()
    other = records[target]["cell"]
    wait_until(lambda: f"cell={other}" in driver.current_url, what="the hit's cell opened")
    wait_until(lambda: text_of(driver, ids.IMAGES_TITLE).startswith(f"Cell {other} "), what="its title")
