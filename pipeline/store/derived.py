"""One mechanism for a run's derived results: keyed, sealed, computed once across processes.

Relevance maps, their deletion check, a cell's concepts, the cross-generator matrix and the bias
probe are all "derived results" of a run: expensive to compute, cheap to read back, and valid only
for the inputs they were computed from. Each is a :class:`Derived`:

* its **key** is the hash of the inputs it depends on and, unless it does not depend on the run's
  models, the run's model fingerprint (:func:`model_fingerprint`); a kept file with another key is
  stale and is computed again;
* its **file** is sealed (:mod:`pipeline.store.sealed`) inside the run folder (or an applied set's
  folder), so a damaged file is recomputed, never trusted;
* its **lock** (:mod:`pipeline.store.locks`, in ``<run>/.locks``) makes concurrent callers, in any
  process, compute it once: the others wait, then read what the first one wrote.

A result that is one of many (one image's maps) goes through :func:`get_each`, which locks each
item (never two holders of one item) and writes each answer as soon as it is computed.

Progress and cancel pass through: ``compute`` receives the caller's ``progress`` wrapped so that
it raises :class:`Cancelled` once ``should_cancel()`` is true, and a caller waiting for another
process's lock stops waiting when cancelled. Nothing here imports torch (the app's web process
reads results through :meth:`Derived.read`).
"""
from __future__ import annotations

import json
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, Callable, Generic, Hashable, Iterable, Iterator, Mapping, TypeVar

from pipeline.store.locks import Locks, each_once, run_locks
from pipeline.store.run_store import (HEAD, PROJECTION, AppliedStore, RunStore, hash_obj, json_default,
                                      open_store, sha256_file)
from pipeline.store.sealed import read_sealed, write_sealed

V = TypeVar("V")
K = TypeVar("K", bound=Hashable)
Progress = Callable[..., None]
WAIT_POLL = 0.2  # seconds between cancel checks while another process holds the lock


class Cancelled(Exception):
    """Raised inside a computation (or a wait) once the caller's ``should_cancel()`` is true."""


def scoring_run(folder: str | Path) -> Path:
    """The run folder whose models score the images of ``folder``: the run itself, or the run of
    an applied set."""
    store = open_store(folder)
    return store.run.path if isinstance(store, AppliedStore) else Path(folder)


def model_fingerprint(run_dir: str | Path) -> str:
    """Changes when the encoder, the projection or the head of the run change (for an applied
    set's folder: of its run). Torch-free, so the web process can check a result's key."""
    run = scoring_run(run_dir)
    meta = RunStore(run).read_meta()
    parts = {"encoder": (meta.get("encoder") or {}).get("fingerprint")}
    for name in (PROJECTION, HEAD):
        parts[name] = _file_digest(run / name)
    return hash_obj(parts)[:16]


_digests: dict[str, tuple[int, int, str]] = {}  # path -> (size, mtime, sha256): the web process
# checks a result's key on every view, so an unchanged model file is hashed once per process


def _file_digest(path: Path) -> str | None:
    try:
        st = path.stat()
    except OSError:
        return None
    memo = _digests.get(str(path))
    if memo is not None and memo[:2] == (st.st_size, st.st_mtime_ns):
        return memo[2]
    digest = sha256_file(path)
    _digests[str(path)] = (st.st_size, st.st_mtime_ns, digest)
    return digest


# -- how a result is kept in its file ------------------------------------------------------------

def dump_json(value: dict, key: str) -> bytes:
    """A dict result with its key as one more field (the format of the JSON results)."""
    return json.dumps({**value, "key": key}, indent=1, sort_keys=True, default=json_default).encode()


def load_json(data: bytes, key: str) -> dict | None:
    try:
        saved = json.loads(data)
    except ValueError:  # sealed but not JSON: treat as damaged
        return None
    return saved if isinstance(saved, dict) and saved.get("key") == key else None


def checked_progress(progress: Progress | None, should_cancel: Callable[[], bool] | None
                     ) -> Progress | None:
    """``progress`` that first raises :class:`Cancelled` when ``should_cancel()`` is true."""
    if should_cancel is None:
        return progress

    def report(*args, **kwargs):
        if should_cancel():
            raise Cancelled("cancelled")
        if progress is not None:
            progress(*args, **kwargs)

    return report


