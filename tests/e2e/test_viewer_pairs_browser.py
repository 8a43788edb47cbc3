"""Honest pairs in the image viewer (issue 23): a same-source picture side by side follows the main
picture's pan and zoom only when it shows the same region. Over a generated run with a
``provenance.csv``: pair 0 (images 0, 1) is one region, pair 1 (2, 3) two crops of one photo, and
image 5 a demo-like fake of a Debian wallpaper unpacked in the app's cache, so it opens beside its
source photo's region, with the difference toggle. Screenshots at 1600 and 1024 px go to
test-artifacts/."""
from __future__ import annotations

import shutil
import time

import numpy as np
import pytest
from PIL import Image
from selenium.webdriver.common.by import By

from app.state import ids
from pipeline.config import REPO_ROOT
from pipeline.data.provenance import Region, region_pixels
from pipeline.store.run_store import RunStore
from tests.e2e.conftest import AppServer
from tests.e2e.test_app_browser import click_point, text_of, wait_for_grid, wait_until
from tests.e2e.test_viewer_browser import SLOTS_JS, viewer_open
from tests.e2e.test_viewer_stress_browser import BOX_JS, assert_linked, pair_shown, wheel
from tests.fixtures_runs import make_fake_run

WALLPAPER = "mate-backgrounds/lake.jpg"
REAL_BOX, FAKE_BOX = Region(WALLPAPER, "lake.jpg", 20, 30, 96), Region(WALLPAPER, "lake.jpg", 120, 60, 96)


def _photo() -> np.ndarray:
    """A 'photo' with something to see: a sky gradient, a sun and striped water."""
    h, w = 192, 256
    y, x = np.mgrid[0:h, 0:w]
    img = np.zeros((h, w, 3), np.float32)
    img[..., 0] = 90 + 60 * y / h
    img[..., 1] = 140 + 60 * y / h
    img[..., 2] = 230 - 30 * y / h
    sun = (x - 70) ** 2 + (y - 60) ** 2 < 22 ** 2
    img[sun] = (250, 210, 80)
    water = y > 110
    img[water] = np.stack([20 + 30 * (np.sin(x[water] / 5) > 0), 80 + 40 * (np.sin(y[water] / 3) > 0),
                           140 + 0 * x[water]], axis=-1)
    return img.astype(np.uint8)


@pytest.fixture
def pairs_server(tmp_path):
    run = make_fake_run(tmp_path, n_images=8, n_cells=1, image_size=(64, 64), paired_sources=True,
                        other_crop_pairs=[1])
    data, cache = tmp_path / "data", tmp_path / "cache"
    # a Debian wallpaper as sources.fetch_debian_package leaves it in the cache
    nature = cache / "demo_sources" / "mate-backgrounds" / "usr/share/backgrounds/mate/nature"
    nature.mkdir(parents=True)
    Image.fromarray(_photo()).save(nature / "lake.jpg", quality=95)
    (cache / "demo_sources" / "mate-backgrounds" / ".complete.json").write_text("{}")
    # images 4 (real) and 5 (fake) become two other crops of it, as in the demo set
    store = RunStore(run)
    records = store.read_records()
    real = region_pixels(nature / "lake.jpg", REAL_BOX, size=64)
    fake = region_pixels(nature / "lake.jpg", FAKE_BOX, size=64).astype(int)
    fake = np.clip(fake + np.random.default_rng(0).integers(-25, 26, fake.shape), 0, 255).astype(np.uint8)
    rows = [line for line in (data / "provenance.csv").read_text().splitlines()
            if not line.startswith((records[4]["path"], records[5]["path"]))]
    for i, pixels, box in ((4, real, REAL_BOX), (5, fake, FAKE_BOX)):
        Image.fromarray(pixels).save(data / records[i]["path"])
        records[i]["source"] = WALLPAPER
        rows.append(f"{records[i]['path']},{'fake' if i == 5 else 'real'},{WALLPAPER},lake.jpg,"
                    f"{box.x},{box.y},{box.side}")
    store.write_records(records)
    (data / "provenance.csv").write_text("\n".join(rows) + "\n")
    config = tmp_path / "app.yaml"
    config.write_text(f"base: {REPO_ROOT / 'configs' / 'test.yaml'}\n"
                      f"runs_dir: {run.parent}\ncache_dir: {cache}\ndata:\n  root: {data}\n")
    server = AppServer(config, run.name, tmp_path / "server.log").start()
    yield server
    server.stop()
    shutil.rmtree(cache, ignore_errors=True)


