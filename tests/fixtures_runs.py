"""A small, fully generated run folder in the format of ``pipeline.store.run_store`` (for app and UI tests).

``make_fake_run(tmp_path, n_images=40, n_cells=4)`` writes a data set of tiny coloured images
(real ones bluish, fake ones reddish, so a thumbnail's colour says which image it shows) and a run
folder beside it: ``meta.json``, ``records.csv``, ``z16.npy``, ``logit.npy`` and ``cells.json``
with consistent counts, written through ``pipeline.store.run_store.write_run`` as the runner writes runs
(metrics from ``pipeline.model.metrics``). Nothing is trained: predictions are drawn with a fixed seed so that every
cell holds right and wrong predictions of both classes. Use it where a test needs a run but not
the pipeline that makes one.

Also here: stand-ins for ``pipeline.explain.cache`` with known answers (``FAKE_EXPLAIN``), and a
small real data set (``make_dataset``) with ``run_pipeline_cli`` to make a real run of it with the
tiny encoder in a separate process (browser tests, ``bench/app.py``).
"""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from pipeline.config import REPO_ROOT
from pipeline.data.filefacts import read_facts
from pipeline.model.metrics import binary_metrics, per_generator_metrics
from pipeline.store.run_store import write_run

GENERATORS = ("gan", "diffusion")
CATEGORIES = ("bird", "cat")


def image_colour(index: int, label: int) -> tuple[int, int, int]:
    """The flat colour of generated image ``index`` (real: blue-ish, fake: red-ish)."""
    shade = 40 + (index * 37) % 160
    return (60, shade, 220) if label == 0 else (220, shade, 60)


