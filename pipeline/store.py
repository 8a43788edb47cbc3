"""On-disk artifacts: atomic writes, checksummed run folders.

A run folder (``<runs_dir>/<run_id>/``) holds everything the app's views need:

=====================  ==========================================================================
``meta.json``          run id, config, encoder info (and why CLIP was replaced, if it was), data
                       root and fingerprint, metrics, bad-file report, sha256 of every array file
``records.csv``        one row per usable image, row ``i`` = image index ``i``: ``id`` (stable,
                       from the path relative to the data root), ``path`` (relative to the data
                       root), ``label`` (0 real / 1 fake), ``generator``, ``category``, ``source``,
                       ``width``, ``height``, ``format``, ``bytes``, ``split`` (train|heldout),
                       ``prob_fake``, ``pred`` (0/1), ``correct`` (0/1), ``cell``
``embeddings.npy``     (N, D) float32 encoder embeddings
``features.npy``       (N, 256) float32 vision-only features (after the projection)
``z16.npy``            (N, 16) float32 distilled representation
``logit.npy``          (N,) float32 real/fake logit (> 0 means fake)
``cells.json``         cells of the representation view (see ``pipeline.cells``)
``projection.pt``      projection weights; ``head.pt`` head weights (torch state dicts)
=====================  ==========================================================================

Arrays are plain ``.npy`` so that ``numpy.load(..., mmap_mode="r")`` opens them without copying.
Every write goes to a temporary file in the same folder and is renamed into place, so a crash or a
kill never leaves a half-written artifact under its final name.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from .diskcheck import StorageError, reason

RECORD_FIELDS = ["id", "path", "label", "generator", "category", "source", "width", "height",
                 "format", "bytes", "split", "prob_fake", "pred", "correct", "cell"]
_INT_FIELDS = {"label", "width", "height", "bytes", "pred", "correct", "cell"}
_FLOAT_FIELDS = {"prob_fake"}


class ArtifactError(RuntimeError):
    """An artifact is missing, unreadable or fails its checksum."""


def hash_obj(obj: Any) -> str:
    """Stable hex digest of a JSON-able object (artifact keys)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file; an existing file is never half-replaced.

    Raises
    ------
    StorageError
        The write failed (disk full, read-only, no permission, a file where a folder should be);
        the message names ``path`` and the cause. Nothing is left behind.
    """
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError) and not isinstance(e, StorageError):
            raise StorageError(e.errno, f"cannot write {path}: {reason(e)}") from e
        raise


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_bytes(path, json.dumps(obj, indent=1, sort_keys=True, default=_json_default).encode())


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o)}")


def npy_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(arr), allow_pickle=False)
    return buf.getvalue()


def atomic_save_npy(path: str | Path, arr: np.ndarray) -> str:
    """Write ``arr`` atomically; returns the sha256 of the file's bytes."""
    data = npy_bytes(arr)
    atomic_write_bytes(path, data)
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_records_csv(path: str | Path, records: Iterable[dict]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=RECORD_FIELDS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for r in records:
        writer.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in RECORD_FIELDS})
    atomic_write_bytes(path, buf.getvalue().encode("utf-8"))


def read_records_csv(path: str | Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    for r in rows:
        for k in _INT_FIELDS:
            if r.get(k) not in (None, ""):
                r[k] = int(r[k])
        for k in _FLOAT_FIELDS:
            if r.get(k) not in (None, ""):
                r[k] = float(r[k])
    return rows


class RunStore:
    """Read/write access to one run folder."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    @property
    def run_id(self) -> str:
        return self.path.name

    def exists(self) -> bool:
        return (self.path / "meta.json").exists()

    # -- metadata -------------------------------------------------------------------------------
    def read_meta(self) -> dict:
        try:
            return json.loads((self.path / "meta.json").read_text())
        except FileNotFoundError as e:
            raise ArtifactError(f"{self.path} is not a run folder (no meta.json)") from e
        except json.JSONDecodeError as e:
            raise ArtifactError(f"{self.path / 'meta.json'} is corrupted: {e}") from e

    def write_meta(self, meta: dict) -> None:
        atomic_write_json(self.path / "meta.json", meta)

    def update_meta(self, **fields) -> dict:
        meta = self.read_meta() if self.exists() else {}
        meta.update(fields)
        self.write_meta(meta)
        return meta

    # -- arrays ---------------------------------------------------------------------------------
    def save_array(self, name: str, arr: np.ndarray) -> str:
        return atomic_save_npy(self.path / f"{name}.npy", arr)

    def load_array(self, name: str, mmap: bool = True, expected_sha256: str | None = None) -> np.ndarray:
        path = self.path / f"{name}.npy"
        if not path.exists():
            raise ArtifactError(f"{path} is missing")
        if expected_sha256 is not None and sha256_file(path) != expected_sha256:
            raise ArtifactError(f"{path} fails its checksum (corrupted); recompute the run")
        try:
            return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
        except (ValueError, OSError) as e:
            raise ArtifactError(f"{path} is unreadable: {e}") from e

    def has_array(self, name: str) -> bool:
        return (self.path / f"{name}.npy").exists()

    # -- records and cells ----------------------------------------------------------------------
    def write_records(self, records: list[dict]) -> None:
        write_records_csv(self.path / "records.csv", records)

    def read_records(self) -> list[dict]:
        path = self.path / "records.csv"
        if not path.exists():
            raise ArtifactError(f"{path} is missing")
        return read_records_csv(path)

    def write_cells(self, cells: dict) -> None:
        atomic_write_json(self.path / "cells.json", cells)

    def read_cells(self) -> dict:
        try:
            return json.loads((self.path / "cells.json").read_text())
        except FileNotFoundError as e:
            raise ArtifactError(f"{self.path / 'cells.json'} is missing") from e

    def damaged(self, names: Iterable[str] | None = None) -> list[str]:
        """Files among ``meta["checksums"]`` (or just ``names`` of them) that are missing or fail
        their sha256; each entry says which file and why."""
        checksums = self.read_meta().get("checksums") or {}
        problems = []
        for name in (checksums if names is None else [n for n in names if n in checksums]):
            path = self.path / name
            if not path.exists():
                problems.append(f"{path} is missing")
            elif sha256_file(path) != checksums[name]:
                problems.append(f"{path} fails its checksum (corrupted)")
        return problems

    def subdir(self, name: str) -> Path:
        """A folder inside the run for on-demand artifacts (relevance maps, concepts, notes)."""
        d = self.path / name
        d.mkdir(parents=True, exist_ok=True)
        return d


def list_runs(runs_dir: str | Path) -> list[RunStore]:
    runs_dir = Path(runs_dir)
    if not runs_dir.exists():
        return []
    runs = [RunStore(p) for p in runs_dir.iterdir() if (p / "meta.json").exists()]
    return sorted(runs, key=lambda r: (r.path / "meta.json").stat().st_mtime, reverse=True)
