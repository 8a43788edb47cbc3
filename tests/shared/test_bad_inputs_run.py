"""A run from a CSV manifest listing every kind of bad input next to awkward good images: the run
completes, each bad entry is reported with its own clear reason, and each awkward image is used.

(``tests/unit/test_data.py`` checks the scan of the same kinds of files; this checks the whole
run, where the truncated JPEG is only found out when it is decoded for embedding.)
"""
from __future__ import annotations

import io
import os

import numpy as np
from PIL import Image

from pipeline.config import REPO_ROOT, load_config
from pipeline.runner import run_pipeline


def _photo(seed: int, fake: bool, w: int = 48, h: int = 40) -> Image.Image:
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(h, w, 3)).cumsum(0).cumsum(1)
    a = (a - a.min()) / (np.ptp(a) + 1e-9)
    tint = np.array([1.0, 0.55, 0.35]) if fake else np.array([0.35, 0.6, 1.0])
    return Image.fromarray(((a * 0.5 + tint * 0.5) * 255).astype(np.uint8))


BAD = {  # manifest path -> words its reason must contain
    "bad/truncated.jpg": "truncated",
    "bad/zero.png": "zero-byte file",
    "bad/text.png": "not a readable image",
    "bad/bomb.png": "decompression bomb",
    "bad/link_out.png": "leaves the data root",
    "bad/missing.png": "does not exist",
    "bad/label.png": "bad label 'maybe'",
}
AWKWARD = ["odd/deep16.png", "odd/cmyk.jpg", "odd/palette_alpha.png", "odd/rotated.jpg",
           "odd/ünïcode name with spaces.png"]


def _write_dataset(root):
    rows = []
    for i in range(24):
        label = i % 2
        rel = f"good/{'fake' if label else 'real'}_{i:02d}.png"
        (root / "good").mkdir(parents=True, exist_ok=True)
        _photo(i, bool(label)).save(root / rel)
        rows.append((rel, "fake" if label else "real"))
    odd, bad = root / "odd", root / "bad"
    odd.mkdir()
    bad.mkdir()
    deep = (np.asarray(_photo(100, False).convert("L"), dtype=np.uint16) * 257)
    Image.fromarray(deep).save(odd / "deep16.png")
    _photo(101, True).convert("CMYK").save(odd / "cmyk.jpg")
    pal = _photo(102, False).convert("P")
    pal.save(odd / "palette_alpha.png", transparency=0)
    exif = Image.Exif()
    exif[0x0112] = 6  # shown rotated by 90 degrees
    _photo(103, True, 60, 30).save(odd / "rotated.jpg", exif=exif.tobytes())
    _photo(104, False).save(odd / "ünïcode name with spaces.png")
    rows += [(p, "real" if i % 2 == 0 else "fake") for i, p in enumerate(AWKWARD)]

    buf = io.BytesIO()
    _photo(105, True).save(buf, "JPEG")
    (bad / "truncated.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    (bad / "zero.png").write_bytes(b"")
    (bad / "text.png").write_text("this is not an image")
    Image.new("L", (2500, 2500)).save(bad / "bomb.png")
    _photo(106, True).save(root.parent / "outside.png")
    os.symlink(root.parent / "outside.png", bad / "link_out.png")
    _photo(107, True).save(bad / "label.png")
    rows += [(p, "fake") for p in BAD if p != "bad/label.png"] + [("bad/label.png", "maybe")]
    manifest = root / "list.csv"
    manifest.write_text("path,label,generator\n" + "".join(f'"{p}",{lab},gan\n' for p, lab in rows),
                        encoding="utf-8")
    return manifest


def test_manifest_run_reports_each_bad_input_and_uses_awkward_images(tmp_path):
    manifest = _write_dataset(tmp_path / "data")
    cfg = load_config(REPO_ROOT / "configs" / "test.yaml", [
        f"data.manifest={manifest}", f"runs_dir={tmp_path / 'runs'}", f"cache_dir={tmp_path / 'cache'}",
        "data.max_image_pixels=4000000"])
    store = run_pipeline(cfg)
    meta = store.read_meta()
    assert meta["status"] == "complete"
    reasons = {b["path"]: b["reason"] for b in meta["bad_files"]}
    assert set(reasons) == set(BAD), reasons
    for path, words in BAD.items():
        assert words in reasons[path], (path, reasons[path])
    used = {r["path"] for r in store.read_records()}
    assert used == {f"good/{'fake' if i % 2 else 'real'}_{i:02d}.png" for i in range(24)} | set(AWKWARD)
    assert meta["data"]["n_images"] == 29 and meta["data"]["n_bad"] == len(BAD)
    rotated = next(r for r in store.read_records() if r["path"] == "odd/rotated.jpg")
    assert (rotated["width"], rotated["height"]) == (30, 60)  # EXIF orientation applied
    emb = store.load_array("embeddings")  # checked against meta.json
    assert emb.shape[0] == 29 and np.isfinite(emb).all()
