"""The paper's use case walked on a served run in headless Chromium, as an analyst does it: the
cell table's lowest-accuracy cell, the viewer (its same-source picture, Next to the end of the
cell, window resizes: does the tab still answer?), a box-select of three images (the attention
matrix while its rows arrive: does the column order move?), the concepts, a note, and the
findings sheet's exports. Screenshots at 1600 and 1024 px and the exports go to OUT.

    .venv/bin/python -m app --config configs/default.yaml --port 8060 &
    .venv/bin/python scripts/analyst_walk.py http://127.0.0.1:8060 RUN_ID [OUT]
"""
import os
import sys
import time
import traceback
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository, for app and tests
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.common.action_chains import ActionChains
from app.state import ids
from tests.e2e.test_app_browser import click_point, drag_box, text_of, wait_until
from tests.e2e.test_finder_browser import table_rows
from tests.e2e.test_viewer_browser import SLOTS_JS, viewer_open

URL, RUN = sys.argv[1], sys.argv[2]
OUT = sys.argv[3] if len(sys.argv) > 3 else "test-artifacts/walk"
os.makedirs(OUT, exist_ok=True)
o = Options()
for a in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars"):
    o.add_argument(a)
d = webdriver.Chrome(options=o)
d.set_window_size(1600, 1000)
d.set_script_timeout(30)
log = []


def shot(name, width=None, full=True):
    if width:
        d.set_window_size(width, 1000)
        time.sleep(1.0)
    if full:
        h = int(d.execute_script("return document.body.scrollHeight"))
        d.set_window_size(d.get_window_size()["width"], min(max(h + 40, 800), 5000))
        time.sleep(0.8)
    p = f"{OUT}/{name}.png"
    d.save_screenshot(p)
    d.set_window_size(d.get_window_size()["width"], 1000)
    log.append(f"shot {p}")


def step(name, fn):
    t = time.time()
    try:
        fn()
        log.append(f"OK   {name} ({time.time() - t:.1f} s)")
    except Exception as e:
        log.append(f"FAIL {name}: {e!r}"[:400])
        traceback.print_exc()
        try:
            d.save_screenshot(f"{OUT}/fail-{name}.png")
        except Exception:
            pass


state = {}


def open_page():
    d.get(f"{URL}/?run={RUN}")
    wait_until(lambda: "encoder" in text_of(d, ids.STATUS), timeout=60, what="status")
    time.sleep(2)
    shot("00-overview-1600")
    shot("00-overview-1024", 1024)
    d.set_window_size(1600, 1000)


def open_cell():
    rows = wait_until(lambda: table_rows(d), timeout=60, what="cell table")
    state["cell"] = int(rows[0]["id"])
    d.find_element(By.CSS_SELECTOR, f"#{ids.FINDER_TABLE} .ag-center-cols-container .ag-row[row-id='{state['cell']}']").click()
    wait_until(lambda: d.execute_script(SLOTS_JS, ids.IMAGES_GRAPH), timeout=240, what="grid")
    time.sleep(2)
    shot("10-cell-1600")


def viewer():
    xs, ys, order = d.execute_script(SLOTS_JS, ids.IMAGES_GRAPH)
    state["order"] = order
    click_point(d, ids.IMAGES_GRAPH, xs[0], ys[0])
    wait_until(lambda: viewer_open(d), what="viewer")
    time.sleep(3)
    shot("20-viewer-1600", full=False)
    for k in range(12):
        title = text_of(d, ids.VIEWER_TITLE)
        if not d.find_element(By.ID, ids.VIEWER_NEXT).is_enabled():
            log.append(f"viewer: end of the cell after {k} Next")
            break
        d.find_element(By.ID, ids.VIEWER_NEXT).click()
        wait_until(lambda: text_of(d, ids.VIEWER_TITLE) != title, what=f"next {k}")
        time.sleep(0.3)
    time.sleep(2)
    shot("21-viewer-after-next-1600", full=False)
    for w in (1024, 1300, 1024):
        d.set_window_size(w, 800)
        time.sleep(0.7)
    t = time.time()
    d.execute_script("return 1")
    log.append(f"viewer answers after resizes in {time.time() - t:.2f} s")
    time.sleep(2)
    shot("22-viewer-1024", full=False)
    ActionChains(d).send_keys(Keys.ESCAPE).perform()
    d.set_window_size(1600, 1000)
    time.sleep(1)