class Derived(Generic[V]):
    """One derived result of a run: its key, its sealed file and its lock.

    Parameters
    ----------
    run_dir : path
        The run folder (or an applied set's folder) the result belongs to.
    name : str
        The file, relative to ``run_dir`` (e.g. ``"relevance/faithfulness.json"``); also the lock's
        name, so that two keys of one file never write it at the same time.
    inputs : dict
        JSON-able description of everything else the result depends on (config sections, sampled
        indices, file stats, a version number).
    model : bool or str
        True: the key includes the run's :func:`model_fingerprint`; a str: that fingerprint,
        already computed (many results of one call); False: the result does not depend on the
        run's models (the matrix trains its own heads).
    dump, load : callables
        ``dump(value, key) -> bytes`` and ``load(bytes, key) -> value or None`` (None: written for
        another key, or unreadable). Default: a dict with a ``"key"`` field, as JSON.
    valid : callable, optional
        ``valid(value) -> bool``: extra files the result names are intact (concept patches).
    """

    def __init__(self, run_dir: str | Path, name: str, inputs: Mapping[str, Any], *,
                 model: bool | str = True, dump: Callable[[Any, str], bytes] = dump_json,
                 load: Callable[[bytes, str], Any] = load_json,
                 valid: Callable[[Any], bool] | None = None):
        self.run = Path(run_dir)
        self.name = name
        self.path = self.run / name
        self.inputs = dict(inputs)
        fingerprint = model_fingerprint(self.run) if model is True else (model or None)
        # the same formula as the keys written before this class existed, so kept files stay valid
        self.key = hash_obj({**inputs, "model": fingerprint} if fingerprint else dict(inputs))
        self._dump, self._load, self._valid = dump, load, valid

    @property
    def locks(self) -> Locks:
        return run_locks(self.run)

    def read(self) -> V | None:
        """The kept result if its file is intact and was computed for this key, else None."""
        data = read_sealed(self.path)
        if data is None:
            return None
        try:
            value = self._load(data, self.key)
            if value is not None and self._valid is not None and not self._valid(value):
                return None
        except (ValueError, KeyError, TypeError, AttributeError, OSError):
            return None  # sealed but not in the expected shape: computed again, never trusted
        return value

    def write(self, value: V) -> V:
        """Keep ``value`` (atomically, sealed); returns it as a later :meth:`read` will."""
        data = self._dump(value, self.key)
        write_sealed(self.path, data)
        return self._load(data, self.key)

    def get(self, compute: Callable[[Progress | None], V], progress: Progress | None = None,
            should_cancel: Callable[[], bool] | None = None, recompute: bool = False) -> V:
        """The result: read if kept and current, else ``compute(progress)`` once, kept and returned.

        A caller that finds another (process or thread) computing it waits for the lock, then
        reads that answer. ``recompute`` computes it again even if a current one is kept.

        Raises
        ------
        Cancelled
            ``should_cancel()`` turned true while waiting or computing (nothing is written).
        """
        if not recompute and (value := self.read()) is not None:
            return value
        with hold(self.locks, self.name, should_cancel):
            # read again: the holder before us may have just written it
            if not recompute and (value := self.read()) is not None:
                return value
            return self.write(compute(checked_progress(progress, should_cancel)))


@contextmanager
def hold(locks: Locks, name: str, should_cancel: Callable[[], bool] | None = None) -> Iterator[None]:
    """Hold lock ``name``; while another holds it, stop waiting once ``should_cancel()`` is true."""
    if should_cancel is None:
        with locks.hold(name):
            yield
        return
    with ExitStack() as held:
        while True:
            if should_cancel():
                raise Cancelled(f"cancelled while waiting for {name}")
            try:
                held.enter_context(locks.hold(name, timeout=WAIT_POLL))
                break
            except TimeoutError:
                continue
        yield


def get_each(results: Mapping[K, Derived], compute: Callable[[list[K], Progress | None], Iterable[tuple[K, Any]]],
             progress: Progress | None = None, should_cancel: Callable[[], bool] | None = None
             ) -> dict[K, Any]:
    """Many results of one kind (one per item), each computed once across processes.

    Kept results are read; the others are locked per item (:func:`pipeline.store.locks.each_once`):
    items nobody else holds are computed together by ``compute(items, progress)``, which yields
    ``(item, value)`` pairs, each kept as soon as it comes; items another process holds are waited
    for and then read. Items ``compute`` leaves out (unreadable images) are left out of the answer.

    ``progress(done, total)`` counts items over the whole call, kept ones included; ``compute``'s
    progress is told ``(done, total)`` of its own items and shifted onto that count. Once
    ``should_cancel()`` is true, the next progress report (or the wait for an item another process
    holds) raises :class:`Cancelled`; items kept before that stay kept.
    """
    out: dict[K, Any] = {}
    todo: list[K] = []
    for item, result in results.items():
        value = result.read()
        if value is None:
            todo.append(item)
        else:
            out[item] = value
    total = len(results)
    report = checked_progress(progress, should_cancel)
    if report is not None:
        report(len(out), total)
    if not todo:
        return out
    locks = next(iter(results.values())).locks

    def compute_kept(items: list[K]) -> dict[K, Any]:
        got, need = {}, []
        for item in items:  # another holder may have written it while we waited
            value = results[item].read()
            if value is None:
                need.append(item)
            else:
                got[item] = value
        before = len(out) + len(got)
        step = (lambda done, _total, *rest: report(before + done, total)) if report is not None else None
        if need:
            for item, value in compute(need, step):
                got[item] = results[item].write(value)
        out.update(got)
        if report is not None:
            report(len(out), total)
        return got

    each_once(locks, todo, compute_kept, name=lambda item: results[item].name,
              wait=lambda name: hold(locks, name, should_cancel))
    return {item: out[item] for item in results if item in out}


__all__ = ["Cancelled", "Derived", "checked_progress", "dump_json", "get_each", "hold", "load_json",
           "model_fingerprint", "scoring_run"]