def open_image(driver, index: int) -> None:
    """Click image ``index``'s thumbnail (the viewer closed first) and wait for its pair."""
    if viewer_open(driver):
        driver.find_element(By.ID, ids.VIEWER_CLOSE).click()
        wait_until(lambda: not viewer_open(driver), what="the viewer closed")
    xs, ys, custom = driver.execute_script(SLOTS_JS, ids.IMAGES_GRAPH)
    k = [c[0] if isinstance(c, list) else c for c in custom].index(index)
    click_point(driver, ids.IMAGES_GRAPH, xs[k], ys[k])
    wait_until(lambda: viewer_open(driver) and pair_shown(driver), what=f"image {index} with its pair")
    time.sleep(0.5)


def pair_source(driver) -> str:
    return driver.execute_script("var gd = document.getElementById(arguments[0]).querySelector('.js-plotly-plot');"
                                 "return gd.layout.images[0].source;", ids.VIEWER_PAIR_GRAPH)


def test_only_the_same_region_is_linked_another_crop_is_captioned_and_left_alone(dash_br, pairs_server, shot):
    driver = dash_br.driver
    driver.set_window_size(1600, 1000)
    dash_br.server_url = pairs_server.url + f"/?run={pairs_server.run_id}&cell=0"
    wait_until(lambda: "encoder: tiny" in text_of(driver, ids.STATUS), what="status line")
    wait_for_grid(driver, 8)

    # another crop of the same photo: said so, and zooming the main picture leaves it alone
    open_image(driver, 2)
    assert pair_source(driver).endswith("/3")
    assert "same source photo, other crop: not the same region, not linked" in text_of(driver, ids.VIEWER_PAIR_HEAD)
    before = driver.execute_script(BOX_JS, ids.VIEWER_PAIR_GRAPH)
    wheel(driver, ids.VIEWER_GRAPH, -4)
    zoomed = wait_until(lambda: (lambda b: b if b[2] < 0.9 else None)(driver.execute_script(BOX_JS, ids.VIEWER_GRAPH)),
                        what="the main picture zoomed")
    time.sleep(1.0)  # time for a link, if there were one
    assert driver.execute_script(BOX_JS, ids.VIEWER_PAIR_GRAPH) == before, zoomed
    shot(driver, "07-viewer-pair-other-crop")

    # one region (a real crop and its regeneration): linked
    open_image(driver, 0)
    assert pair_source(driver).endswith("/1")
    assert "same region: pan and zoom linked" in text_of(driver, ids.VIEWER_PAIR_HEAD)
    wheel(driver, ids.VIEWER_GRAPH, -4)
    assert_linked(driver)
    assert driver.execute_script(BOX_JS, ids.VIEWER_PAIR_GRAPH)[2] < 0.9
    shot(driver, "07-viewer-pair-same-region")

    # a demo fake: beside the region of its source photo it was made from (linked), not beside the
    # real crop of the same photo; then the difference to it
    open_image(driver, 5)
    assert pair_source(driver).endswith("/files/region/fake-run/5/source.png")
    assert "its source photo, same region" in text_of(driver, ids.VIEWER_PAIR_HEAD)
    assert "other crop" in text_of(driver, ids.VIEWER_PAIRS)
    wheel(driver, ids.VIEWER_GRAPH, -3)
    assert_linked(driver)
    shot(driver, "07-viewer-pair-source-region")
    driver.find_element(By.CSS_SELECTOR, f"[aria-label^='Show the difference to its source photo']").click()
    wait_until(lambda: pair_source(driver).endswith("/difference.png"), what="the difference picture")
    assert "|this image − its source region| × 4" in text_of(driver, ids.VIEWER_PAIR_HEAD)
    shot(driver, "07-viewer-pair-difference")