def make_fake_run(tmp_path: str | Path, n_images: int = 40, n_cells: int = 4,
                  cell_sizes: Sequence[int] | None = None, run_id: str = "fake-run",
                  image_size: tuple[int, int] = (40, 32), write_images: bool = True,
                  encoder_fallback: str | None = None, seed: int = 0,
                  paired_sources: bool = False, other_crop_pairs: Sequence[int] = ()) -> Path:
    """Write a generated run and its data set under ``tmp_path``; return the run folder.

    Parameters
    ----------
    tmp_path : path
        Parent folder; the data go to ``<tmp_path>/data`` and the run to ``<tmp_path>/runs/<run_id>``.
    n_images, n_cells : int
        Size of the run (ignored when ``cell_sizes`` is given).
    cell_sizes : list of int, optional
        Exact number of images per cell.
    write_images : bool
        Write the image files (benchmarks of large runs may skip it and only need the records).
    encoder_fallback : str, optional
        Recorded as ``encoder.fallback_reason`` (the app must then show the stand-in notice).
    paired_sources : bool
        Give images 2k (real) and 2k + 1 (fake) one ``source`` (``photo-k``), as a real crop and
        its regeneration, so the viewer shows them side by side; the data root then gets a
        ``provenance.csv`` in which both show the same region (crop box) of ``photo-k.png``.
    other_crop_pairs : list of int
        Pairs ``k`` whose fake is another crop of the photo (another box), as in the demo set.
    """
    rng = np.random.default_rng(seed)
    tmp_path = Path(tmp_path)
    if cell_sizes is None:
        base = np.full(n_cells, n_images // n_cells)
        base[: n_images % n_cells] += 1
        cell_sizes = base.tolist()
    cell_of = np.repeat(np.arange(len(cell_sizes)), cell_sizes)
    n = len(cell_of)
    n_cells = len(cell_sizes)
    data_root = tmp_path / "data"
    run_dir = tmp_path / "runs" / run_id

    labels = np.arange(n) % 2  # alternate real / fake
    # A cell leans real or fake; about one prediction in four is wrong, so glyphs have 4 wedges.
    lean = np.where(np.arange(n_cells) % 2 == 0, -1.0, 1.0)
    logits = lean[cell_of] * rng.uniform(0.3, 3.0, n) * np.where(rng.random(n) < 0.75, 1, -1)
    logits = np.where(labels == 1, np.abs(logits), -np.abs(logits))
    wrong = rng.random(n) < 0.25
    logits = np.where(wrong, -logits, logits).astype(np.float32)
    prob = 1.0 / (1.0 + np.exp(-logits))
    pred = (prob > 0.5).astype(int)
    correct = (pred == labels).astype(int)

    centres = rng.normal(size=(n_cells, 16)) * 2.0
    z16 = (centres[cell_of] + rng.normal(size=(n, 16)) * 0.5).astype(np.float32)

    records = []
    for i in range(n):
        gen = GENERATORS[(i // 2) % len(GENERATORS)]
        cat = CATEGORIES[(i // 4) % len(CATEGORIES)]
        rel = f"{gen}/{cat}/{'1_fake' if labels[i] else '0_real'}/img_{i:05d}.png"
        if write_images:
            path = data_root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", image_size, image_colour(i, int(labels[i]))).save(path)
        records.append({
            "id": hashlib.sha1(rel.encode()).hexdigest()[:12], "path": rel, "label": int(labels[i]),
            "generator": gen, "category": cat, "source": f"photo-{i // 2}" if paired_sources else "",
            "width": image_size[0],
            "height": image_size[1], "format": "PNG", "bytes": 0,
            "split": "heldout" if i % 3 == 0 else "train", "prob_fake": round(float(prob[i]), 6),
            "pred": int(pred[i]), "correct": int(correct[i]), "cell": int(cell_of[i]),
        })

    if paired_sources:
        _write_provenance(data_root, records, set(other_crop_pairs))
    heldout = np.array([r["split"] == "heldout" for r in records])
    generators = [r["generator"] for r in records]
    head_metrics = binary_metrics(labels[heldout], prob[heldout])
    head_metrics["per_generator"] = per_generator_metrics(
        labels[heldout], prob[heldout], [g for g, h in zip(generators, heldout) if h])
    head_metrics["train"] = binary_metrics(labels[~heldout], prob[~heldout])
    meta = {
        "run_id": run_id,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "config": {},
        "encoder": {"name": "tiny" if not encoder_fallback else "dinov2_standin",
                    "model": "tiny-vit" if not encoder_fallback else "vit_small_patch14_dinov2",
                    "weights": "random(seed=0)", "embed_dim": 64, "image_size": 32,
                    "fingerprint": "0123abcd", "fallback_reason": encoder_fallback},
        "data": {"root": str(data_root.resolve()), "manifest": None, "fingerprint": f"fake{seed}{n}",
                 "n_images": n, "n_bad": 0, "n_real": int((labels == 0).sum()),
                 "n_fake": int((labels == 1).sum())},
        "bad_files": [],
        "metrics": {"head": head_metrics},
        "status": "complete",
    }
    facts = [read_facts(data_root / r["path"]).to_row() for r in records] if write_images else None
    write_run(run_dir, meta=meta, records=records, cells=cells_json(cell_of, labels, prob, correct, rng),
              arrays={"z16": z16, "logit": logits}, facts=facts)
    return run_dir


def cells_json(cell_of: np.ndarray, labels: np.ndarray, prob: np.ndarray, correct: np.ndarray,
               rng: np.random.Generator) -> dict:
    """cells.json content (pipeline contract) computed from per-image arrays."""
    cells = []
    n_cells = int(cell_of.max()) + 1 if len(cell_of) else 0
    for c in range(n_cells):
        m = cell_of == c
        lab, cor, p = labels[m], correct[m], prob[m]
        cells.append({
            "id": c,
            "x": float(np.mean(p) * 4 - 2 + rng.normal() * 0.2),
            "y": float(rng.normal() * 2),
            "n": int(m.sum()),
            "real_correct": int(((lab == 0) & (cor == 1)).sum()),
            "real_wrong": int(((lab == 0) & (cor == 0)).sum()),
            "fake_correct": int(((lab == 1) & (cor == 1)).sum()),
            "fake_wrong": int(((lab == 1) & (cor == 0)).sum()),
            "mean_confidence": float(np.mean(np.maximum(p, 1 - p))) if m.any() else 0.5,
            "accuracy": float(cor.mean()) if m.any() else 0.0,
            "mean_prob_fake": float(p.mean()) if m.any() else 0.5,
        })
    return {"n_cells": n_cells, "boundary_x": 0.0, "x_label": "towards fake", "y_label": "",
            "cells": cells}


# -- stand-ins for pipeline.explain.cache with known answers ----------------------------------------
MAP_SIZE = 32


def known_contributions(index: int) -> np.ndarray:
    """Contributions of fake image ``index``: -1..1 over the 16 dimensions, reversed for odd ones."""
    c = np.linspace(-1.0, 1.0, 16)
    return c if index % 2 == 0 else -c


def fake_get_maps(run_dir, image_indices, progress=None, on_error=None):
    """Maps where dimension k lights up rows 2k..2k+1 only; logit > 0 for even indices."""
    out = {}
    for n, i in enumerate(image_indices, start=1):
        maps = np.zeros((16, MAP_SIZE, MAP_SIZE), dtype=np.float32)
        for k in range(16):
            maps[k, 2 * k:2 * k + 2, :] = 1.0
        aggregate = np.zeros((MAP_SIZE, MAP_SIZE), dtype=np.float32)
        aggregate[:, : MAP_SIZE // 2] = 1.0  # left half pushes to fake
        aggregate[:, MAP_SIZE // 2:] = -1.0
        out[int(i)] = {"maps": maps, "aggregate": aggregate, "z": np.arange(16, dtype=np.float32),
                       "contributions": known_contributions(int(i)),
                       "logit": 2.0 if int(i) % 2 == 0 else -2.0,
                       "rgb": np.full((MAP_SIZE, MAP_SIZE, 3), 128, dtype=np.uint8)}
        if progress:
            progress(n, len(image_indices))
    return out


def fake_get_faithfulness(run_dir, progress=None):
    """Dimension k: gain 0.01 k, win rate 0.5 + 0.02 k; kept where ``get_faithfulness`` keeps it
    (``pipeline.explain.results.faithfulness_result``), since the app reads it from there."""
    from pipeline.explain.results import faithfulness_result

    return faithfulness_result(run_dir).get(lambda p: {"per_dimension": [
        {"dim": k, "gain": 0.01 * k, "win_rate": 0.5 + 0.02 * k, "relevant_drop": 0.0, "random_drop": 0.0}
        for k in range(16)]})


def fake_get_concepts(run_dir, cell, progress=None, k: int = 3, **fields):
    """``k`` concepts of sizes 6, 4, 2 (one segment per image: the cell's first 6, 4, 2 images),
    each with 2 patch PNGs written inside the run folder; kept where ``get_concepts`` keeps them
    (``pipeline.explain.results.concepts_plan``), since the app reads them from there. ``fields``
    replace the answer's own (``n_images``, ``n_images_used``, ``skipped``)."""
    from pipeline.explain.overlays import png_bytes
    from pipeline.explain.results import concepts_plan
    from pipeline.store.sealed import write_sealed
    from pipeline.store.run_store import RunStore

    def compute(_progress):
        records = RunStore(run_dir).read_records()
        in_cell = [i for i, r in enumerate(records) if r["cell"] == int(cell)]
        folder = Path(run_dir) / "concepts" / f"cell-{int(cell)}"
        folder.mkdir(parents=True, exist_ok=True)
        concepts = []
        for j in range(k):
            patches = []
            for r in range(2):
                rel = f"concepts/cell-{int(cell)}/c{j}-{r}.png"
                # written as pipeline.explain.cache writes them: sealed with their checksum
                write_sealed(Path(run_dir) / rel, png_bytes(Image.new("RGB", (16, 16), (40 * j, 100, 200))))
                patches.append(rel)
            profile = [0.0] * 16
            profile[j] = 1.0
            images = in_cell[:6 - 2 * j]
            fake = sum(records[i]["label"] for i in images)
            concepts.append({"id": j, "size": len(images), "profile": profile, "patches": patches,
                             "n_images": len(images), "images": images,
                             "segments_real": len(images) - fake, "segments_fake": fake,
                             "sources": [{"image_index": images[r], "image_id": records[images[r]]["id"],
                                          "resolution": 8, "bbox": [0, 0, 8, 8]} for r in range(2)]})
        if progress:
            progress(1, 1)
        return {"cell": int(cell), "concepts": concepts, "n_images": 12, "n_images_used": 12, "skipped": [],
                **fields}

    return concepts_plan(run_dir, cell).result.get(compute)


FAKE_EXPLAIN = (fake_get_maps, fake_get_concepts, fake_get_faithfulness)


# -- a small real data set and a real run of it (tiny encoder) ---------------------------------------
N_PER_FOLDER = 6  # images per generator/category/label folder: 2 x 2 x 2 x 6 = 48


def make_dataset(root: Path, seed: int = 0, n_per_folder: int = N_PER_FOLDER) -> Path:
    """CNNDetection layout <gen>/<cat>/0_real|1_fake: real = flat colour with a square, fake =
    noisy colour (so even the tiny random encoder separates them a little)."""
    rng = np.random.default_rng(seed)
    for gen in ("gan", "diffusion"):
        for cat in ("bird", "cat"):
            for label in ("0_real", "1_fake"):
                folder = root / gen / cat / label
                folder.mkdir(parents=True, exist_ok=True)
                for i in range(n_per_folder):
                    base = rng.integers(30, 225, 3).astype(float)
                    a = np.ones((72, 96, 3)) * base
                    if label == "1_fake":
                        a += rng.normal(0, 45, a.shape)
                    else:
                        a[18:54, 24:72] = 255 - base
                    Image.fromarray(np.clip(a, 0, 255).astype(np.uint8)).save(folder / f"{i}.png")
    return root


def run_pipeline_cli(data: Path, runs: Path, cache: Path, *extra: str) -> str:
    """Run the pipeline in a fresh process (tiny encoder) and return the new run's id."""
    env = dict(os.environ, FAXPLAINER_RUNS_DIR=str(runs), FAXPLAINER_CACHE_DIR=str(cache))
    cmd = [sys.executable, "-m", "pipeline", "run", "--config", str(REPO_ROOT / "configs/test.yaml"),
           "--data", str(data), "--set", "concepts.k=3", "--set", "cells.n_cells=4", *extra]
    proc = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(f"pipeline failed:\n{proc.stdout}\n{proc.stderr}")
    runs_now = [p.name for p in runs.iterdir() if (p / "meta.json").exists()]
    if len(runs_now) != 1:
        raise RuntimeError(f"expected one run under {runs}, found {runs_now}")
    return runs_now[0]


def _write_provenance(data_root: Path, records: list[dict], other_crop_pairs: set[int]) -> None:
    """``provenance.csv`` of a paired run: image ``i`` is cut from ``photo-{i // 2}.png`` at box
    (8 k, 4 k, 64); a fake of ``other_crop_pairs`` at (8 k + 32, 4 k, 64) instead."""
    data_root.mkdir(parents=True, exist_ok=True)
    lines = ["path,label,source,view_file,crop_x,crop_y,crop_side"]
    for i, r in enumerate(records):
        k = i // 2
        shift = 32 if r["label"] == 1 and k in other_crop_pairs else 0
        lines.append(f"{r['path']},{'fake' if r['label'] else 'real'},{r['source']},photo-{k}.png,"
                     f"{8 * k + shift},{4 * k},64")
    (data_root / "provenance.csv").write_text("\n".join(lines) + "\n")
