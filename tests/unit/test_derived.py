"""The one mechanism for a run's derived results (``pipeline.store.derived``): computed once across
processes, read back without computing, recomputed when the models change or the file is damaged."""
import multiprocessing as mp
import threading
import time
from pathlib import Path

import pytest

from pipeline.store.derived import Cancelled, Derived, get_each, model_fingerprint
from pipeline.store.locks import run_locks
from pipeline.store.sealed import read_sealed


def _answer(run: Path, counter: Path, pause: float = 0.0) -> dict:
    """A result whose every computation is counted (one line per call, in any process)."""
    def compute(progress):
        with open(counter, "a") as f:
            f.write("computed\n")
        time.sleep(pause)
        if progress is not None:
            progress(1, 1)
        return {"value": 42}

    return Derived(run, "checks/answer.json", {"v": 1, "n": 8}).get(compute)


def _computations(counter: Path) -> int:
    return len(counter.read_text().splitlines()) if counter.exists() else 0


def _in_a_process(run, counter, start, out):
    while time.time() < start:  # both processes ask at (nearly) the same moment
        time.sleep(0.001)
    out.put(_answer(Path(run), Path(counter), pause=0.5))


def test_two_processes_asking_at_once_compute_once_and_get_the_same_answer(make_fake_run, tmp_path):
    run, counter = make_fake_run(n_images=8, n_cells=2), tmp_path / "counter"
    ctx = mp.get_context("fork")
    out = ctx.Queue()
    start = time.time() + 0.3
    procs = [ctx.Process(target=_in_a_process, args=(str(run), str(counter), start, out)) for _ in range(2)]
    for p in procs:
        p.start()
    answers = [out.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert _computations(counter) == 1
    assert answers[0] == answers[1] and answers[0]["value"] == 42


def test_a_second_call_reads_the_sealed_file_without_computing(make_fake_run, tmp_path):
    run, counter = make_fake_run(n_images=8, n_cells=2), tmp_path / "counter"
    first = _answer(run, counter)
    assert read_sealed(run / "checks" / "answer.json") is not None  # kept, sealed
    assert _answer(run, counter) == first and _computations(counter) == 1
    # the key is that of the model fingerprint and the inputs: other inputs are another result
    assert Derived(run, "checks/answer.json", {"v": 1, "n": 9}).read() is None
    assert Derived(run, "checks/answer.json", {"v": 1, "n": 8}).read() == first


def test_a_changed_model_fingerprint_recomputes(make_fake_run, tmp_path):
    run, counter = make_fake_run(n_images=8, n_cells=2), tmp_path / "counter"
    before = model_fingerprint(run)
    _answer(run, counter)
    (run / "head.pt").write_bytes(b"another head")  # the run's head changed
    assert model_fingerprint(run) != before
    _answer(run, counter)
    assert _computations(counter) == 2
    _answer(run, counter)
    assert _computations(counter) == 2  # the new answer is kept in turn
    # a result that does not depend on the models keeps its key
    free = Derived(run, "m.json", {"v": 1}, model=False)
    (run / "head.pt").write_bytes(b"a third head")
    assert Derived(run, "m.json", {"v": 1}, model=False).key == free.key


@pytest.mark.parametrize("damage", ["flip", "truncate", "unsealed"])
def test_a_corrupted_file_is_recomputed_not_trusted(make_fake_run, tmp_path, damage):
    run, counter = make_fake_run(n_images=8, n_cells=2), tmp_path / "counter"
    _answer(run, counter)
    path = run / "checks" / "answer.json"
    blob = path.read_bytes()
    data = read_sealed(path)
    path.write_bytes({"flip": blob.replace(b"42", b"43"), "truncate": blob[: len(blob) // 2],
                      "unsealed": data.replace(b"42", b"43")}[damage])
    assert Derived(run, "checks/answer.json", {"v": 1, "n": 8}).read() is None
    assert _answer(run, counter)["value"] == 42 and _computations(counter) == 2
    assert read_sealed(path) is not None  # written again, intact


def test_a_result_naming_damaged_files_is_recomputed(make_fake_run, tmp_path):
    run = make_fake_run(n_images=8, n_cells=2)
    side = run / "side.txt"

    def result():
        return Derived(run, "with-side.json", {"v": 1}, valid=lambda v: side.exists())

    calls = []

    def compute(progress):
        calls.append(1)
        side.write_text("x")
        return {"ok": True}

    result().get(compute)
    result().get(compute)
    assert len(calls) == 1
    side.unlink()  # the file the result names is gone: the result is not trusted
    result().get(compute)
    assert len(calls) == 2


def test_a_cancelled_waiter_stops_waiting_and_a_cancelled_computation_writes_nothing(make_fake_run):
    run = make_fake_run(n_images=8, n_cells=2)
    result = Derived(run, "slow.json", {"v": 1})
    with run_locks(run).hold(result.name):  # another process is computing it
        t0 = time.time()
        with pytest.raises(Cancelled):
            result.get(lambda p: {"never": True}, should_cancel=lambda: time.time() - t0 > 0.3)
        assert time.time() - t0 < 5

    def compute(progress):
        progress(0, 1)  # the caller's progress, checked for cancel first
        return {"never": True}

    with pytest.raises(Cancelled):
        result.get(compute, progress=lambda d, t: None, should_cancel=lambda: True)
    assert result.read() is None and not result.path.exists()


def test_get_each_computes_only_what_is_missing_and_keeps_each_answer(make_fake_run):
    run = make_fake_run(n_images=8, n_cells=2)

    def results():
        return {i: Derived(run, f"items/{i}.json", {"item": i}) for i in range(4)}

    asked, seen = [], []

    def compute(items, progress):
        asked.append(list(items))
        for n, i in enumerate(items, start=1):
            if i == 3:
                continue  # an item that cannot be done is left out
            progress(n, len(items))
            yield i, {"square": i * i}

    got = get_each(results(), compute, progress=lambda d, t: seen.append((d, t)))
    assert {i: v["square"] for i, v in got.items()} == {0: 0, 1: 1, 2: 4}
    assert asked == [[0, 1, 2, 3]] and seen[0] == (0, 4) and seen[-1] == (3, 4)
    seen.clear()
    got2 = get_each(results(), compute, progress=lambda d, t: seen.append((d, t)))
    assert got2 == got and asked[-1] == [3] and seen[0] == (3, 4)  # only the missing one again


def test_get_each_computes_free_items_at_once_and_waits_for_held_ones(make_fake_run):
    """Items nobody holds are computed together at once; an item another process is computing is
    waited for, then read if that process kept it (computed here only if it did not); progress
    counts the whole request, duplicates once."""
    run = make_fake_run(n_images=8, n_cells=2)
    results = {i: Derived(run, f"items/{i}.json", {"item": i}) for i in (4, 2, 3)}
    calls, seen = [], []

    def compute(items, progress):
        calls.append(list(items))
        for n, i in enumerate(items, start=1):
            progress(n, len(items))
            yield i, {"square": i * i}

    held, release = threading.Event(), threading.Event()

    def other():  # "another process" computing item 4: holds its lock, then keeps its answer
        with run_locks(run).hold(results[4].name):
            held.set()
            release.wait(10)
            results[4].write({"square": 16, "by": "other"})

    holder = threading.Thread(target=other)
    holder.start()
    assert held.wait(10)
    threading.Timer(0.3, release.set).start()
    got = get_each(results, compute, progress=lambda d, t: seen.append((d, t)))
    holder.join(10)
    assert calls == [[2, 3]]  # the free ones at once; the held one was read, not computed
    assert got[4]["by"] == "other" and {i: v["square"] for i, v in got.items()} == {4: 16, 2: 4, 3: 9}
    assert list(got) == [4, 2, 3]  # in the order asked
    assert seen[-1] == (3, 3) and all(t == 3 for _, t in seen)

    # a holder that ended before keeping its answer: the waiter computes it after all
    results = {5: Derived(run, "items/5.json", {"item": 5})}
    held.clear()

    def gave_up():
        with run_locks(run).hold(results[5].name):
            held.set()
            time.sleep(0.3)

    holder = threading.Thread(target=gave_up)
    holder.start()
    assert held.wait(10)
    assert get_each(results, compute, progress=lambda d, t: None)[5]["square"] == 25 and calls[-1] == [5]
    holder.join(10)


def test_get_each_stops_waiting_for_a_held_item_when_cancelled(make_fake_run):
    run = make_fake_run(n_images=8, n_cells=2)
    results = {1: Derived(run, "items/1.json", {"item": 1}), 2: Derived(run, "items/2.json", {"item": 2})}
    cancel = threading.Event()

    def compute(items, progress):
        for i in items:
            yield i, {"square": i * i}

    with run_locks(run).hold(results[2].name):  # another process is computing item 2
        threading.Timer(0.3, cancel.set).start()
        t0 = time.time()
        with pytest.raises(Cancelled):
            get_each(results, compute, should_cancel=cancel.is_set)
        assert time.time() - t0 < 5
    assert results[1].read() == {"square": 1, "key": results[1].key}  # the free one was kept
    assert results[2].read() is None
