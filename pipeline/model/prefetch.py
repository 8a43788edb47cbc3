"""Run an iterator ahead of its consumer in a thread, so that its work (Pillow drawing, file reads:
they release the GIL) overlaps the consumer's (the encoder's forward).

The iterator runs alone in its thread, in order, so anything it draws from a random generator is
drawn in the same sequence as in a plain loop: the items are the same, only earlier.
"""
from __future__ import annotations

import queue
import threading
from typing import Iterable, Iterator, TypeVar

T = TypeVar("T")
_END = object()


def ahead(items: Iterable[T], depth: int = 64) -> Iterator[T]:
    """Yield ``items`` in order, produced by a thread up to ``depth`` items in advance. An exception
    in the producer is raised here; if the consumer stops early (an error, a cancelled run), the
    producer stops at its next item."""
    out: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                out.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put((True, item)):
                    return
            put((True, _END))
        except BaseException as e:  # handed to the consumer, raised there
            put((False, e))

    thread = threading.Thread(target=produce, name="prefetch", daemon=True)
    thread.start()
    try:
        while True:
            ok, item = out.get()
            if not ok:
                raise item
            if item is _END:
                return
            yield item
    finally:
        stop.set()
        thread.join()
