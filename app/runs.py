"""Read-only view of one run folder, in the shapes the views need (numpy columns, cell members).

A :class:`RunView` is built once per run and kept by :class:`app.context.AppContext` (keyed by the
run's ``meta.json`` modification time, so a rewritten run is reloaded).
"""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipeline.store import ArtifactError, RunStore, list_runs
from pipeline.thumbnails import RunImages

from .figures import CellArrays

RUN_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


def valid_run_id(run_id: object) -> bool:
    """A run id that can only name a folder directly inside the runs folder."""
    return isinstance(run_id, str) and bool(RUN_ID_PATTERN.match(run_id)) and ".." not in run_id


def run_choices(runs_path: Path) -> list[dict]:
    """Dropdown options for the runs under ``runs_path`` (newest first), each with who started it
    when it was started on the shared server; unfinished runs disabled."""
    options = []
    for store in list_runs(runs_path):
        try:
            meta = store.read_meta()
        except ArtifactError:
            continue
        status = meta.get("status", "?")
        n = (meta.get("data") or {}).get("n_images", "?")
        enc = (meta.get("encoder") or {}).get("name", "?")
        label = f"{store.run_id} · {n} images · {enc}"
        if meta.get("started_by"):
            label += f" · by {meta['started_by']}"
        if status != "complete":
            label += f" · {status}"
        options.append({"label": label, "value": store.run_id, "disabled": status != "complete"})
    return options


@dataclass
class RunView:
    """Columns of a run's records and its cells, loaded once."""

    run_id: str
    path: Path
    meta: dict
    cells: dict
    records: list[dict]
    label: np.ndarray  # (N,) 0 real / 1 fake
    pred: np.ndarray  # (N,) 0 / 1
    prob: np.ndarray  # (N,) probability of fake
    correct: np.ndarray  # (N,) bool
    cell: np.ndarray  # (N,) cell id
    images: RunImages
    members: dict[int, np.ndarray] = field(default_factory=dict)  # cell id -> image indices

    @classmethod
    def load(cls, run_dir: Path, cache_root: Path) -> "RunView":
        store = RunStore(run_dir)
        meta = store.read_meta()
        # the readers check each file's checksum: a corrupted one is reported (ArtifactError)
        cells = store.read_cells()
        records = store.read_records()
        store.load_array("z16")
        n = len(records)

        def col(name, dtype):  # the store fills in defaults for columns older runs lack
            return np.array([r[name] for r in records], dtype=dtype)

        cell = col("cell", np.int64)
        order = np.argsort(cell, kind="stable")
        bounds = np.searchsorted(cell[order], np.unique(cell), side="left")
        ends = list(bounds[1:]) + [n]
        members = {int(cell[order[b]]): order[b:e] for b, e in zip(bounds, ends)}
        return cls(run_id=store.run_id, path=store.path, meta=meta, cells=cells, records=records,
                   label=col("label", np.int8), pred=col("pred", np.int8),
                   prob=col("prob_fake", np.float64), correct=col("correct", np.int8).astype(bool),
                   cell=cell,
                   images=RunImages(run_dir, cache_root), members=members)

    @functools.cached_property
    def cell_arrays(self) -> CellArrays:
        """The cells as arrays, computed once per loaded run (the zoom callback needs them)."""
        return CellArrays.of(self.cells)

    @property
    def n_images(self) -> int:
        return len(self.records)

    def cell_ids(self) -> list[int]:
        return [int(c["id"]) for c in self.cells.get("cells", [])]

    def cell_info(self, cell_id: int) -> dict | None:
        return next((c for c in self.cells.get("cells", []) if int(c["id"]) == int(cell_id)), None)

    def cell_members(self, cell_id: int) -> np.ndarray:
        """Indices of the images of ``cell_id`` (ascending), empty for an unknown cell."""
        return self.members.get(int(cell_id), np.zeros(0, dtype=np.int64))

    def z16(self) -> np.ndarray:
        return RunStore(self.path).load_array("z16", mmap=True)

    def file_name(self, index: int) -> str:
        return Path(self.records[index]["path"]).name

    def cache_key(self) -> str:
        """Identity of this run's content (run id + creation time) for app-side caches."""
        created = str(self.meta.get("created", ""))
        return re.sub(r"[^A-Za-z0-9_.-]", "", f"{self.run_id}-{created}")[:160]
