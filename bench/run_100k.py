"""A whole run on 100,000 image files, every stage but embedding, then the app's views on it.

Issue 6's scale target: given the embeddings, a run of 10^5 images completes in under 10 minutes
on 2 cores, and the app's targets still hold on it. Steps:

1. **Files**: ``--n`` JPEG files in the CNNDetection layout (10 categories x 0_real/1_fake), each
   a random crop (144-224 px, random flip) of one demo-set image, so real and fake files come
   from real photos and GAN regenerations (repeated crops, as the issue allows).
2. **Embeddings, given**: each file's embedding is its source image's stand-in embedding (from the
   demo run) plus small Gaussian noise, written into the embedding cache under the stand-in's
   fingerprint and the file's sha256 - exactly where ``embed_paths`` looks. Nothing is embedded.
3. **The run**, timed: ``pipeline.runner.run_pipeline`` on the folder with the stand-in encoder:
   scan (headers and sha256 of every file), embedding-cache lookup, projection (its word-probe
   training embeds rendered words with the real encoder), head, cells, writing the run folder.
4. **The app on it**: representation figure (time, payload), the largest cell's first click
   (thumbnails + arrangement + sprite) and a repeat click (grid cached).

Usage: python bench/run_100k.py [--n 100000] [--work DIR]   (about 15 min on 2 cores, ~1.3 GB disk;
``--quick``: 5,000 files)
"""
from __future__ import annotations

import argparse
import io
import resource
import shutil
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

if not __package__:  # started as `python bench/NAME.py`: the repository root on sys.path
    import _path  # noqa: F401

from bench._options import parse_args  # noqa: E402

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402
from tqdm import tqdm  # noqa: E402

CATEGORIES = 10
NOISE = 0.05  # noise std, as a fraction of each embedding dimension's spread over the demo set


def demo_run():
    """The demo run with the stand-in encoder (built and run when missing)."""
    from pipeline.config import load_config
    from pipeline.data.demo.builtin import ensure_demo_config
    from pipeline.runner import run_pipeline

    cfg = ensure_demo_config(load_config("configs/standin.yaml"))
    return cfg, run_pipeline(cfg)


def write_files(out: Path, sources: list[Path], labels: np.ndarray, n: int, seed: int) -> list[tuple[Path, int]]:
    """``n`` crops of the demo images; returns (file, source index) pairs."""
    rng = np.random.default_rng(seed)
    src = rng.integers(0, len(sources), n)
    plan = []
    for i, s in enumerate(src):
        folder = out / f"cat{i % CATEGORIES:02d}" / ("1_fake" if labels[s] else "0_real")
        plan.append((folder / f"{i:06d}.jpg", int(s), int(rng.integers(144, 225)),
                     rng.random(2), bool(rng.integers(0, 2))))
    for folder in {p.parent for p, *_ in plan}:
        folder.mkdir(parents=True, exist_ok=True)
    cache: dict[int, Image.Image] = {}

    def one(item):
        path, s, side, pos, flip = item
        if path.exists():
            return
        im = cache.get(s)
        if im is None:
            im = cache[s] = Image.open(sources[s]).convert("RGB")
        x0, y0 = (int(p * (d - side)) for p, d in zip(pos, im.size))
        crop = im.crop((x0, y0, x0 + side, y0 + side))
        if flip:
            crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        buf = io.BytesIO()
        crop.save(buf, format="JPEG", quality=92)
        path.write_bytes(buf.getvalue())

    with ThreadPoolExecutor(4) as pool:
        list(tqdm(pool.map(one, plan, chunksize=256), total=n, desc="files", unit="file"))
    return [(p, s) for p, s, *_ in plan]


def supply_embeddings(cfg, files, base: np.ndarray, seed: int) -> int:
    """Write ``base[source] + noise`` for every file into the embedding cache; returns rows written."""
    from pipeline.model.embed import EmbeddingCache, file_key
    from pipeline.model.encoders import shared_encoder

    enc = shared_encoder(cfg.encoder, cfg.cache_path)
    cache = EmbeddingCache(cfg.cache_path, enc.info.fingerprint, enc.info.embed_dim)
    known = cache.load()
    rng = np.random.default_rng(seed)
    spread = base.std(axis=0, keepdims=True)
    keys, rows = [], []
    for path, s in tqdm(files, desc="embeddings (supplied)", unit="file"):
        key = file_key(path)
        if key in known:
            continue
        keys.append(key)
        rows.append(base[s] + NOISE * spread[0] * rng.standard_normal(base.shape[1]))
        known[key] = True
    for i in range(0, len(keys), 8192):
        cache.write(keys[i:i + 8192], np.asarray(rows[i:i + 8192], np.float32))
    return len(keys)


