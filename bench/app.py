"""Server-side cost of the app's views: time and JSON payload, with a baseline from the same run.

(a) representation figure at 1k / 5k / 20k cells: building the pie-glyph figure and serialising it
    as Dash does (``plotly.io.json.to_json_plotly``). Baseline: the same glyphs as plotly layout
    ``shapes`` (one SVG path per wedge), the approach method.md measured as unusable past ~1k.
    Targets: 5k cells < 1 s and < 3 MB.
(b) a cell click -> image-grid figure for 100 / 1,000 / 5,000-image cells, thumbnails cached:
    "warm" = the grid was prepared before (the plain callback: read the grid file, build and
    serialise the figure); "prepare" = the background job the first time (arrangement + sprite +
    figure). Baseline: one layout image per thumbnail. Target: warm < 300 ms at 1,000 images.
(c) the attention view for 8 images: "uncached" = the background job (relevance maps through
    ``pipeline.explain_cache`` with the tiny encoder, overlays, faithfulness), "cached" = the plain
    callback once everything is on disk. Target: cached < 200 ms.

(a') with ``--browser``: drawing and zooming (a) in headless Chromium, against the shapes baseline,
    and the frame times during a pan and a wheel-zoom gesture (what "smooth" means to the eye).

Run: ``python bench/app.py [--browser]`` (``--quick`` for smaller sizes). Timings are medians of a
few repeats, single-threaded torch; on a shared machine they are noisy.
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import plotly.io.json as pio_json

if not __package__:  # started as `python bench/NAME.py`: the repository root on sys.path
    import _path  # noqa: F401

from app import artifacts  # noqa: E402
from bench._options import parse_args  # noqa: E402
from app.context import AppContext  # noqa: E402
from app.figures import GLYPH_CELLS, CellArrays, glyph_patch, CLASSES, arc_vertices, cell_radii, representation_figure  # noqa: E402
from app.views import attention, images  # noqa: E402
from pipeline.config import from_dict  # noqa: E402
from tests.fixtures_runs import make_dataset, make_fake_run, run_pipeline_cli  # noqa: E402


def timed(fn, repeat=3):
    """(median seconds, last result)."""
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def synthetic_cells(n_cells: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    cells = []
    for i in range(n_cells):
        n = int(rng.integers(4, 200))
        rc, rw, fc, fw = (int(v) for v in rng.multinomial(n, [0.4, 0.1, 0.4, 0.1]))
        cells.append({"id": i, "x": float(rng.normal() * 20), "y": float(rng.normal() * 20), "n": n,
                      "real_correct": rc, "real_wrong": rw, "fake_correct": fc, "fake_wrong": fw,
                      "mean_confidence": float(rng.uniform(0.5, 1)), "accuracy": (rc + fc) / n,
                      "mean_prob_fake": 0.5})
    return {"cells": cells, "boundary_x": 0.0}


def shapes_baseline(cells: dict) -> go.Figure:
    """The same pie glyphs as one layout shape (SVG path) per wedge."""
    items = cells["cells"]
    x = np.array([c["x"] for c in items])
    y = np.array([c["y"] for c in items])
    r = cell_radii(items, x, y, np.array([c["n"] for c in items]))
    k = arc_vertices(len(items))
    shapes = []
    for c, cx, cy, rad in zip(items, x, y, r):
        counts = np.array([c[name] for name in CLASSES], float)
        a0 = np.pi / 2
        for name, frac in zip(CLASSES, counts / counts.sum()):
            if frac <= 0:
                continue
            a1 = a0 - 2 * np.pi * frac
            t = np.linspace(a0, a1, max(2, int(np.ceil(frac * k)) + 1))
            pts = " L".join(f"{cx + rad * np.cos(a):.4f},{cy + rad * np.sin(a):.4f}" for a in t)
            shapes.append(dict(type="path", path=f"M{cx:.4f},{cy:.4f} L{pts} Z", line_width=0,
                               fillcolor="blue" if name.startswith("real") else "orange"))
            a0 = a1
    fig = go.Figure()
    fig.update_layout(shapes=shapes)
    return fig


def bench_representation(sizes):
    print("(a) representation figure: build + serialise (median of 3)")
    print(f"{'cells':>7} {'time s':>8} {'MB':>7} | {'shapes s':>9} {'shapes MB':>10} | "
          f"{'time ratio':>10} {'size ratio':>10}")
    for n in sizes:
        cells = synthetic_cells(n)
        t, payload = timed(lambda: pio_json.to_json_plotly(representation_figure(cells)))
        tb, base = timed(lambda: pio_json.to_json_plotly(shapes_baseline(cells)), repeat=1)
        print(f"{n:>7} {t:>8.3f} {len(payload) / 1e6:>7.2f} | {tb:>9.3f} {len(base) / 1e6:>10.2f} | "
              f"{tb / t:>9.1f}x {len(base) / len(payload):>9.1f}x")
    big = [n for n in sizes if n > GLYPH_CELLS]
    if big:
        print(f"  level of detail past {GLYPH_CELLS:,} cells: the figure above is the overview "
              "(markers); a zoom patches in the pies of the cells in view:")
    for n in big:
        cells = synthetic_cells(n)
        xs = np.array([c["x"] for c in cells["cells"]])
        ys = np.array([c["y"] for c in cells["cells"]])
        # a view around the centre holding about 4,000 cells
        half = np.sqrt(4000 / n) / 2
        view = {"x0": np.quantile(xs, 0.5 - half), "x1": np.quantile(xs, 0.5 + half),
                "y0": np.quantile(ys, 0.5 - half), "y1": np.quantile(ys, 0.5 + half)}
        arrays = CellArrays.of(cells)  # kept per run by the app (RunView.cell_arrays)
        t, patch = timed(lambda: pio_json.to_json_plotly(glyph_patch(arrays, view)))
        drawn = json.loads(patch)["drawn"]
        print(f"{n:>7} zoom patch for {drawn:,} cells in view: {t:.3f} s, {len(patch) / 1e6:.2f} MB")


# Drives a pan (mouse drag) or a wheel zoom on plotly's drag layer, one step per animation frame,
# and reports the frames' durations and how long the redraw after the gesture took.
GESTURE_JS = r"""
var done = arguments[arguments.length - 1], mode = arguments[0], g = document.getElementById('g');
var drag = g.querySelector('.nsewdrag'), box = drag.getBoundingClientRect();
var cx = box.left + box.width / 2, cy = box.top + box.height / 2;
var frames = [], last = performance.now(), step = 0, n = 12, settled = null;
g.on('plotly_relayout', function () { settled = performance.now(); });
function ev(type, x, y) {
  if (mode === 'wheel') drag.dispatchEvent(new WheelEvent('wheel', {deltaY: -60, clientX: cx,
      clientY: cy, bubbles: true, cancelable: true}));
  else drag.dispatchEvent(new MouseEvent(type, {clientX: x, clientY: y, buttons: 1, bubbles: true,
      cancelable: true, view: window}));
}
if (mode === 'pan') ev('mousedown', cx, cy);
function tick() {
  var now = performance.now(); if (step > 0) frames.push(now - last); last = now;
  if (step < n) {
    if (mode === 'wheel') ev('wheel'); else ev('mousemove', cx + 8 * (step + 1), cy + 5 * (step + 1));
    step++; requestAnimationFrame(tick); return;
  }
  if (mode === 'pan') ev('mouseup', cx + 8 * n, cy + 5 * n);
  var end = performance.now();
  (function wait() {
    if (settled === null && performance.now() - end < 8000) { setTimeout(wait, 20); return; }
    requestAnimationFrame(function () {
      var s = frames.slice().sort(function (a, b) { return a - b; });
      done({median: s[Math.floor(s.length / 2)], redraw: (settled || performance.now()) - end});
    });
  })();
}
requestAnimationFrame(tick);
"""


def bench_browser(sizes, tmp: Path):
    """Draw, zoom and gesture frame times of the representation figure in headless Chromium."""
    import shutil

    import plotly
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options

    if not shutil.which("chromedriver"):
        print("\n(a') browser timings skipped: no chromedriver")
        return
    js = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    options = Options()
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1200,900"):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options)
    driver.set_script_timeout(120)
    print("\n(a') representation figure in headless Chromium (software rendering, no GPU): draw; "
          "zoom = relayout to half the range;\n     pan / wheel = median frame during a 12-step "
          "drag / wheel gesture; redraw = after the wheel gesture ends")
    print(f"{'cells':>7} {'draw s':>7} {'zoom s':>7} {'pan ms':>7} {'wheel ms':>9} {'redraw ms':>10} | "
          f"{'shapes draw s':>13} {'shapes zoom s':>13}")

    def load(fig, name):
        page = tmp / f"{name}.html"
        page.write_text(f"<html><body><div id='g' style='width:1100px;height:800px'></div>"
                        f"<script src='{js.as_uri()}'></script><script>"
                        f"window.FIG = {pio_json.to_json_plotly(fig)};</script></body></html>")
        driver.get(page.as_uri())
        draw = driver.execute_async_script(
            "var done = arguments[0], t = performance.now();"
            "Plotly.newPlot('g', FIG.data, FIG.layout, {scrollZoom: true}).then(function () {"
            "  requestAnimationFrame(function () { done((performance.now() - t) / 1000); });"
            "});")
        return draw

    def zoom():
        return driver.execute_async_script(
            "var done = arguments[0], g = document.getElementById('g'),"
            "    xr = g._fullLayout.xaxis.range, t = performance.now();"
            "var mid = (xr[0] + xr[1]) / 2, half = (xr[1] - xr[0]) / 4;"
            "Plotly.relayout(g, {'xaxis.range': [mid - half, mid + half]}).then(function () {"
            "  requestAnimationFrame(function () { done((performance.now() - t) / 1000); });"
            "});")

    try:
        for n in sizes:
            cells = synthetic_cells(n)
            draw = load(representation_figure(cells), f"fig{n}")
            pan = driver.execute_async_script(GESTURE_JS, "pan")
            load(representation_figure(cells), f"fig{n}")
            wheel = driver.execute_async_script(GESTURE_JS, "wheel")
            load(representation_figure(cells), f"fig{n}")
            z = zoom()
            base = (load(shapes_baseline(cells), f"shapes{n}"), zoom()) if n <= 5000 else (float("nan"),) * 2
            print(f"{n:>7} {draw:>7.2f} {z:>7.2f} {pan['median']:>7.0f} {wheel['median']:>9.0f} "
                  f"{wheel['redraw']:>10.0f} | {base[0]:>13.2f} {base[1]:>13.2f}")
    finally:
        driver.quit()


def layout_images_baseline(view, grid) -> go.Figure:
    """One layout image per thumbnail (what the sprite replaces)."""
    cols = grid["cols"]
    imgs = [dict(source=f"/files/thumb/{view.run_id}/{i}.jpg", xref="x", yref="y", x=s % cols,
                 y=-(s // cols), sizex=1, sizey=1, xanchor="left", yanchor="top", layer="below")
            for s, i in enumerate(grid["order"]) if i >= 0]
    fig = go.Figure()
    fig.update_layout(images=imgs)
    return fig


def bench_image_grid(sizes, tmp: Path):
    print("\n(b) cell click -> image-grid figure, thumbnails cached (median of 3)")
    make_fake_run(tmp, cell_sizes=list(sizes), run_id="bench-grid", image_size=(96, 72))
    ctx = AppContext(from_dict({"runs_dir": str(tmp / "runs"), "cache_dir": str(tmp / "cache")}))
    view = ctx.run("bench-grid")
    cache = ctx.app_cache(view)
    print(f"{'images':>7} {'thumbs s':>9} {'prepare s':>10} {'warm s':>8} {'MB':>6} | "
          f"{'1 img/thumb s':>13} {'MB':>6} | {'warm ratio':>10}")
    for cell, n in enumerate(sizes):
        t_thumbs, _ = timed(lambda: view.images.ensure_thumbnails(view.cell_members(cell)), repeat=1)

        def prepare():
            artifacts.grid_path(cache, cell).unlink(missing_ok=True)
            fig, _, _ = images.prepare(ctx, {"run": "bench-grid", "cell": cell, "sel": [],
                                             "nonce": "x"}, lambda _p: None)
            return pio_json.to_json_plotly(fig)

        t_prep, _ = timed(prepare)

        def warm():
            fig = images.render(ctx, "bench-grid", cell, None, None)[0]
            return pio_json.to_json_plotly(fig)

        t_warm, payload = timed(warm)
        grid = artifacts.read_grid(cache, cell)
        t_base, base = timed(lambda: pio_json.to_json_plotly(layout_images_baseline(view, grid)))
        print(f"{n:>7} {t_thumbs:>9.3f} {t_prep:>10.3f} {t_warm:>8.3f} {len(payload) / 1e6:>6.2f} | "
              f"{t_base:>13.3f} {len(base) / 1e6:>6.2f} | {t_base / t_warm:>9.1f}x")
    print("  (sprite size at the largest cell: "
          f"{artifacts.sprite_path(cache, grid['sprite']).stat().st_size / 1e6:.2f} MB, "
          "fetched once by the browser, then cached)")


def bench_attention(tmp: Path):
    import torch

    torch.set_num_threads(1)
    print("\n(c) attention view for 8 images (tiny encoder, 1 torch thread)")
    data = make_dataset(tmp / "data", n_per_folder=4)
    run_id = run_pipeline_cli(data, tmp / "runs", tmp / "model-cache")
    ctx = AppContext(from_dict({"runs_dir": str(tmp / "runs"), "cache_dir": str(tmp / "cache")}))
    sel = {"ids": list(range(8)), "from": "graph"}
    _, request, _ = attention.render(ctx, run_id, sel, None)
    t0 = time.perf_counter()
    content, message = attention.prepare(ctx, request, lambda _p: None)
    t_uncached = time.perf_counter() - t0
    assert len(content) == 8, message
    # maps cached by explain_cache, overlays not drawn yet (e.g. a cleared app cache)
    import shutil

    shutil.rmtree(ctx.app_cache(ctx.run(run_id)) / "attention")
    t0 = time.perf_counter()
    attention.prepare(ctx, request, lambda _p: None)
    t_redraw = time.perf_counter() - t0

    def cached():
        children = attention.render(ctx, run_id, sel, None)[0]
        from dash._utils import to_json

        return to_json(children)

    t_cached, payload = timed(cached, repeat=5)
    print(f"  uncached (maps + faithfulness + overlays): {t_uncached:7.3f} s")
    print(f"  maps cached, overlays redrawn:              {t_redraw:7.3f} s")
    print(f"  cached (plain callback):                    {t_cached:7.3f} s, "
          f"{len(payload) / 1e3:.1f} kB   ratio uncached/cached {t_uncached / t_cached:.0f}x")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cells", default="1000,5000,20000",
                        help="comma list: cells of the representation figure")
    parser.add_argument("--grids", default="100,1000,5000", help="comma list: images of the clicked cell")
    parser.add_argument("--skip-attention", action="store_true")
    parser.add_argument("--browser", action="store_true",
                        help="also time drawing and zooming in headless Chromium")
    args = parse_args(parser, quick={"cells": "1000,5000", "grids": "100,1000"})
    cells = tuple(int(n) for n in args.cells.split(","))
    grids = tuple(int(n) for n in args.grids.split(","))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        bench_representation(cells)
        if args.browser:
            bench_browser(cells, tmp)
        bench_image_grid(grids, tmp / "grid")
        if not args.skip_attention:
            bench_attention(tmp / "attention")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
