"""Locks that make an expensive computation run once when several processes ask for it at once.

Several analysts on one shared server (and several Celery workers, possibly on several machines
sharing the artifact folder) may ask for the same relevance maps, the same cell's concepts or the
same run at the same moment. Each computation writes its result to disk atomically and reads it
back when it is there, so the pattern is: take the computation's lock, then call the cached getter,
which now finds what another holder computed instead of computing it again.

The locks are files next to the artifacts they guard, locked with the kernel's ``flock`` through
`filelock <https://py-filelock.readthedocs.io>`_: a holder that dies (even by SIGKILL) releases its
lock at once, with no timeout to tune. Across machines the folder must be on a file system with
working locks (NFSv4, CephFS, Lustre with ``flock``); :class:`Locks` refuses to fall back to
unsafe lock-less behaviour.

``each_once`` handles requests for many items (images) where two requests may overlap: items
nobody else is computing are computed at once, in one batch; items held by another process are
waited for in sorted order (no deadlock) and then read from the cache.
"""
from __future__ import annotations

import hashlib
import re
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Callable, ContextManager, Iterable, Iterator, Mapping, TypeVar

import filelock

from pipeline.store.diskcheck import reason

K = TypeVar("K")
V = TypeVar("V")

LOCK_DIR_NAME = ".locks"  # inside a run folder: locks of that run's on-demand artifacts


class LockFolderError(OSError):
    """The folder meant to hold lock files cannot be created or written."""


class Locks:
    """Named inter-process locks, one lock file per name under ``folder``.

    Parameters
    ----------
    folder : path
        Where the lock files live (created when missing). Put it beside the artifacts the locks
        guard, so every process that writes those artifacts sees the same files.
    poll_interval : float
        Seconds between attempts while waiting for a lock held by another process.
    """

    def __init__(self, folder: str | Path, poll_interval: float = 0.05):
        self.folder = Path(folder)
        self.poll_interval = poll_interval

    def path(self, name: str) -> Path:
        """Lock file of ``name``: readable when short and plain, else hashed."""
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", name)
        if len(safe) > 80 or safe != name:
            safe = f"{safe[:40]}-{hashlib.sha256(name.encode()).hexdigest()[:16]}"
        return self.folder / f"{safe}.lock"

    def _lock(self, name: str) -> filelock.FileLock:
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise LockFolderError(e.errno, f"cannot create the lock folder {self.folder}: "
                                           f"{reason(e)}") from e
        return filelock.FileLock(str(self.path(name)), thread_local=False, fallback_to_soft=False,
                                 poll_interval=self.poll_interval)

    @contextmanager
    def hold(self, name: str, timeout: float | None = None) -> Iterator[None]:
        """Hold lock ``name`` for the ``with`` block, waiting for it (forever when ``timeout`` is None).

        Raises
        ------
        TimeoutError
            The lock was still held by another process after ``timeout`` seconds.
        """
        lock = self._lock(name)
        try:
            lock.acquire(timeout=-1 if timeout is None else timeout)
        except filelock.Timeout as e:
            raise TimeoutError(f"lock {name!r} ({lock.lock_file}) still held after {timeout} s") from e
        try:
            yield
        finally:
            lock.release()

    def try_hold(self, name: str) -> filelock.FileLock | None:
        """The acquired lock ``name`` if nobody holds it now, else None (never waits)."""
        lock = self._lock(name)
        try:
            lock.acquire(blocking=False)
        except filelock.Timeout:
            return None
        return lock


def each_once(locks: Locks, items: Iterable[K], compute: Callable[[list[K]], Mapping[K, V]],
              name: Callable[[K], str],
              wait: Callable[[str], ContextManager[None]] | None = None) -> dict[K, V]:
    """``compute(items)`` such that no item is computed by two processes at the same time.

    ``compute`` must be a cached getter: it returns the cached value of an item that is already on
    disk and computes (and caches) the others. First the items that no other process holds are
    locked and computed together; then the items another process was computing are locked in
    sorted order (waiting for that process) and passed to ``compute``, which now reads them from
    the cache (or computes them if that process died before finishing).

    Parameters
    ----------
    locks : where the item locks live.
    items : the items asked for (duplicates are ignored); they must sort.
    compute : ``compute(list of items) -> {item: value}``; items it cannot do may be left out.
    name : lock name of an item.
    wait : ``wait(lock name)``, a context manager that waits for and holds a lock another process
        holds (default ``locks.hold``; :func:`pipeline.store.derived.hold` also stops on cancel).

    Returns
    -------
    dict item -> value, as merged from the calls to ``compute``.
    """
    wanted = sorted(set(items))
    mine: list[K] = []
    busy: list[K] = []
    out: dict[K, V] = {}
    with ExitStack() as held:
        for item in wanted:
            lock = locks.try_hold(name(item))
            if lock is None:
                busy.append(item)
            else:
                held.callback(lock.release)
                mine.append(item)
        if mine:
            out.update(compute(mine))
    if busy:
        with ExitStack() as held:
            for item in busy:  # sorted: two waiters never hold what the other one waits for
                held.enter_context((wait or locks.hold)(name(item)))
            out.update(compute(busy))
    return out


def once(locks: Locks, name: str, compute: Callable[[], V]) -> V:
    """``compute()`` under lock ``name``: a second caller waits, then gets the cached answer."""
    with locks.hold(name):
        return compute()


def run_locks(run_dir: str | Path) -> Locks:
    """The locks of a run folder's on-demand artifacts (relevance maps, concepts, checks)."""
    return Locks(Path(run_dir) / LOCK_DIR_NAME)
