"""Cross-generator matrix on synthetic features with a known answer.

Generators A and B make fakes that differ from reals along one direction u, C along an orthogonal
direction v: what a head learns on A must carry over to B and not to C.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from pipeline.config import HeadConfig
from pipeline.generalise.crossgen import cross_generator_matrix
from pipeline.model.head import DistilledHead, HeadModule, orthogonality_penalty
from pipeline.model.metrics import binary_metrics
from pipeline.data.splits import validation_mask
from pipeline.generalise.stacked_heads import _gradients, fit_stacked

DIM, SHIFT = 16, 3.0
CONFIG = HeadConfig(lr=1e-2, max_epochs=150, patience=10)


def synthetic(n_per_class=300, shared_reals=False, seed=0):
    """Reals N(0, I) and fakes N(SHIFT * direction, I) per generator; 70 % train, 30 % held out per
    (generator, class). ``shared_reals``: reals carry no generator (a manifest naming fakes only)."""
    rng = np.random.default_rng(seed)
    u, v = np.eye(DIM)[0], np.eye(DIM)[1]
    xs, ys, gens, splits = [], [], [], []
    for name, direction in (("A", u), ("B", u), ("C", v)):
        for label in (0, 1):
            xs.append(rng.normal(size=(n_per_class, DIM)) + label * SHIFT * direction)
            ys += [label] * n_per_class
            gens += ["" if shared_reals and label == 0 else name] * n_per_class
            held = rng.permutation(n_per_class) < int(0.3 * n_per_class)
            splits += ["heldout" if h else "train" for h in held]
    return np.concatenate(xs).astype(np.float32), np.array(ys), gens, splits


@pytest.fixture(scope="module")
def data():
    return synthetic()


@pytest.fixture(scope="module")
def matrix(data):
    return cross_generator_matrix(*data, head_config=CONFIG, seed=0)


def separate_head(x, y, rows, seed=0):
    """One DistilledHead fitted on ``rows`` as the matrix does it, without the stacking."""
    val = validation_mask(y, rows, CONFIG.validation_fraction, seed)
    return DistilledHead.from_config(CONFIG, seed=seed).fit(x[rows[~val]], y[rows[~val]], x[rows[val]],
                                                            y[rows[val]])


def rows_of(gens, splits, members, split):
    return np.flatnonzero(np.isin(gens, members) & (np.array(splits) == split))


def test_what_is_learned_on_one_generator_carries_over_along_its_direction_only(matrix):
    one, abo = matrix["one"], matrix["all_but_one"]
    assert matrix["generators"] == ["A", "B", "C"]
    assert one["A"]["A"]["auc"] > 0.95 and one["A"]["B"]["auc"] > 0.95
    assert abs(one["A"]["C"]["auc"] - 0.5) < 0.15
    assert one["C"]["C"]["auc"] > 0.95 and abs(one["C"]["A"]["auc"] - 0.5) < 0.15
    # trained on A and B (direction u only), the unseen C is missed; left-out A is covered by B
    assert abs(abo["C"]["C"]["auc"] - 0.5) < 0.15 and abo["C"]["A"]["auc"] > 0.95
    assert abo["A"]["A"]["auc"] > 0.85  # B teaches u; C's direction adds noise
    # C's fakes look like reals to an A head: its fakes are mostly called real, its reals stay real
    assert one["A"]["C"]["fake_accuracy"] < 0.35 and one["A"]["C"]["real_accuracy"] > 0.8
    assert matrix["reals"].startswith("own") and matrix["skipped"] == {"one": {}, "all_but_one": {}}
    assert matrix["head"]["kind"] == "DistilledHead" and matrix["head"]["config"]["max_epochs"] == 150
    json.dumps(matrix, allow_nan=False)


def test_diagonal_equals_the_in_distribution_head(data, matrix):
    x, y, gens, splits = data
    for g in ("A", "B", "C"):
        head = separate_head(x, y, rows_of(gens, splits, [g], "train"))
        test = rows_of(gens, splits, [g], "heldout")
        expected = binary_metrics(y[test], head.predict_proba(x[test]))
        cell = matrix["one"][g][g]
        assert cell["n_test"] == len(test) == 180
        assert cell["accuracy"] == expected["accuracy"] and cell["real_accuracy"] == expected["real_accuracy"]
        assert cell["auc"] == pytest.approx(expected["auc"], abs=1e-6)
        assert matrix["heads"]["one"][g]["epochs"] == head.epochs_


def test_misclassified_are_exactly_the_heldout_rows_predicted_wrong(data, matrix):
    x, y, gens, splits = data
    names = ["A", "B", "C"]
    for table in ("one", "all_but_one"):
        for g in names:
            members = [g] if table == "one" else [m for m in names if m != g]
            prob = separate_head(x, y, rows_of(gens, splits, members, "train")).predict_proba(x)
            for t in names:
                test = rows_of(gens, splits, [t], "heldout")
                wrong = test[(prob[test] > 0.5) != (y[test] == 1)]
                cell = matrix[table][g][t]
                assert cell["misclassified"] == wrong.tolist() and cell["n_misclassified"] == len(wrong)
                n_wrong_real = int((y[cell["misclassified"]] == 0).sum())
                assert cell["real_accuracy"] == pytest.approx(1 - n_wrong_real / cell["n_real"])
    # the off-direction pairs do have errors to list, the in-distribution ones few
    assert matrix["one"]["A"]["C"]["n_misclassified"] > 20 > matrix["one"]["A"]["A"]["n_misclassified"]


def test_reals_without_a_generator_are_shared_by_every_set():
    x, y, gens, splits = synthetic(shared_reals=True)
    m = cross_generator_matrix(x, y, gens, splits, head_config=CONFIG)
    held_reals = int(((y == 0) & (np.array(splits) == "heldout")).sum())
    train_reals = int(((y == 0) & (np.array(splits) == "train")).sum())
    assert m["reals"].startswith("shared") and m["real_source"]["C"] == {"train": "shared", "heldout": "shared"}
    for g in ("A", "B", "C"):
        fakes = lambda split: int(((y == 1) & (np.array(gens) == g) & (np.array(splits) == split)).sum())
        assert m["one"]["A"][g]["n_test"] == fakes("heldout") + held_reals
        assert m["one"]["A"][g]["n_real"] == held_reals
        assert m["heads"]["one"][g]["n_fit"] + m["heads"]["one"][g]["n_val"] == fakes("train") + train_reals
    assert m["one"]["A"]["B"]["auc"] > 0.95 and abs(m["one"]["A"]["C"]["auc"] - 0.5) < 0.15


def test_stacked_heads_follow_separate_fits():
    """Different set sizes (3 vs 1 batches per epoch), one head stopped early, one at max_epochs."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(900, DIM)).astype(np.float32)
    y = (x[:, 0] + 0.5 * rng.normal(size=900) > 0).astype(int)
    y[700:] = rng.integers(0, 2, 200)  # the second head's labels are noise: it must stop early
    sets = [(np.arange(0, 600), np.arange(600, 700)), (np.arange(700, 850), np.arange(850, 900))]
    settings = dict(max_epochs=30, patience=5, batch_size=256, lr=1e-2, weight_decay=0.5, ortho_weight=0.5)
    template = DistilledHead(**settings)  # large decay and penalty: a mistake in either shows
    calls = []
    stacked = fit_stacked(template, x, y, sets, progress=lambda d, t: calls.append((d, t)))
    for head, (fit, val) in zip(stacked, sets):
        alone = DistilledHead(**settings).fit(x[fit], y[fit], x[val], y[val])
        assert head.epochs_ == alone.epochs_
        assert head.history_ == pytest.approx(alone.history_, abs=1e-5)
        np.testing.assert_allclose(head.predict_proba(x), alone.predict_proba(x), atol=1e-5)
    assert stacked[0].epochs_ == 30 and stacked[1].epochs_ < 30
    calls.clear()
    in_threads = fit_stacked(template, x, y, sets, workers=2, progress=lambda d, t: calls.append((d, t)))
    assert calls[-1] == (60, 60)  # one head per thread: the same heads
    for a, b in zip(stacked, in_threads):
        assert a.epochs_ == b.epochs_ and np.allclose(a.predict_proba(x), b.predict_proba(x), atol=1e-6)
    assert calls[-1] == (60, 60) and [d for d, _ in calls] == sorted(d for d, _ in calls)


