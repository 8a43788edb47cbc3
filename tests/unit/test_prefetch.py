"""``ahead``: an iterator run in a thread ahead of its consumer yields the same items in the same
order (random draws included), hands its errors over, and stops when the consumer stops."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from pipeline.model.prefetch import ahead


def _draws(seed: int, n: int):
    rng = np.random.default_rng(seed)
    for _ in range(n):
        yield rng.integers(0, 1000, 3).tolist()


def test_items_and_their_random_draws_are_those_of_a_plain_loop():
    assert list(ahead(_draws(0, 200), depth=4)) == list(_draws(0, 200))


def test_the_producers_error_is_raised_in_the_consumer_after_the_items_before_it():
    def failing():
        yield 1
        yield 2
        raise OSError("disk gone")

    got = []
    with pytest.raises(OSError, match="disk gone"):
        for item in ahead(failing()):
            got.append(item)
    assert got == [1, 2]


def test_a_consumer_that_stops_early_stops_the_producer():
    produced = []

    def endless():
        while True:
            produced.append(1)
            yield len(produced)

    before = threading.active_count()
    for item in ahead(endless(), depth=2):
        if item == 3:
            break
    time.sleep(0.3)
    n = len(produced)
    time.sleep(0.3)
    assert len(produced) == n <= 3 + 2 + 1  # at most a queue's worth ahead, then nothing more
    assert threading.active_count() == before
