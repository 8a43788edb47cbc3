"""The whole pipeline on a generated data set with the tiny encoder: a salted folder completes, every
bad file is reported with its reason, the classes are told apart, and a re-run reuses everything."""
from __future__ import annotations

import io
import json
import os

import numpy as np
import pytest
from PIL import Image

from pipeline import runner
from pipeline.cli.main import main as cli_main
from pipeline.config import REPO_ROOT, load_config
from pipeline.runner import run_pipeline
from pipeline.store.run_store import RunStore


def _image(rng, fake: bool, size=48) -> Image.Image:
    """Real: smooth cool-toned blobs. Fake: warm tones with a periodic 4-px grid (an upsampling
    artefact). A random ViT sees colour, so the head can and must separate them."""
    base = rng.normal(size=(size, size, 3)).cumsum(0).cumsum(1)
    base = (base - base.min()) / (np.ptp(base) + 1e-9)
    tint = np.array([1.0, 0.55, 0.35]) if fake else np.array([0.35, 0.6, 1.0])
    img = base * 0.5 + tint * 0.5
    if fake:
        img[::4, :, :] *= 0.7
        img[:, ::4, :] *= 0.7
    return Image.fromarray((img * 255).clip(0, 255).astype(np.uint8))


def make_dataset(root, n_per_class=40, seed=0, salt=True):
    rng = np.random.default_rng(seed)
    for gen in ("gan_a", "gan_b"):
        for label, folder in ((0, "0_real"), (1, "1_fake")):
            d = root / gen / folder
            d.mkdir(parents=True, exist_ok=True)
            for i in range(n_per_class // 2):
                _image(rng, bool(label)).save(d / f"{gen}_{i:03d}.png")
    if salt:
        bad = root / "gan_a" / "1_fake"
        buf = io.BytesIO()
        _image(rng, True).save(buf, "JPEG")
        (bad / "truncated.jpg").write_bytes(buf.getvalue()[:300])
        (bad / "zero.png").write_bytes(b"")
        (bad / "notes.png").write_text("not an image")
        outside = root.parent / "outside.png"
        _image(rng, True).save(outside)
        os.symlink(outside, bad / "escape.png")
        Image.new("L", (3000, 3000)).save(bad / "bomb.png")
    return root


@pytest.fixture()
def tiny_cfg(tmp_path):
    def make(root, *extra):
        return load_config(REPO_ROOT / "configs" / "test.yaml", [f"data.root={root}", f"runs_dir={tmp_path / 'runs'}",
                                                 f"cache_dir={tmp_path / 'cache'}",
                                                 "data.max_image_pixels=4000000", *extra])
    return make


def test_salted_run_completes_reports_bad_files_and_separates_classes(tmp_path, tiny_cfg):
    root = make_dataset(tmp_path / "data")
    stages = []
    store = run_pipeline(tiny_cfg(root), progress=lambda s, d, t: stages.append(s))
    meta = store.read_meta()
    assert meta["status"] == "complete"
    reasons = {b["path"].split("/")[-1]: b["reason"] for b in meta["bad_files"]}
    assert set(reasons) == {"truncated.jpg", "zero.png", "notes.png", "escape.png", "bomb.png"}
    assert "truncated" in reasons["truncated.jpg"] or "corrupt" in reasons["truncated.jpg"]
    assert reasons["zero.png"] == "zero-byte file"
    assert "decompression bomb" in reasons["bomb.png"]
    assert "leaves the data root" in reasons["escape.png"]
    assert meta["data"]["n_images"] == 80
    records = store.read_records()
    assert len(records) == 80 and {r["split"] for r in records} == {"train", "heldout"}
    z = store.load_array("z16")  # checked against meta.json
    assert z.shape == (80, 16)
    # the classes differ in colour: even a random tiny ViT + the trained head must separate them
    h = meta["metrics"]["head"]
    assert h["accuracy"] >= 0.9 and h["ap"] >= 0.9, h
    assert set(h["per_generator"]) == {"gan_a", "gan_b"}
    cells = store.read_cells()
    assert sum(c["n"] for c in cells["cells"]) == 80
    assert {r["cell"] for r in records} == set(range(cells["n_cells"]))
    for stage in ("scan", "embed", "projection", "head", "cells", "write"):
        assert stage in stages
    assert {"cosine_before", "cosine_after", "word_probe_before", "word_probe_after"} <= set(
        meta["metrics"]["projection"])


def test_rerun_reuses_everything_and_a_change_recomputes(tmp_path, tiny_cfg, monkeypatch):
    root = make_dataset(tmp_path / "data", salt=False)
    first = run_pipeline(tiny_cfg(root))
    calls = []
    real_embed = runner.embed_paths_for
    monkeypatch.setattr(runner, "embed_paths_for", lambda *a, **k: calls.append(1) or real_embed(*a, **k))
    again = run_pipeline(tiny_cfg(root))
    assert again.path == first.path and calls == []  # nothing recomputed, not even a cache lookup
    changed = run_pipeline(tiny_cfg(root, "cells.n_cells=5"))
    assert changed.path != first.path and changed.read_cells()["n_cells"] == 5
    assert len(calls) == 1


def test_cli_run_and_info(tmp_path, capsys):
    root = make_dataset(tmp_path / "data", n_per_class=20, salt=False)
    args = ["--config", str(REPO_ROOT / "configs" / "test.yaml"), "--set", f"runs_dir={tmp_path / 'runs'}",
            "--set", f"cache_dir={tmp_path / 'cache'}"]
    assert cli_main(["run", *args, "--data", str(root)]) == 0
    out = capsys.readouterr().out
    assert "held-out accuracy" in out and "projection:" in out
    run_dir = next((tmp_path / "runs").iterdir())
    assert cli_main(["info", str(run_dir), "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["head"]["n"] == RunStore(run_dir).read_meta()["metrics"]["head"]["n"]
    assert cli_main(["run", *args, "--data", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err
