"""On-disk artifacts: atomic writes, checksummed run folders, and :class:`RunStore`, their one owner.

A run folder (``<runs_dir>/<run_id>/``) holds everything the app's views need:

=====================  ==========================================================================
``meta.json``          run id, config, encoder info (and why CLIP was replaced, if it was), data
                       root and fingerprint, metrics, bad-file report, sha256 of every artifact
                       below (``checksums``)
``records.csv``        one row per usable image, row ``i`` = image index ``i``; the columns are
                       :data:`RECORD_FIELDS`: the scan's (``pipeline.data.scan.Record``: ``id``, stable,
                       from the path relative to the data root; ``path``, relative to the data
                       root; ``label``, 0 real / 1 fake; ``generator``; ``category``; ``source``;
                       ``split`` as preset; ``width``; ``height``; ``format``; ``bytes``) and the
                       run's (:data:`RUN_COLUMNS`: ``split``, train|heldout as used; ``prob_fake``;
                       ``pred``, 0/1; ``correct``, 0/1; ``cell``)
``embeddings.npy``     (N, D) float32 encoder embeddings
``features.npy``       (N, 256) float32 vision-only features (after the projection)
``z16.npy``            (N, 16) float32 distilled representation
``logit.npy``          (N,) float32 real/fake logit (> 0 means fake)
``cells.json``         cells of the representation view (see ``pipeline.represent.cells``)
``projection.pt``      projection weights; ``head.pt`` head weights (torch state dicts)
``facts.csv``          one row per image (row ``i`` = image ``i``): its file facts, read from the
                       headers at scan (``pipeline.data.filefacts.ROW_COLUMNS``: container format from
                       the bytes and from the extension, width, height, aspect, pixels, file size,
                       bytes per pixel, JPEG quality and tables, subsampling, progressive, EXIF,
                       camera make, software, ICC, mode, bit depth, DPI, text keys, generator hint)
``checks/``            the bias probe (``bias-probe.json``, on demand, sealed)
=====================  ===================================================================
``meta.json`` also holds ``checks`` (``pipeline.checks.validity``): ``duplicates`` (exact duplicates:
files under both labels, left out; files on both sides of the split, kept on the training side),
``shortcuts`` (how well each file fact predicts the label, flagged facts with reasons) and
``near_duplicates`` (held-out images close to a training image, metrics with and without them).
=======
``crossgen.json``      (once asked for: ``python -m pipeline matrix``) the cross-generator matrix
                       of the run, a derived file like ``relevance/``: written and read by
                       ``pipeline.generalise.run_matrix``, sealed (``pipeline.store.sealed``: a damaged one is
                       computed again), keyed by the checksums of ``features.npy`` and
                       ``records.csv`` and the head settings
``applied/<name>/``    (once asked for: ``python -m pipeline apply``) an applied set: other images
                       scored with this run's models, see below
=====================  ==========================================================================

An applied set (:class:`AppliedStore`, written by ``pipeline.generalise.apply``) is a folder of the same kind
inside its run, written atomically like a run (:func:`write_run`) and checked the same way:

=====================  ==========================================================================
``meta.json``          ``name``; ``run_id``; ``status``; ``key`` (the data's fingerprint and the
                       run's model fingerprint: an unchanged data set is not scored again);
                       ``data`` (root, manifest, fingerprint, ``n_images``, ``n_bad``, ``n_real``,
                       ``n_fake``, ``n_unlabelled``, ``labelled``: true when every image has a
                       label; ``n_embedded``: images not in the embedding cache, which went
                       through the encoder); ``bad_files`` (as a run's); ``metrics``: None without labels, else
                       the figures of ``pipeline.model.metrics.binary_metrics`` on the labelled images
                       with ``per_generator`` (the keys of a run's ``metrics.head``);
                       ``placement`` (how cells and positions were assigned, and how many images
                       lie farther from their cell than 95 % of the run's own images in it);
                       ``checksums``
``records.csv``        one row per usable image; columns :data:`APPLIED_FIELDS`: the scan's
                       (``label`` empty = not known, read as ``pipeline.data.scan.UNLABELLED`` = -1;
                       ``split`` is only the manifest's preset) and :data:`APPLIED_COLUMNS`:
                       ``prob_fake``; ``pred``; ``correct`` (empty / -1 without a label);
                       ``cell``, the run's cell whose 16-d centroid is nearest; ``x``, ``y``, the
                       image's position in the run's representation view, inside its cell's
                       glyph; ``distance``, to that centroid in the 16-d space; ``far``, 1 when it
                       exceeds the 95th percentile of the run's own images' distances in that cell
``z16.npy``            (N, 16) float32 distilled representation (the run's projection and head)
``logit.npy``          (N,) float32 real/fake logit
``cells.json``         the run's cells (same ``id``, ``x``, ``y``; ``run_r`` = the run's glyph
                       radius) with this set's tallies: ``n``, ``real_correct``, ``real_wrong``,
                       ``fake_correct``, ``fake_wrong``, ``unlabelled_pred_real``,
                       ``unlabelled_pred_fake``, ``n_far``, ``mean_confidence``,
                       ``mean_prob_fake`` and ``accuracy`` (None where they are undefined: a cell
                       with no applied image has ``n`` 0; ``accuracy`` is over labelled images)
=====================  ==========================================================================

Image ``i`` of an applied set is ``AppliedStore.image_path(i)`` (its own data root); its
``config()`` is its run's (the models that scored it). :func:`open_store` opens either kind of
folder, so readers that take a folder (``pipeline.explain.cache``, ``pipeline.model.run_models``, the app)
work on an applied set as on a run. Recomputing a run (a damaged file) replaces the run folder and
with it its applied sets and matrix.

Arrays are plain ``.npy`` so that ``numpy.load(..., mmap_mode="r")`` opens them without copying.
Every write goes to a temporary file in the same folder and is renamed into place, so a crash or a
kill never leaves a half-written artifact under its final name; :func:`write_run` builds a whole
run under a temporary folder name and renames it when complete.

Only :class:`RunStore` writes and reads these files. Each write records the artifact's sha256
(in ``meta.json`` once it exists), and each read checks it, so a damaged file is reported
(:class:`ArtifactError`), never used. Runs written by older versions read with defaults for the
columns and fields they lack.
"""
from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
import math
import os
import re
import shutil
import tempfile
import threading
import typing
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from pipeline.config import Config, from_dict
from pipeline.data.scan import UNLABELLED, PathRefused, Record, image_file
from pipeline.store.diskcheck import StorageError, reason

