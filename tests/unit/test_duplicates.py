"""Exact duplicates (conflicting labels, train/held-out leakage) and near-duplicates across the split."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from pipeline.checks.duplicates import exact_duplicates, metrics_with_and_without, near_duplicates
from pipeline.model.embed import embed_paths


def test_the_same_file_under_both_labels_is_a_conflict_and_excluded(tmp_path, tiny):
    rng = np.random.default_rng(0)
    for label in ("0_real", "1_fake"):
        (tmp_path / label).mkdir()
    paths = []
    for i in range(4):
        p = tmp_path / "0_real" / f"r{i}.png"
        Image.fromarray(rng.integers(0, 255, (24, 24, 3), dtype=np.uint8)).save(p)
        paths.append(p)
    twin = tmp_path / "1_fake" / "twin.png"
    twin.write_bytes(paths[2].read_bytes())  # the same bytes, filed as fake
    paths.append(twin)
    labels = [0, 0, 0, 0, 1]
    result = embed_paths(tiny, paths, tmp_path / "cache", num_workers=0)
    assert len(result.keys) == 5 and result.keys[2] == result.keys[4] and len(set(result.keys)) == 4
    dup = exact_duplicates(result.keys, labels, ["train"] * 5)
    assert [c["rows"] for c in dup.conflicts] == [[2, 4]] and dup.conflicts[0]["labels"] == [0, 1]
    assert dup.exclude.tolist() == [False, False, True, False, True]
    assert not dup.move_to_train.any()
    _, keep = dup.apply(["train"] * 5)
    assert keep.tolist() == [True, True, False, True, False]
    listed = dup.to_dict(paths=[p.name for p in paths])
    assert listed["n_conflicts"] == 1 and listed["n_excluded"] == 2
    assert [f["path"] for f in listed["conflicts"][0]["files"]] == ["r2.png", "twin.png"]
    json.dumps(listed)


def test_the_same_bytes_in_train_and_heldout_move_to_train():
    keys = ["a", "b", "a", "c", "a", "d", "d", ""]
    labels = [0, 1, 0, 1, 0, 1, 1, 0]
    splits = ["train", "train", "heldout", "heldout", "heldout", "heldout", "heldout", "heldout"]
    dup = exact_duplicates(keys, labels, splits)
    assert dup.conflicts == []
    assert dup.cross_split == [{"key": "a", "train_rows": [0], "heldout_rows": [2, 4]}]
    new, keep = dup.apply(splits)
    assert new.tolist() == ["train", "train", "train", "heldout", "train", "heldout", "heldout", "heldout"]
    assert keep.all()
    # "d" twice on the held-out side only is a duplicate group but no leak; "" is never a key
    assert dup.n_groups == 2 and dup.n_copies == 3


def test_conflicts_can_be_kept_when_asked():
    dup = exact_duplicates([b"x", b"x"], [0, 1], ["train", "heldout"], exclude_conflicts=False)
    assert len(dup.conflicts) == 1 and not dup.exclude.any() and not dup.move_to_train.any()


def _planted(n_train=300, n_held=100, dim=64, seed=0):
    """Random unit vectors; held-out rows 0..9 are copies of training rows plus noise with known
    similarities around the threshold."""
    rng = np.random.default_rng(seed)
    emb = rng.standard_normal((n_train + n_held, dim)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    splits = np.array(["train"] * n_train + ["heldout"] * n_held, dtype=object)
    targets = np.linspace(0.95, 0.99, 10)  # 0.95 .. 0.99: those >= 0.97 are near-duplicates
    for j, cos in enumerate(targets):
        base = emb[j * 7]
        noise = rng.standard_normal(dim).astype(np.float32)
        noise -= noise @ base * base
        noise /= np.linalg.norm(noise)
        emb[n_train + j] = cos * base + np.sqrt(1 - cos ** 2) * noise
    return emb, splits, targets


def test_near_duplicates_across_the_split_are_found_exactly_at_the_threshold():
    emb, splits, targets = _planted()
    near = near_duplicates(emb * 3.0, splits, threshold=0.97)  # scale: cosine, not dot product
    expected = [300 + j for j, c in enumerate(targets) if c >= 0.97]
    assert np.flatnonzero(near.mask).tolist() == expected
    for j, cos in enumerate(targets):
        assert near.nearest_row[300 + j] == j * 7
        if cos >= 0.96:  # candidates are recomputed in float32
            assert near.nearest_similarity[300 + j] == pytest.approx(cos, abs=1e-5)
    assert (near.nearest_row[:300] == -1).all() and np.isnan(near.nearest_similarity[:300]).all()
    pairs = near.pairs
    assert [p[0] for p in pairs] == expected[::-1]  # most similar first
    # the brute-force float64 answer agrees on every row
    unit = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    sims = unit[300:].astype(np.float64) @ unit[:300].T.astype(np.float64)
    assert ((sims >= 0.97).sum(axis=1) == near.n_neighbours[300:]).all()


def test_near_duplicates_in_small_blocks_and_with_failed_rows():
    emb, splits, targets = _planted()
    emb[305] = np.nan  # a failed image: planted 0.972, now takes no part
    near = near_duplicates(emb, splits, threshold=0.97, block_bytes=4 * 300 * 3)  # 3 rows per block
    assert np.flatnonzero(near.mask).tolist() == [300 + j for j, c in enumerate(targets) if c >= 0.97 and j != 5]
    assert near.nearest_row[305] == -1


def test_metrics_with_and_without_near_duplicates():
    emb, splits, targets = _planted()
    near = near_duplicates(emb, splits, threshold=0.97)
    labels = np.array([0, 1] * 200)
    prob = np.where(labels == 1, 0.7, 0.3)
    prob[np.flatnonzero(near.mask)] = 1 - prob[np.flatnonzero(near.mask)]  # the duplicates are wrong
    out = metrics_with_and_without(labels, prob, splits == "heldout", near.mask)
    assert out["n_removed"] == int(near.mask.sum()) == 5
    assert out["all"]["n"] == 100 and out["without_near_duplicates"]["n"] == 95
    assert out["all"]["accuracy"] == pytest.approx(0.95) and out["without_near_duplicates"]["accuracy"] == 1.0
    summary = near.to_dict(labels=labels)
    assert summary["n_heldout_with_near_duplicate"] == 5 and len(summary["pairs"]) == 5
    json.dumps(summary)


def test_metrics_with_and_without_reuse_the_callers_figures_and_draw_no_bootstrap_twice(monkeypatch):
    from pipeline.checks import duplicates
    from pipeline.model.metrics import binary_metrics
    labels = np.array([0, 1] * 50)
    prob = np.where(labels == 1, 0.8, 0.3)
    heldout, none = np.ones(100, bool), np.zeros(100, bool)
    given = binary_metrics(labels, prob)
    calls = []
    monkeypatch.setattr(duplicates, "binary_metrics", lambda *a, **k: calls.append(1) or binary_metrics(*a, **k))
    out = metrics_with_and_without(labels, prob, heldout, none, all_metrics=given)
    assert calls == [] and out["all"] is given and out["without_near_duplicates"] is given and out["n_removed"] == 0
    one = none.copy()
    one[3] = True
    out = metrics_with_and_without(labels, prob, heldout, one, all_metrics=given)
    assert len(calls) == 1 and out["without_near_duplicates"]["n"] == 99 and out["all"] is given
    assert metrics_with_and_without(labels, prob, heldout, none)["all"] == given  # the same figures when computed here