def test_written_out_gradients_equal_autograd_of_the_heads_loss():
    """Per head: BCE with its pos_weight over its own (unpadded) rows + ortho_weight x penalty."""
    torch.manual_seed(0)
    heads, width, d, k = 3, 7, 10, 4
    params = [torch.randn(heads, k, d), torch.randn(heads, k), torch.randn(heads, 1, k), torch.randn(heads, 1)]
    xs, y = torch.randn(heads, width, d), (torch.rand(heads, width) > 0.5).float()
    counts = torch.tensor([7.0, 5.0, 2.0])
    mask = (torch.arange(width)[None, :] < counts[:, None]).float()
    pos_weight = torch.tensor([[0.5], [1.0], [3.0]])
    grads = _gradients(params, xs, y, mask / counts[:, None], pos_weight, 0.3)
    for h in range(heads):
        module = HeadModule(d, k)
        module.load_state_dict({"mean": torch.zeros(d), "std": torch.ones(d), "to16.weight": params[0][h],
                                "to16.bias": params[1][h], "classifier.weight": params[2][h],
                                "classifier.bias": params[3][h]})
        n = int(counts[h])
        loss = torch.nn.functional.binary_cross_entropy_with_logits(
            module(xs[h, :n])[1], y[h, :n], pos_weight=pos_weight[h, 0])
        loss = loss + 0.3 * orthogonality_penalty(module.to16.weight)
        expected = torch.autograd.grad(loss, list(module.parameters()))
        for got, want in zip(grads, expected):
            torch.testing.assert_close(got[h], want, atol=1e-5, rtol=1e-5)