def attention():
    if viewer_open(d):
        ActionChains(d).send_keys(Keys.ESCAPE).perform()
        time.sleep(1)
    xs, ys, order = d.execute_script(SLOTS_JS, ids.IMAGES_GRAPH)
    drag_box(d, ids.IMAGES_GRAPH, 0.05, -0.05, 2.95, -0.95)
    wait_until(lambda: "sel=" in d.current_url, what="sel in url")
    heads = []
    def first_row():
        m = d.find_elements(By.CSS_SELECTOR, ".fx-attn-matrix .fx-attn-head")
        if m:
            heads.append([h.get_attribute("data-dim") for h in m])
        rows = d.find_elements(By.CSS_SELECTOR, ".fx-attn-matrix .fx-attn-dim")
        return len(rows) >= 16
    wait_until(first_row, timeout=300, interval=0.5, what="first row of maps")
    shot("30-attention-first-row-1600")
    wait_until(lambda: len(d.find_elements(By.CSS_SELECTOR, ".fx-attn-matrix .fx-attn-dim")) >= 48, timeout=400,
               interval=0.5, what="three rows")
    m = d.find_elements(By.CSS_SELECTOR, ".fx-attn-matrix .fx-attn-head")
    final = [h.get_attribute("data-dim") for h in m]
    log.append(f"column orders seen while rows arrived: {len(set(map(tuple, heads)))} distinct; first == final: "
               f"{bool(heads) and heads[0] == final}")
    time.sleep(2)
    shot("31-attention-done-1600")
    shot("31-attention-done-1024", 1024)
    d.set_window_size(1600, 1000)


def concepts():
    d.find_element(By.ID, ids.VIEW_TOGGLE).find_elements(By.TAG_NAME, "label")[1].click()
    wait_until(lambda: d.find_elements(By.CSS_SELECTOR, ".fx-concept"), timeout=400, interval=1, what="concepts")
    time.sleep(2)
    shot("40-concepts-1600")
    shot("40-concepts-1024", 1024)
    d.set_window_size(1600, 1000)
    d.find_element(By.ID, ids.VIEW_TOGGLE).find_elements(By.TAG_NAME, "label")[0].click()


def note():
    d.find_element(By.ID, ids.NOTES_TEXT).send_keys("GAN skies: flat sky regions fool the head")
    d.find_element(By.ID, ids.NOTES_TAG).send_keys("sky")
    d.find_element(By.ID, ids.NOTES_ADD_IMAGES).click()
    wait_until(lambda: "GAN skies" in text_of(d, ids.NOTES_LIST), what="note saved")
    time.sleep(1)
    log.append(f"tag after save: {d.find_element(By.ID, ids.NOTES_TAG).get_attribute('value')!r}")
    shot("50-note-1600")
    links = [a.get_attribute("href") for a in d.find_elements(By.CSS_SELECTOR, f"#{ids.NOTES_EXPORT} a")]
    log.append(f"export links: {links}")
    for href in links:
        name = href.rsplit("/", 1)[-1]
        with urllib.request.urlopen(href, timeout=120) as r:
            open(f"{OUT}/{name}", "wb").write(r.read())


for name, fn in (("open", open_page), ("cell", open_cell), ("viewer", viewer), ("attention", attention),
                 ("concepts", concepts), ("note", note)):
    step(name, fn)
d.quit()
print("\n".join(log))
