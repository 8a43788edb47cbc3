"""pipeline.represent.grid: similar items end up in neighbouring slots, each item exactly once."""
import numpy as np
import pytest
from scipy.stats import spearmanr

from pipeline.represent.grid import (arrange, assign_points_to_slots, embed_2d, grid_shape,
                           mean_neighbour_distance)


def _random_order(n, shape, rng):
    order = np.full(shape[0] * shape[1], -1)
    order[:n] = rng.permutation(n)
    return order.reshape(shape)


def test_grid_shape_fits_and_follows_aspect():
    assert grid_shape(0) == (0, 0)
    assert grid_shape(1) == (1, 1)
    assert grid_shape(10) == (3, 4)
    assert grid_shape(8, aspect=2.0) == (2, 4)
    for n in (1, 7, 100, 1001):
        rows, cols = grid_shape(n)
        assert rows * cols >= n and (rows - 1) * cols < n


def test_exact_assignment_recovers_points_placed_on_slot_centres():
    rng = np.random.default_rng(0)
    rows, cols = 4, 6
    sy, sx = np.mgrid[0:rows, 0:cols]
    centres = np.column_stack([sx.ravel() + 0.5, sy.ravel() + 0.5])
    perm = rng.permutation(rows * cols)
    order = assign_points_to_slots(centres[perm], rows, cols)
    # point j sits on slot perm[j]: the assignment must put it back there
    assert np.array_equal(order.ravel()[perm], np.arange(rows * cols))


@pytest.mark.parametrize("exact_limit", [10_000, 0], ids=["exact", "flas"])
def test_every_item_placed_once(exact_limit):
    z = np.random.default_rng(1).normal(size=(150, 16)).astype(np.float32)
    order = arrange(z, exact_limit=exact_limit)
    placed = order[order >= 0]
    assert sorted(placed.tolist()) == list(range(150))
    assert order.size - len(placed) < order.shape[1]  # holes only fill the last row


@pytest.mark.parametrize("exact_limit", [10_000, 0], ids=["exact", "flas"])
def test_a_gradient_is_laid_out_in_order(exact_limit):
    rng = np.random.default_rng(2)
    n = 200
    t = rng.permutation(n).astype(float)
    direction = rng.normal(size=16)
    z = np.outer(t, direction / np.linalg.norm(direction)) + rng.normal(scale=0.5, size=(n, 16))
    order = arrange(z, exact_limit=exact_limit, seed=0)
    # Neighbouring slots hold neighbouring values of t: far closer than in a random layout.
    random = _random_order(n, order.shape, rng)
    tt = t[:, None]
    assert mean_neighbour_distance(tt, order) < 0.3 * mean_neighbour_distance(tt, random)
    if exact_limit:  # the exact path lays the main axis along the grid's columns
        rows, cols = order.shape
        col_of = {int(i): s % cols for s, i in enumerate(order.ravel()) if i >= 0}
        assert abs(spearmanr(t, [col_of[i] for i in range(n)]).statistic) > 0.9


@pytest.mark.parametrize("exact_limit", [10_000, 0], ids=["exact", "flas"])
def test_two_clusters_form_two_regions_and_beat_a_random_layout(exact_limit):
    rng = np.random.default_rng(3)
    n = 160
    label = np.arange(n) % 2
    z = rng.normal(size=(n, 16)) + label[:, None] * 6.0
    order = arrange(z, exact_limit=exact_limit, seed=0)
    lab = np.where(order >= 0, label[np.maximum(order, 0)], -1)
    pairs = [(lab[:, :-1], lab[:, 1:]), (lab[:-1, :], lab[1:, :])]
    mixed = sum(int(((a != b) & (a >= 0) & (b >= 0)).sum()) for a, b in pairs)
    total = sum(int(((a >= 0) & (b >= 0)).sum()) for a, b in pairs)
    assert mixed / total < 0.15  # a random layout mixes about half of the pairs
    random = _random_order(n, order.shape, rng)
    assert mean_neighbour_distance(z, order) < 0.6 * mean_neighbour_distance(z, random)


def test_tiny_and_degenerate_inputs():
    assert arrange(np.zeros((0, 16))).shape == (0, 0)
    assert arrange(np.ones((1, 16))).tolist() == [[0]]
    order = arrange(np.ones((3, 16)))  # identical items: any placement, but each once
    assert sorted(order[order >= 0].tolist()) == [0, 1, 2]
    assert np.all(embed_2d(np.ones((5, 16))) == 0)
    with pytest.raises(ValueError):
        arrange(np.ones(16))