META, RECORDS, CELLS, FACTS = "meta.json", "records.csv", "cells.json", "facts.csv"
PROJECTION, HEAD = "projection.pt", "head.pt"
APPLIED, MATRIX = "applied", "crossgen.json"
APPLIED_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,79}")  # an applied set's folder name

# Columns the run adds to the scan's records (pipeline.data.scan.Record), with their defaults for
# records that lack them. ``split`` is the scan's preset split, replaced by the split used.
RUN_COLUMNS: dict[str, tuple[type, Any]] = {
    "split": (str, ""), "prob_fake": (float, math.nan), "pred": (int, 0), "correct": (int, 0),
    "cell": (int, -1),
}
_SCAN_TYPES = typing.get_type_hints(Record)
COLUMN_TYPES: dict[str, tuple[type, Any]] = {
    **{f.name: (_SCAN_TYPES[f.name], _SCAN_TYPES[f.name]() if f.default is dataclasses.MISSING
                else f.default) for f in dataclasses.fields(Record)},
    **RUN_COLUMNS,
}
RECORD_FIELDS = list(COLUMN_TYPES)

# An applied set's records: the scan's (a label may be missing) and what scoring adds.
APPLIED_COLUMNS: dict[str, tuple[type, Any]] = {
    "prob_fake": (float, math.nan), "pred": (int, 0), "correct": (int, -1), "cell": (int, -1),
    "x": (float, math.nan), "y": (float, math.nan), "distance": (float, math.nan), "far": (int, 0),
}
APPLIED_COLUMN_TYPES: dict[str, tuple[type, Any]] = {
    **{k: v for k, v in COLUMN_TYPES.items() if k not in RUN_COLUMNS or k == "split"},
    "label": (int, UNLABELLED), **APPLIED_COLUMNS,
}
APPLIED_FIELDS = list(APPLIED_COLUMN_TYPES)


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


