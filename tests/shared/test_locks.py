"""``pipeline.store.locks`` across real processes: overlapping requests compute each item once, a holder
killed with SIGKILL frees its lock at once, and an unusable lock folder is a clear error. (The
derived results built on them, explanations included: ``tests/unit/test_derived.py``.)"""
from __future__ import annotations

import multiprocessing as mp
import os
import signal
import time
from pathlib import Path

import pytest

from pipeline.store.locks import LockFolderError, Locks, each_once, once

ctx = mp.get_context("fork")


def _cached_square(folder: Path, log: Path, items: list[int]) -> dict[int, int]:
    """A cached getter: reads ``<folder>/<i>`` if there, else 'computes' it slowly and writes it."""
    out = {}
    for i in items:
        f = folder / str(i)
        if f.exists():
            out[i] = int(f.read_text())
            continue
        with open(log, "a") as fh:
            fh.write(f"{os.getpid()} {i}\n")
        time.sleep(0.15)
        tmp = folder / f".{i}.{os.getpid()}"
        tmp.write_text(str(i * i))
        tmp.replace(f)
        out[i] = i * i
    return out


def _worker(folder, log, items, start, results):
    start.wait(10)
    locks = Locks(folder / ".locks")
    got = each_once(locks, items, lambda sub: _cached_square(folder, log, sub), name=lambda i: f"sq-{i}")
    results.put(sorted(got.items()))


def test_overlapping_requests_compute_each_item_once(tmp_path):
    log = tmp_path / "computed.log"
    start = ctx.Event()
    results = ctx.Queue()
    asks = [[1, 2, 3, 4, 5, 6], [4, 5, 6, 7, 8], [6, 3, 9, 1]]
    procs = [ctx.Process(target=_worker, args=(tmp_path, log, a, start, results)) for a in asks]
    for p in procs:
        p.start()
    start.set()
    answers = sorted(results.get(timeout=60) for _ in procs)
    for p in procs:
        p.join(10)
    assert answers == sorted([(i, i * i) for i in sorted(set(a))] for a in asks)
    computed = [int(line.split()[1]) for line in log.read_text().splitlines()]
    assert sorted(computed) == list(range(1, 10))  # each of the 9 items once, over 3 processes
    assert len({line.split()[0] for line in log.read_text().splitlines()}) >= 2  # shared out


def _hold_forever(folder, held):
    with Locks(folder).hold("run-x"):
        held.set()
        time.sleep(600)


def test_a_holder_killed_with_sigkill_frees_the_lock(tmp_path):
    held = ctx.Event()
    p = ctx.Process(target=_hold_forever, args=(tmp_path, held))
    p.start()
    try:
        assert held.wait(20)
        with pytest.raises(TimeoutError, match="still held"):
            with Locks(tmp_path).hold("run-x", timeout=0.3):
                pass
        os.kill(p.pid, signal.SIGKILL)
        p.join(10)
        t0 = time.monotonic()
        with Locks(tmp_path).hold("run-x", timeout=5):
            assert time.monotonic() - t0 < 2
    finally:
        if p.is_alive():
            p.kill()
            p.join()


def test_once_waits_for_the_first_caller_and_reads_its_answer(tmp_path):
    log = tmp_path / "computed.log"
    start = ctx.Event()
    results = ctx.Queue()

    def body():
        start.wait(10)
        results.put(once(Locks(tmp_path / ".locks"), "sq-7",
                         lambda: _cached_square(tmp_path, log, [7])[7]))

    procs = [ctx.Process(target=body) for _ in range(3)]
    for p in procs:
        p.start()
    start.set()
    assert [results.get(timeout=30) for _ in procs] == [49, 49, 49]
    for p in procs:
        p.join(10)
    assert len(log.read_text().splitlines()) == 1


def test_unusable_lock_folder_is_a_clear_error(tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the lock folder should be")
    for folder in (blocker, blocker / "locks"):
        with pytest.raises(LockFolderError, match=f"cannot create the lock folder {folder}: "
                                                  f"a file is in the way"):
            with Locks(folder).hold("x"):
                pass
