"""Cells group nearby images, count them right and sit on the correct side of the boundary;
splits keep every source photo on one side."""
from __future__ import annotations

import numpy as np

from pipeline.represent.cells import build_cells, default_n_cells
from pipeline.data.splits import HELDOUT, TRAIN, assign_splits, validation_mask


def test_cells_recover_separated_groups_and_count_correctly():
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(6, 16)) * 10
    group = np.repeat(np.arange(6), [50, 40, 30, 20, 10, 5])
    z = centers[group] + rng.normal(size=(len(group), 16)) * 0.1
    w = rng.normal(size=16)
    logit = z @ w / 5
    label = (logit + rng.normal(size=len(z)) > 0).astype(int)
    cell_of, cells = build_cells(z, logit, label, w, n_cells=6)
    # each cell is exactly one group
    for c in range(6):
        assert len(np.unique(group[cell_of == c])) == 1
    sizes = [c["n"] for c in cells["cells"]]
    assert sizes == sorted(sizes, reverse=True) == [50, 40, 30, 20, 10, 5]
    for c in cells["cells"]:
        members = cell_of == c["id"]
        pred = logit[members] > 0
        lab = label[members]
        assert c["fake_correct"] == int(((lab == 1) & pred).sum())
        assert c["real_wrong"] == int(((lab == 0) & pred).sum())
        assert c["real_correct"] + c["real_wrong"] + c["fake_correct"] + c["fake_wrong"] == c["n"]
        # the side of the boundary follows the cell's mean logit
        assert np.sign(c["x"]) == np.sign(logit[members].mean())
        assert 0.5 <= c["mean_confidence"] <= 1.0
    assert 0 < cells["cells"][0]["r"] and cells["cells"][0]["r"] > cells["cells"][-1]["r"]


def test_glyphs_do_not_overlap_much():
    rng = np.random.default_rng(1)
    z = rng.normal(size=(2000, 16))
    w = rng.normal(size=16)
    _, cells = build_cells(z, z @ w, (z @ w > 0).astype(int), w, n_cells=80)
    xy = np.array([[c["x"], c["y"]] for c in cells["cells"]])
    r = np.array([c["r"] for c in cells["cells"]])
    d = np.linalg.norm(xy[:, None] - xy[None], axis=-1) + np.eye(len(r)) * 1e9
    overlap = (r[:, None] + r[None] - d).clip(min=0)
    assert overlap.max() < 0.25 * r.max()


def test_default_cell_count_scales():
    assert default_n_cells(100) == 20 and default_n_cells(10_000) == 200 and default_n_cells(10**7) == 5000


def test_split_by_source_and_stratified():
    rng = np.random.default_rng(0)
    sources = [f"photo{i // 5}" for i in range(200)]  # 40 photos x 5 crops
    labels = np.array([(i // 5) % 2 for i in range(200)])
    gens = ["" if l == 0 else f"g{(i // 10) % 3}" for i, l in enumerate(labels)]
    split = assign_splits(labels, gens, sources, [""] * 200, 0.3, seed=0)
    by_source = {}
    for s, sp in zip(sources, split):
        by_source.setdefault(s, set()).add(sp)
    assert all(len(v) == 1 for v in by_source.values())
    held = split == HELDOUT
    assert 0.2 < held.mean() < 0.4
    assert set(labels[held]) == {0, 1}
    assert np.array_equal(split, assign_splits(labels, gens, sources, [""] * 200, 0.3, seed=0))
    assert not np.array_equal(split, assign_splits(labels, gens, sources, [""] * 200, 0.3, seed=1))
    del rng


def test_preset_split_obeyed_and_validation_carved_from_train():
    labels = np.array([0, 1] * 50)
    preset = ["train"] * 70 + ["heldout"] * 30
    split = assign_splits(labels, [""] * 100, [""] * 100, preset, 0.5, seed=0)
    assert list(split) == [TRAIN] * 70 + [HELDOUT] * 30
    rows = np.flatnonzero(split == TRAIN)
    val = validation_mask(labels, rows, 0.15, seed=0)
    assert 8 <= val.sum() <= 12 and set(labels[rows[val]]) == {0, 1}