def json_bytes(obj: Any) -> bytes:
    return json.dumps(obj, indent=1, sort_keys=True, default=json_default).encode()


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_bytes(path, json_bytes(obj))


def json_default(o):
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


def torch_bytes(obj: Any) -> bytes:
    import torch  # only runs with models need it

    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def records_csv_bytes(records: Iterable[dict], fields: list[str] = RECORD_FIELDS) -> bytes:
    """``records`` as CSV with the columns ``fields``; None is written as an empty cell."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for r in records:
        writer.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in fields})
    return buf.getvalue().encode("utf-8")


def parse_records_csv(text: str, types: dict[str, tuple[type, Any]] = COLUMN_TYPES) -> list[dict]:
    """Rows of a ``records.csv``, typed by ``types`` (a run's: :data:`COLUMN_TYPES`); missing
    columns and empty cells get the defaults."""
    rows = list(csv.DictReader(io.StringIO(text, newline="")))
    for r in rows:
        for name, (kind, default) in types.items():
            value = r.get(name)
            if value in (None, ""):
                r[name] = default
            elif kind is not str:
                r[name] = kind(float(value)) if kind is int else kind(value)
    return rows


def write_records_csv(path: str | Path, records: Iterable[dict]) -> None:
    atomic_write_bytes(path, records_csv_bytes(records))


def read_records_csv(path: str | Path) -> list[dict]:
    return parse_records_csv(Path(path).read_text(encoding="utf-8"))


# Files checked against their recorded sha256 in this process, remembered by (size, mtime), so a
# view that reads the same run again costs a stat, not a hash; a rewritten file is checked anew.
_verified: dict[str, tuple[int, int, str]] = {}
_verified_lock = threading.Lock()


class RunStore:
    """The one reader and writer of a run folder (format: module docstring).

    Writes are atomic and record the artifact's checksum; reads check it when the run recorded
    one (runs of older versions may not have), raising :class:`ArtifactError` for a damaged file.
    """

    column_types = COLUMN_TYPES  # the columns of records.csv

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._written: dict[str, str] = {}  # checksums of artifacts written before meta.json
        self._records: list[dict] | None = None  # for image_path
        self._root: Path | None = None

    @property
    def run_id(self) -> str:
        return self.path.name

    def exists(self) -> bool:
        return (self.path / META).exists()

    # -- metadata -------------------------------------------------------------------------------
    def read_meta(self) -> dict:
        try:
            return json.loads((self.path / META).read_text())
        except FileNotFoundError as e:
            raise ArtifactError(f"{self.path} is not a run folder (no meta.json)") from e
        except json.JSONDecodeError as e:
            raise ArtifactError(f"{self.path / META} is corrupted: {e}") from e

    def write_meta(self, meta: dict) -> None:
        """Write ``meta.json``, with the checksums of every artifact this store has written."""
        checksums = {**(meta.get("checksums") or {}), **self._written}
        atomic_write_json(self.path / META, {**meta, "checksums": checksums} if checksums else meta)

    def update_meta(self, **fields) -> dict:
        meta = self.read_meta() if self.exists() else {}
        meta.update(fields)
        self.write_meta(meta)
        return meta

    def config(self) -> Config:
        """The configuration the run was computed with (defaults for what it does not record)."""
        return from_dict(self.read_meta().get("config") or {})

    def data_root(self) -> Path:
        """The folder the run's image paths are relative to."""
        if self._root is None:
            root = (self.read_meta().get("data") or {}).get("root")
            if not root:
                raise ArtifactError(f"{self.path / META} names no data root (data.root)")
            self._root = Path(root)
        return self._root

    # -- writing artifacts ----------------------------------------------------------------------
    def _write(self, name: str, data: bytes) -> str:
        atomic_write_bytes(self.path / name, data)
        digest = hashlib.sha256(data).hexdigest()
        self._written[name] = digest
        if self.exists():  # an existing run amended: its meta.json keeps the checksum current
            self.write_meta(self.read_meta())
        return digest

    def save_array(self, name: str, arr: np.ndarray) -> str:
        """Write ``<name>.npy``; returns its sha256."""
        return self._write(f"{name}.npy", npy_bytes(arr))

    def write_records(self, records: list[dict]) -> str:
        self._records = None
        return self._write(RECORDS, records_csv_bytes(records, list(self.column_types)))

    def write_cells(self, cells: dict) -> str:
        return self._write(CELLS, json_bytes(cells))

    def write_facts(self, rows: list[dict]) -> str:
        """``facts.csv``: one ``pipeline.data.filefacts.FileFacts.to_row()`` per image."""
        from pipeline.data.filefacts import ROW_COLUMNS

        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=list(ROW_COLUMNS), extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        return self._write(FACTS, buf.getvalue().encode("utf-8"))

    def read_facts(self, verify: bool = True) -> list[dict] | None:
        """The file facts per image (``FileFacts.from_row`` reads a row back), or None for a run
        made before they were recorded."""
        if not (self.path / FACTS).exists():
            return None
        text = self._checked(FACTS, verify).read_text(encoding="utf-8")
        return list(csv.DictReader(io.StringIO(text, newline="")))

    def save_torch(self, name: str, obj: Any) -> str:
        """Write a torch object (a state dict) as ``name`` (e.g. :data:`HEAD`)."""
        return self._write(name, torch_bytes(obj))

    # -- reading artifacts ----------------------------------------------------------------------
    def _checked(self, name: str, verify: bool) -> Path:
        """Path of artifact ``name`` after checking it exists and matches its recorded sha256."""
        path = self.path / name
        if not path.exists():
            raise ArtifactError(f"{path} is missing")
        if not verify:
            return path
        expected = self._written.get(name) or ((self.read_meta().get("checksums") or {}).get(name)
                                               if self.exists() else None)
        if expected is None:  # a run of an older version, or a file it never checksummed
            return path
        st = path.stat()
        key = (st.st_size, st.st_mtime_ns, expected)
        with _verified_lock:
            if _verified.get(str(path)) == key:
                return path
        if sha256_file(path) != expected:
            raise ArtifactError(f"{path} fails its checksum (corrupted); recompute the run")
        with _verified_lock:
            _verified[str(path)] = key
        return path

    def load_array(self, name: str, mmap: bool = True, verify: bool = True) -> np.ndarray:
        path = self._checked(f"{name}.npy", verify)
        try:
            return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
        except (ValueError, OSError) as e:
            raise ArtifactError(f"{path} is unreadable: {e}") from e

    def has_array(self, name: str) -> bool:
        return (self.path / f"{name}.npy").exists()

    def read_records(self, verify: bool = True) -> list[dict]:
        """The image records (typed, defaults filled in); a fresh list the caller may change."""
        return parse_records_csv(self._checked(RECORDS, verify).read_text(encoding="utf-8"), self.column_types)

    def read_cells(self, verify: bool = True) -> dict:
        path = self._checked(CELLS, verify)
        try:
            return json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise ArtifactError(f"{path} is corrupted: {e}") from e

    def load_torch(self, name: str, verify: bool = True) -> Any:
        import torch

        path = self._checked(name, verify)
        try:
            return torch.load(path, weights_only=True)
        except Exception as e:  # torch raises many kinds for a damaged file
            raise ArtifactError(f"{path} is unreadable: {e}") from e

    # -- images ---------------------------------------------------------------------------------
    def image_path(self, index: int) -> Path:
        """The file of image ``index``: under the data root, links followed.

        Raises
        ------
        PathRefused
            The index is not an image of the run, or its record points outside the data root
            (an absolute path, ``..``, or a link that leaves it).
        """
        if self._records is None:
            self._records = self.read_records()
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
            raise PathRefused(f"image index must be an integer, got {index!r}")
        if not 0 <= int(index) < len(self._records):
            raise PathRefused(f"image index {index} is out of range (run has {len(self._records)} "
                              f"images)")
        return image_file(self.data_root(), self._records[int(index)]["path"], f"record {index}")

    # -- integrity ------------------------------------------------------------------------------
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

    # -- applied sets ---------------------------------------------------------------------------
    def applied(self, name: str) -> "AppliedStore":
        """The applied set ``name`` of this run (it may not exist yet).

        Raises
        ------
        ValueError
            ``name`` is not a plain folder name (letters, digits, ``_.-``; at most 80).
        """
        if not APPLIED_NAME.fullmatch(str(name)):
            raise ValueError(f"applied set name {name!r} must be letters, digits, '_', '.' or '-' "
                             f"(at most 80, not starting with '.' or '-')")
        return AppliedStore(self.path / APPLIED / name)

    def applied_sets(self) -> list["AppliedStore"]:
        """The complete applied sets of this run, by name."""
        folder = self.path / APPLIED
        if not folder.is_dir():
            return []
        sets = [AppliedStore(p) for p in sorted(folder.iterdir()) if APPLIED_NAME.fullmatch(p.name)]
        return [s for s in sets if s.exists() and s.read_meta().get("status") == "complete"]

    def write_applied(self, name: str, *, meta: dict, records: list[dict], cells: dict,
                      arrays: dict[str, np.ndarray]) -> "AppliedStore":
        """Write applied set ``name`` atomically (replacing an older one of that name)."""
        return write_run(self.applied(name).path, meta=meta, records=records, cells=cells, arrays=arrays,
                         kind=AppliedStore)


class AppliedStore(RunStore):
    """An applied set inside a run folder (format: module docstring): images scored with the
    run's models, read and written like a run (checksums, atomic folder) with its own columns."""

    column_types = APPLIED_COLUMN_TYPES

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def run(self) -> RunStore:
        return RunStore(self.path.parent.parent)

    def config(self) -> Config:
        """The configuration of the run whose models scored this set."""
        return self.run.config()


def is_applied_folder(path: str | Path) -> bool:
    """True when ``path`` is an applied set's folder: ``<run>/applied/<name>`` inside a run."""
    path = Path(path)
    return (path.parent.name == APPLIED and bool(APPLIED_NAME.fullmatch(path.name))
            and (path.parent.parent / META).is_file())


def open_store(path: str | Path) -> RunStore:
    """The store of a run folder, or an :class:`AppliedStore` for an applied set's folder."""
    return AppliedStore(path) if is_applied_folder(path) else RunStore(path)


def write_run(path: str | Path, *, meta: dict, records: list[dict], cells: dict,
              arrays: dict[str, np.ndarray], models: dict[str, Any] | None = None,
              facts: list[dict] | None = None, kind: type[RunStore] = RunStore) -> RunStore:
    """Write a complete run folder at ``path``, atomically: built as ``.<name>.partial`` beside
    it and renamed into place, so a crash never leaves a half run that looks finished.

    ``arrays``: name -> array (``<name>.npy``); ``models``: file name -> torch state; ``kind``: the
    store class (:class:`AppliedStore` for an applied set). An existing run at ``path`` is replaced.
    """
    path = Path(path)
    partial = kind(path.parent / f".{path.name}.partial")
    if partial.path.exists():
        shutil.rmtree(partial.path)
    partial.path.mkdir(parents=True)
    for name, arr in arrays.items():
        partial.save_array(name, arr)
    partial.write_records(records)
    partial.write_cells(cells)
    for name, state in (models or {}).items():
        partial.save_torch(name, state)
    if facts is not None:
        partial.write_facts(facts)
    partial.write_meta(meta)
    if path.exists():
        shutil.rmtree(path)
    partial.path.rename(path)
    return kind(path)


def list_runs(runs_dir: str | Path) -> list[RunStore]:
    runs_dir = Path(runs_dir)
    if not runs_dir.exists():
        return []
    runs = [RunStore(p) for p in runs_dir.iterdir() if (p / META).exists()]
    return sorted(runs, key=lambda r: (r.path / META).stat().st_mtime, reverse=True)
