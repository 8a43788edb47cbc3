"""Server-side cost of the app's views: time and JSON payload, with a baseline from the same run.

(a) representation figure at 1k / 5k / 20k cells: building the pie-glyph figure and serialising it
    as Dash does (``plotly.io.json.to_json_plotly``). Baseline: the same glyphs as plotly layout
    ``shapes`` (one SVG path per wedge), the approach method.md measured as unusable past ~1k.
    Targets: 5k cells < 1 s and < 3 MB.
(b) a cell click -> image-grid figure for 100 / 1,000 / 5,000-image cells, thumbnails cached:
    "warm" = the grid was prepared before (the plain callback: read the grid file, build and
    serialise the figure); "prepare" = the background job the first time (arrangement + sprite +
    figure); "filtered" = the same warm click under a label filter (the cell's fake images).
    Baseline: one layout image per thumbnail. Target: warm < 300 ms at 1,000 images.
(d) the image filter on a generated 100k-image run (``make_fake_run(write_images=False)``), at the
    run's default ~630 cells and at 5,000 cells: what one filter change costs the server (mask +
    per-cell recount + the representation figure built and serialised, the cell table's rows, the
    name-search hits), against the unfiltered figure of the same run. Target: interactive, i.e.
    the filtered figure well under 1 s.
(c) the attention view for 8 images: "uncached" = the background job (relevance maps through
    ``pipeline.explain.cache`` with the tiny encoder, overlays, faithfulness), "cached" = the plain
    callback once everything is on disk. Target: cached < 200 ms.

(e) opening the image viewer on a 4000 x 3000 JPEG: the server time of the viewer's callbacks
    (click -> open, facts and neighbours, figure; serialised as Dash does) plus the image route
    sending the file, with the map overlay off and on (drawn before). Baseline: decoding and
    re-encoding the JPEG, what a server that converted every image for the browser would pay.
    Also the one-time conversion of a TIFF of the same size. Target: < 300 ms.

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

from app.files import artifacts, urls  # noqa: E402
from bench._options import parse_args  # noqa: E402
from app.state.context import AppContext  # noqa: E402
from app.figures.glyph_map import GLYPH_CELLS, CellArrays, glyph_patch, CLASSES, arc_vertices, cell_radii, representation_figure  # noqa: E402
from app.views import attention, finder, images, representation  # noqa: E402
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
    imgs = [dict(source=urls.thumb(view.run_id, i), xref="x", yref="y", x=s % cols,
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
    print(f"{'images':>7} {'thumbs s':>9} {'prepare s':>10} {'warm s':>8} {'MB':>6} {'filtered s':>10} | "
          f"{'1 img/thumb s':>13} {'MB':>6} | {'warm ratio':>10}")
    for cell, n in enumerate(sizes):
        t_thumbs, _ = timed(lambda: view.images.ensure_thumbnails(view.cell_members(cell)), repeat=1)

        def prepare():
            artifacts.grid_path(cache, cell).unlink(missing_ok=True)
            fig, _, _ = images.JOB.prepare(ctx, {"run": "bench-grid", "cell": cell, "sel": [],
                                                 "nonce": "x"}, lambda _p: None)
            return pio_json.to_json_plotly(fig)

        t_prep, _ = timed(prepare)

        def warm():
            fig = images.JOB.render(ctx, cell, "bench-grid", None)[0]
            return pio_json.to_json_plotly(fig)

        t_warm, payload = timed(warm)
        fakes = {"labels": ["fake"]}
        request = images.JOB.render(ctx, cell, "bench-grid", None, fakes)[-1]
        images.JOB.prepare(ctx, request, lambda _p: None)  # the filtered grid, prepared once

        def filtered():
            fig = images.JOB.render(ctx, cell, "bench-grid", None, fakes)[0]
            return pio_json.to_json_plotly(fig)

        t_filtered, _ = timed(filtered)
        grid = artifacts.read_grid(cache, cell)
        t_base, base = timed(lambda: pio_json.to_json_plotly(layout_images_baseline(view, grid)))
        print(f"{n:>7} {t_thumbs:>9.3f} {t_prep:>10.3f} {t_warm:>8.3f} {len(payload) / 1e6:>6.2f} "
              f"{t_filtered:>10.3f} | "
              f"{t_base:>13.3f} {len(base) / 1e6:>6.2f} | {t_base / t_warm:>9.1f}x")
    print("  (sprite size at the largest cell: "
          f"{artifacts.sprite_path(cache, grid['sprite']).stat().st_size / 1e6:.2f} MB, "
          "fetched once by the browser, then cached)")


def bench_filter(n_images: int, cell_counts, tmp: Path):
    print(f"\n(d) one filter change on a generated {n_images:,}-image run (median of 3): mask + "
          "recount + representation figure (built and serialised), table rows, name hits")
    print(f"{'cells':>7} {'filter':>22} | {'figure s':>9} {'MB':>6} {'table s':>8} {'hits s':>7} "
          f"{'total s':>8} | {'mask+recount ms':>15} | {'ratio to unfiltered':>19}")
    filters_tried = {"none": None, "label fake": {"labels": ["fake"]},
                     "gan · wrong · p .3-.7": {"generators": ["gan"], "outcomes": ["wrong"],
                                               "p_range": [0.3, 0.7]},
                     "name 'img_0001'": {"name": "img_0001"}}
    from app.state import filters

    for n_cells in cell_counts:
        run_id = f"bench-filter-{n_cells}"
        t0 = time.perf_counter()
        make_fake_run(tmp / run_id, n_images=n_images, n_cells=n_cells, run_id=run_id, write_images=False)
        ctx = AppContext(from_dict({"runs_dir": str(tmp / run_id / "runs"), "cache_dir": str(tmp / "cache")}))
        view = ctx.run(run_id)
        view.columns  # built once per loaded run (like the figure's cell arrays)
        print(f"  ({n_cells} cells: run generated and loaded in {time.perf_counter() - t0:.1f} s)")
        base = None
        for name, flt in filters_tried.items():
            t_fig, payload = timed(lambda: pio_json.to_json_plotly(representation.render(ctx, run_id, None, flt)[0]))
            t_rows, _ = timed(lambda: finder.table_rows(ctx, run_id, flt))
            t_hits, _ = timed(lambda: finder.hits(ctx, run_id, flt))
            t_mask, _ = timed(lambda: filters.cell_counts(view, filters.mask(view, filters.ImageFilter.from_json(flt))))
            base = base or t_fig
            total = t_fig + t_rows + t_hits
            print(f"{n_cells:>7} {name:>22} | {t_fig:>9.3f} {len(payload) / 1e6:>6.2f} {t_rows:>8.3f} "
                  f"{t_hits:>7.3f} {total:>8.3f} | {t_mask * 1e3:>15.1f} | {t_fig / base:>18.2f}x")


def bench_attention(tmp: Path):
    import torch

    torch.set_num_threads(1)
    print("\n(c) attention view for 8 images (tiny encoder, 1 torch thread)")
    data = make_dataset(tmp / "data", n_per_folder=4)
    run_id = run_pipeline_cli(data, tmp / "runs", tmp / "model-cache")
    ctx = AppContext(from_dict({"runs_dir": str(tmp / "runs"), "cache_dir": str(tmp / "cache")}))
    view = ctx.run(run_id)
    cell = max(view.cell_ids(), key=lambda c: len(view.cell_members(c)))
    sel = {"ids": view.cell_members(cell).tolist()[:8], "from": "graph"}
    request = attention.JOB.render(ctx, sel, run_id, cell)[-1]
    t0 = time.perf_counter()
    content, _, message = attention.JOB.prepare(ctx, request, lambda _p: None)
    t_uncached = time.perf_counter() - t0
    assert len(sel["ids"]) == 8 and content, message
    # maps cached by explain_cache, overlays not drawn yet (e.g. a cleared app cache)
    import shutil

    shutil.rmtree(ctx.app_cache(ctx.run(run_id)) / "attention")
    t0 = time.perf_counter()
    attention.JOB.prepare(ctx, request, lambda _p: None)
    t_redraw = time.perf_counter() - t0

    def cached():
        children = attention.JOB.render(ctx, sel, run_id, cell)[0]
        from dash._utils import to_json

        return to_json(children)

    t_cached, payload = timed(cached, repeat=5)
    print(f"  uncached (maps + overlays):                 {t_uncached:7.3f} s")
    print(f"  maps cached, overlays redrawn:              {t_redraw:7.3f} s")
    print(f"  cached (plain callback):                    {t_cached:7.3f} s, "
          f"{len(payload) / 1e3:.1f} kB   ratio uncached/cached {t_uncached / t_cached:.0f}x")


def bench_viewer(tmp: Path):
    import io

    from PIL import Image

    from app.state import ids
    from app.main import create_app
    from app.views import viewer
    from dash._utils import to_json
    from pipeline.store.run_store import RunStore
    from tests.fixtures_runs import FAKE_EXPLAIN

    print("\n(e) image viewer on a 4000 x 3000 JPEG (median of 5)")
    make_fake_run(tmp, n_images=40, n_cells=2, run_id="bench-viewer")
    cfg = from_dict({"runs_dir": str(tmp / "runs"), "cache_dir": str(tmp / "cache")})
    ctx = AppContext(cfg)
    store = RunStore(tmp / "runs" / "bench-viewer")
    records = store.read_records()
    # a photo-like picture: smooth shading plus sensor-like noise (about 4 MB as JPEG q92)
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:3000, 0:4000].astype(np.float32)
    base = np.stack([xx / 4000 * 200, yy / 3000 * 200, (xx + yy) / 7000 * 255], axis=2)
    pixels = np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
    root = store.data_root()
    for index, name, fmt in ((0, "big.jpg", "JPEG"), (1, "big.tif", "TIFF")):
        Image.fromarray(pixels).save(root / name, format=fmt, **({"quality": 92} if fmt == "JPEG" else {}))
        records[index].update(path=name, width=4000, height=3000, format=fmt)
    store.write_records(records)
    store.update_meta(status="complete")
    jpeg = (root / "big.jpg").read_bytes()
    client = create_app(cfg).server.test_client()
    view = ctx.run("bench-viewer")
    request = viewer.JOB.render(ctx, {"index": 0, "map": "aggregate", "pair": None}, "bench-viewer", 0.6)[-1]
    viewer.JOB.prepare(ctx, request, lambda _p: None, explain=FAKE_EXPLAIN)  # the map, drawn once

    def open_viewer(overlay):
        click = {"points": [{"customdata": 0}]}
        payload = viewer.navigate(ctx, ids.IMAGES_GRAPH, click, None, "bench-viewer",
                                  ["on"] if overlay else [], "aggregate")
        out = to_json([viewer.content(ctx, payload, "bench-viewer"),
                       viewer.JOB.render(ctx, payload, "bench-viewer", 0.6)[:2]])
        return out

    def route():
        r = client.get(urls.image("bench-viewer", 0))
        assert r.status_code == 200 and r.mimetype == "image/jpeg"
        return len(r.data)

    def reencode():
        with Image.open(io.BytesIO(jpeg)) as im:
            buf = io.BytesIO()
            im.convert("RGB").save(buf, format="JPEG", quality=92)
        return len(buf.getvalue())

    t_cb, payload = timed(lambda: open_viewer(False), repeat=5)
    t_cb_map, _ = timed(lambda: open_viewer(True), repeat=5)
    t_route, size = timed(route, repeat=5)
    t_base, _ = timed(reencode, repeat=5)
    t0 = time.perf_counter()
    assert client.get(urls.image("bench-viewer", 1)).mimetype == "image/png"
    t_tiff = time.perf_counter() - t0
    t_tiff_again, _ = timed(lambda: client.get(urls.image("bench-viewer", 1)).data, repeat=3)
    total, total_map = t_cb + t_route, t_cb_map + t_route
    print(f"  callbacks (open, facts, figure), map off:   {t_cb * 1e3:7.1f} ms, {len(payload) / 1e3:.1f} kB JSON")
    print(f"  callbacks, map on (drawn before):          {t_cb_map * 1e3:7.1f} ms")
    print(f"  image route, {size / 1e6:.1f} MB JPEG sent as it is:  {t_route * 1e3:7.1f} ms")
    print(f"  server time to open the viewer:            {total * 1e3:7.1f} ms (map on: {total_map * 1e3:.1f} ms)"
          f"   target < 300 ms")
    print(f"  baseline, decode + re-encode the JPEG:     {t_base * 1e3:7.1f} ms   ratio baseline / viewer "
          f"{t_base / total:.1f}x")
    print(f"  a TIFF of the same size: first view (converted to PNG) {t_tiff:.2f} s, "
          f"then {t_tiff_again * 1e3:.1f} ms (cached)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cells", default="1000,5000,20000",
                        help="comma list: cells of the representation figure")
    parser.add_argument("--grids", default="100,1000,5000", help="comma list: images of the clicked cell")
    parser.add_argument("--skip-attention", action="store_true")
    parser.add_argument("--viewer-only", action="store_true", help="only (e), the image viewer")
    parser.add_argument("--skip-filter", action="store_true", help="skip (d), the 100k-image run")
    parser.add_argument("--browser", action="store_true",
                        help="also time drawing and zooming in headless Chromium")
    args = parse_args(parser, quick={"cells": "1000,5000", "grids": "100,1000"})
    cells = tuple(int(n) for n in args.cells.split(","))
    grids = tuple(int(n) for n in args.grids.split(","))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.viewer_only:
            bench_viewer(tmp / "viewer")
            return 0
        bench_representation(cells)
        if args.browser:
            bench_browser(cells, tmp)
        bench_image_grid(grids, tmp / "grid")
        if not args.skip_filter:
            bench_filter(20_000 if args.quick else 100_000, (630, 5000), tmp / "filter")
        if not args.skip_attention:
            bench_attention(tmp / "attention")
        bench_viewer(tmp / "viewer")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