def test_degenerate_inputs_get_clear_messages(data):
    x, y, gens, splits = data
    only_a = np.isin(gens, ["A"])
    with pytest.raises(ValueError, match="at least 2 generators; found 1 \\(A\\)"):
        cross_generator_matrix(x[only_a], y[only_a], np.array(gens)[only_a], np.array(splits)[only_a], CONFIG)
    with pytest.raises(ValueError, match="one row per image \\(1799\\); got shape \\(1800, 16\\)"):
        cross_generator_matrix(x, y[:-1], gens, splits, CONFIG)
    with pytest.raises(ValueError, match="one entry per image"):
        cross_generator_matrix(x, y, gens[:-1], splits, CONFIG)
    with pytest.raises(ValueError, match="'train' or 'heldout'; found \\['test'\\]"):
        cross_generator_matrix(x, y, gens, ["test"] + list(splits[1:]), CONFIG)
    with pytest.raises(ValueError, match="0 \\(real\\) or 1 \\(fake\\); found \\[2\\]"):
        cross_generator_matrix(x, np.where(np.arange(len(y)) == 0, 2, y), gens, splits, CONFIG)

    # C's fakes all held out: its train-on-one row cannot be trained, the rest still is;
    # B's held-out reals removed: its column has one class, AUC undefined
    splits2 = np.array(splits, dtype=object)
    splits2[(np.array(gens) == "C") & (y == 1)] = "heldout"
    keep = ~((np.array(gens) == "B") & (y == 0) & (splits2 == "heldout"))
    m = cross_generator_matrix(x[keep], y[keep], np.array(gens)[keep], splits2[keep], CONFIG)
    assert m["one"]["C"] is None and "'C': no training fakes (all held out)" in m["skipped"]["one"]["C"]
    assert m["one"]["A"]["A"]["auc"] > 0.95 and m["all_but_one"]["A"]["C"] is not None
    cell = m["one"]["A"]["B"]
    assert cell["auc"] is None and cell["n_real"] == 0 and cell["accuracy"] == cell["fake_accuracy"] > 0.9
    assert any("held-out images of 'B' are all fakes" in n for n in m["notes"])
    json.dumps(m, allow_nan=False)


def test_each_pair_carries_its_95_percent_interval_and_the_text_shows_it():
    from pipeline.generalise.crossgen import score_cell
    from pipeline.generalise.run_matrix import _entry

    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 100)
    prob = np.clip(rng.normal(0.4 + 0.2 * y, 0.15), 0, 1)
    cell = score_cell(y, prob, np.arange(200))
    lo, hi = cell["ci95"]["auc"]
    assert lo < cell["auc"] < hi and 0.05 < hi - lo < 0.2
    assert _entry(cell, "auc") == f"{cell['auc']:.3f} [{lo:.2f}, {hi:.2f}]"
    assert _entry({"auc": 0.75}, "auc") == "0.750"  # a matrix kept before the intervals
