"""Where a run's wall time went: seconds per stage, and the share spent in the encoder's forward.

Stages are read off the runner's ``progress(stage, done, total)`` reports: a stage lasts from its
first report to the first report of the next one. The forward seconds are timed where the
encoder runs (``pipeline.model.stopwatch``). ``pipeline run`` records the result in ``meta.json ->
timing``; ``bench/run_time.py`` prints it (issue 27: >= 90% of a 10,000-image run in the forward).
"""
from __future__ import annotations

import time
from typing import Callable

Progress = Callable[[str, int, int], None]


class StageTimes:
    """Wrap a progress callback (:meth:`wrap`) to learn when each stage started."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.first: dict[str, float] = {}

    def wrap(self, progress: Progress | None) -> Progress:
        def report(stage: str, done: int, total: int) -> None:
            self.first.setdefault(stage, time.perf_counter())
            if progress:
                progress(stage, done, total)
        return report

    def seconds(self, until: float | None = None) -> dict[str, float]:
        """Seconds per stage in the order they started; the last one lasts until ``until`` (now)."""
        end = time.perf_counter() if until is None else until
        order = sorted(self.first, key=self.first.get)
        starts = [self.first[s] for s in order] + [end]
        return {s: starts[i + 1] - starts[i] for i, s in enumerate(order)}

    def summary(self, forward_seconds: float, forward_images: int) -> dict:
        """``meta.json -> timing``: the wall seconds so far, per stage, and the forward's share."""
        now = time.perf_counter()
        wall = now - self.started
        return {"seconds": round(wall, 3),
                # [stage, seconds] pairs in the order they ran (meta.json is written with sorted keys)
                "stages": [[s, round(t, 3)] for s, t in self.seconds(now).items()],
                "forward_seconds": round(forward_seconds, 3), "forward_images": int(forward_images),
                "forward_share": round(forward_seconds / wall, 4) if wall > 0 else None}


def timing_words(timing: dict | None) -> str | None:
    """"412 s, 91.3% in the encoder's forward (10,000 + 1,340 images; 27.5 images/s)" or None
    for runs made before the timing was recorded."""
    if not timing or not timing.get("seconds"):
        return None
    fwd, n = timing.get("forward_seconds") or 0.0, timing.get("forward_images") or 0
    rate = f"; {n / fwd:.1f} images/s in the forward" if fwd > 0 and n else ""
    return (f"{timing['seconds']:.0f} s, {timing.get('forward_share') or 0:.1%} of it in the encoder's "
            f"forward ({n:,} images{rate})")