def timed_run(cfg):
    from pipeline.runner import run_pipeline

    marks: dict[str, list[float]] = defaultdict(list)
    bar: list = [None, None]  # the current stage's name and tqdm bar

    def progress(stage, done, total):
        marks[stage].append(time.perf_counter())
        if bar[0] != stage:
            if bar[1] is not None:
                bar[1].close()
            bar[0], bar[1] = stage, tqdm(total=total, desc=stage)
        bar[1].total = total
        bar[1].n = done
        bar[1].refresh()

    t0 = time.perf_counter()
    store = run_pipeline(cfg, progress=progress)
    total = time.perf_counter() - t0
    if bar[1] is not None:
        bar[1].close()
    # a stage lasts from its first report to the next stage's first report (the last: to the end)
    firsts = sorted((min(t), s) for s, t in marks.items())
    ends = [t for t, _ in firsts[1:]] + [t0 + total]
    stages = {s: end - start for (start, s), end in zip(firsts, ends)}
    return store, total, stages


def app_on_run(cfg, store):
    from plotly.io import json as pio_json

    from app.state.context import AppContext
    from app.figures.glyph_map import representation_figure
    from app.views import images

    ctx = AppContext(cfg)
    view = ctx.run(store.run_id)
    cells = view.cells
    t0 = time.perf_counter()
    payload = pio_json.to_json_plotly(representation_figure(cells))
    t_fig = time.perf_counter() - t0
    sizes = {int(c["id"]): int(c["n"]) for c in cells["cells"]}
    big = max(sizes, key=sizes.get)
    req = {"run": store.run_id, "cell": big, "sel": [], "nonce": "bench"}
    t0 = time.perf_counter()
    images.JOB.prepare(ctx, req, lambda _p: None)
    t_first = time.perf_counter() - t0
    t0 = time.perf_counter()
    fig = images.JOB.render(ctx, big, store.run_id, None)[0]
    grid_json = pio_json.to_json_plotly(fig)
    t_again = time.perf_counter() - t0
    return {"cells": len(sizes), "figure_s": t_fig, "figure_mb": len(payload) / 1e6,
            "largest_cell": sizes[big], "first_click_s": t_first, "click_s": t_again,
            "grid_kb": len(grid_json) / 1e3}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=100_000, help="image files (the target is for 100,000)")
    ap.add_argument("--work", type=Path, default=Path(".cache/bench-100k"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--keep-run", action="store_true", help="reuse a previous run instead of timing a new one")
    args = parse_args(ap, quick={"n": 5_000})
    import logging

    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    from pipeline.config import from_dict, to_dict
    from pipeline.store.run_store import RunStore

    demo_cfg, demo = demo_run()
    records = demo.read_records()
    base = np.load(demo.path / "embeddings.npy")
    root = Path(demo.read_meta()["data"]["root"])
    sources = [root / r["path"] for r in records]
    labels = np.array([int(r["label"]) for r in records])

    data_dir = args.work / f"data-{args.n}"
    files = write_files(data_dir, sources, labels, args.n, args.seed)
    # A cache folder of the bench's own, so that the projection is trained anew on every run (it
    # is cached per data set); the converted encoder weights are shared with the main cache.
    cache = args.work / "cache"
    (cache / "weights").parent.mkdir(parents=True, exist_ok=True)
    if not (cache / "weights").exists():
        (cache / "weights").symlink_to((demo_cfg.cache_path / "weights").resolve())
    shutil.rmtree(cache / "projection", ignore_errors=True)
    cfg = from_dict({**to_dict(demo_cfg), "runs_dir": str(args.work / "runs"), "cache_dir": str(cache),
                     "data": {**to_dict(demo_cfg)["data"], "root": str(data_dir), "manifest": None}})
    t0 = time.perf_counter()
    written = supply_embeddings(cfg, files, base, args.seed)
    print(f"embeddings supplied for {written:,} new files in {time.perf_counter() - t0:.0f} s "
          "(not part of the timed run)")

    if not args.keep_run and (args.work / "runs").exists():
        shutil.rmtree(args.work / "runs")
    store, total, stages = timed_run(cfg)
    meta = RunStore(store.path).read_meta()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2
    print(f"\nrun {store.run_id}: {args.n:,} files, {total:.0f} s in all (target 600 s at 100,000 "
          f"files), peak RSS {rss:.2f} GB")
    for stage, secs in stages.items():
        print(f"  {stage:<12} {secs:7.1f} s")
    m = meta["metrics"]["head"]
    print(f"  held-out accuracy {m.get('accuracy'):.3f}, AP {m.get('ap'):.3f} ({meta['data']['n_images']:,} "
          f"images, {meta['data']['n_bad']} skipped; crops of one source land on both sides of "
          "the split, so this is no detection figure)")
    app = app_on_run(cfg, store)
    print(f"app: {app['cells']} cells -> representation figure {app['figure_s']:.2f} s, "
          f"{app['figure_mb']:.2f} MB (targets < 1 s, < 3 MB at 5k cells)")
    print(f"     largest cell ({app['largest_cell']:,} images): first click {app['first_click_s']:.1f} s "
          f"(thumbnails + arrangement + sprite), then {app['click_s'] * 1000:.0f} ms, "
          f"{app['grid_kb']:.0f} kB (target < 300 ms at 1,000 images)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
