"""Seconds spent in a piece of code, summed over every time it runs (``with watch: ...``).

The run records how much of its wall time went into the encoder's forward (``meta.json ->
timing``); the forward runs in several places (the data set's embedding, the projection's word
images), each of which times its own calls with the same watch.
"""
from __future__ import annotations

import time


class Stopwatch:
    """Accumulates the wall seconds of the blocks run under it; not re-entrant."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.items = 0  # what the timed blocks processed (images), counted by their caller
        self._started: float | None = None

    def add(self, seconds: float, items: int = 0) -> None:
        """Count time measured elsewhere (e.g. ``EmbedResult.forward_seconds``)."""
        self.seconds += seconds
        self.items += items

    def __enter__(self) -> "Stopwatch":
        self._started = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        self.seconds += time.perf_counter() - self._started
        self._started = None
