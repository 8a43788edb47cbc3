"""Read-only view of one run folder, in the shapes the views need (numpy columns, cell members).

A :class:`RunView` is built once per run and kept by :class:`app.state.context.AppContext` (keyed by the
run's ``meta.json`` modification time, so a rewritten run is reloaded).

An applied set (``pipeline.store.run_store.AppliedStore``: new images scored with a run) opens as a
pseudo-run with the id ``RUN@SET`` (:func:`applied_id`): its own records, ``z16``, thumbnails and
data root, the run's cells with the set's tallies (``cells.json``), and the run's encoder in
``meta`` (its images are explained with the run's models). ``parent_id`` and ``set_name`` say
which it is, so that every view can keep the run / applied-set distinction visible. Its images
may have no label (``label`` -1, ``labelled`` False): predictions only, no right or wrong.

The image view opens a cell or an image set (``"set:<hash>"``, :mod:`app.state.imagesets`);
:meth:`RunView.cell_info` and :meth:`RunView.cell_members` answer for both.
"""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipeline.explain.contributions import contributions, read_classifier_weight
from pipeline.store.run_store import APPLIED_NAME, AppliedStore, ArtifactError, RunStore, list_runs, open_store
from pipeline.represent.thumbnails import RunImages

from app.state import imagesets
from app.figures.applied import applied_cell_arrays
from app.figures.glyph_map import CellArrays
from app.state.filters import ImageColumns

RUN_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
APPLIED_SEP = "@"  # "RUN@SET": applied set SET of run RUN, opened as a pseudo-run
LABEL_WORDS = {0: "real", 1: "fake", -1: "unlabelled"}


def _dominant(values: np.ndarray) -> str:
    """The most common value and its share: "all PNG", "96% 512x512"."""
    uniq, counts = np.unique(values, return_counts=True)
    top = int(np.argmax(counts))
    share = counts[top] / len(values)
    return f"all {uniq[top]}" if share == 1 else f"{share:.0%} {uniq[top]}"


def split_run_id(run_id: str) -> tuple[str, str | None]:
    """``"RUN@SET"`` -> ``("RUN", "SET")``; a plain run id -> ``(run_id, None)``."""
    run, sep, name = str(run_id).partition(APPLIED_SEP)
    return (run, name) if sep else (run, None)


def applied_id(run_id: str, name: str) -> str:
    """The pseudo-run id of applied set ``name`` of run ``run_id``."""
    return f"{run_id}{APPLIED_SEP}{name}"


def valid_run_id(run_id: object) -> bool:
    """A run id that can only name a folder directly inside the runs folder, or ``RUN@SET``:
    applied set SET (a plain folder name) of such a run."""
    if not isinstance(run_id, str):
        return False
    run, name = split_run_id(run_id)
    plain = bool(RUN_ID_PATTERN.match(run)) and ".." not in run
    return plain and (name is None or bool(APPLIED_NAME.fullmatch(name)))


def applied_choices(store: RunStore) -> list[dict]:
    """Options for the applied sets of the run ``store``: ``RUN@SET`` values, complete sets only."""
    options = []
    for applied in store.applied_sets():
        try:
            data = applied.read_meta().get("data") or {}
        except ArtifactError:
            continue
        labels = "no labels" if not data.get("n_real") and not data.get("n_fake") else \
            f"{data.get('n_real', 0)} real, {data.get('n_fake', 0)} fake"
        options.append({"label": f"applied set {applied.name} · {data.get('n_images', '?')} images "
                                 f"({labels})", "value": applied_id(store.run_id, applied.name)})
    return options


def run_choices(runs_path: Path) -> list[dict]:
    """Dropdown options for the runs under ``runs_path`` (newest first), each followed by its
    applied sets and, when it was started on the shared server, with who started it; unfinished
    runs disabled."""
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
        if status == "complete":  # its applied sets, listed under it
            options += [{**o, "label": f"   ↳ {o['label']}"} for o in applied_choices(store)]
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
    cache_root: Path | None = None  # the app's cache folder (image sets live under app_dir)
    parent_id: str | None = None  # an applied set: the run whose models scored it
    set_name: str | None = None  # an applied set: its name
    parent_cells: dict | None = None  # an applied set: its run's cells.json (training tallies)

    @classmethod
    def load(cls, run_dir: Path, cache_root: Path) -> "RunView":
        store = open_store(run_dir)
        meta = store.read_meta()
        extra = {}
        if isinstance(store, AppliedStore):  # a pseudo-run: the run's encoder, the set's data
            run_meta = store.run.read_meta()
            meta = {**meta, "encoder": run_meta.get("encoder"), "config": run_meta.get("config"),
                    "metrics": {"head": meta.get("metrics") or {}}, "applied_metrics": meta.get("metrics"),
                    "parent_metrics": (run_meta.get("metrics") or {}).get("head")}
            extra = dict(parent_id=store.run.run_id, set_name=store.name,
                         parent_cells=store.run.read_cells())
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
        run_id = applied_id(extra["parent_id"], extra["set_name"]) if extra else store.run_id
        return cls(run_id=run_id, path=store.path, meta=meta, cells=cells, records=records,
                   label=col("label", np.int8), pred=col("pred", np.int8),
                   prob=col("prob_fake", np.float64), correct=col("correct", np.int8) == 1,
                   cell=cell, images=RunImages(run_dir, cache_root), members=members,
                   cache_root=Path(cache_root), **extra)

    @property
    def is_applied(self) -> bool:
        return self.parent_id is not None

    @functools.cached_property
    def labelled(self) -> np.ndarray:
        """(N,) bool: the image has a label (always, in a run; an applied set may have none)."""
        return self.label >= 0

    def label_word(self, index: int) -> str:
        """``"real"``, ``"fake"`` or ``"unlabelled"``."""
        return LABEL_WORDS[int(self.label[index])]

    def pred_word(self, index: int) -> str:
        return LABEL_WORDS[int(self.pred[index])]

    def outcome(self, index: int) -> str:
        """``"right"``, ``"wrong"``, or ``"unlabelled"`` (no label: a prediction only)."""
        if not self.labelled[index]:
            return "unlabelled"
        return "right" if self.correct[index] else "wrong"

    def outcome_mark(self, index: int) -> str:
        """✔ right, ✘ wrong, ? no label."""
        return {"right": "✔", "wrong": "✘", "unlabelled": "?"}[self.outcome(index)]

    def describe(self) -> str:
        """What is open, in words: ``run X`` or ``applied set S of run X``."""
        return f"applied set {self.set_name} of run {self.parent_id}" if self.is_applied else f"run {self.run_id}"

    @property
    def app_dir(self) -> Path:
        """Folder of the app's derived files for this run (``AppContext.app_cache``)."""
        return Path(self.cache_root) / "app" / self.cache_key()

    @functools.cached_property
    def cell_facts(self) -> dict[int, str]:
        """Per cell, the file facts that dominate it, for the cell tooltip ("96% PNG · all
        512x512"); empty for a run made before file facts were recorded."""
        facts = RunStore(self.path).read_facts()
        if not facts or len(facts) != self.n_images:
            return {}
        fmt = np.array([f["format"] or "?" for f in facts], dtype=object)
        size = np.array([f"{f['width']}x{f['height']}" for f in facts], dtype=object)
        out = {}
        for cell, rows in self.members.items():
            out[int(cell)] = " · ".join(_dominant(values[rows]) for values in (fmt, size))
        return out

    @functools.cached_property
    def cell_arrays(self) -> CellArrays:
        """The cells as arrays, computed once per loaded run (the zoom callback needs them); an
        applied set's glyphs count its own images (:func:`app.figures.applied.applied_cell_arrays`)."""
        return applied_cell_arrays(self.cells) if self.is_applied else CellArrays.of(self.cells)

    @functools.cached_property
    def columns(self) -> ImageColumns:
        """The columns the image filter and the per-cell recounts read (:mod:`app.state.filters`)."""
        try:
            logit = np.asarray(RunStore(self.path).load_array("logit"), dtype=np.float64)
        except ArtifactError:  # a run without logits: recovered from p(fake)
            logit = None
        return ImageColumns.of(self.records, self.label, self.correct, self.prob, self.cell,
                               self.cell_arrays.ids, logit=logit, pred=self.pred)

    @property
    def n_images(self) -> int:
        return len(self.records)

    def cell_ids(self) -> list[int]:
        return [int(c["id"]) for c in self.cells.get("cells", [])]

    def cell_info(self, cell_id) -> dict | None:
        """The cell's entry of ``cells.json``; for an image set key (:mod:`app.state.imagesets`),
        ``{"id", "n", "title", "set": True, "accuracy"}``; None when there is no such cell or set."""
        if imagesets.is_set(cell_id):
            kept = imagesets.read_set(self.app_dir, cell_id)
            if kept is None:
                return None
            members = self.cell_members(cell_id)
            known = self.labelled[members]
            accuracy = float(self.correct[members][known].mean()) if known.any() else None
            return {"id": cell_id, "n": int(len(members)), "title": kept.get("title") or "image set",
                    "set": True, "accuracy": accuracy, "about": kept.get("about") or {}}
        key = imagesets.cell_key(cell_id)
        if key is None:
            return None
        return next((c for c in self.cells.get("cells", []) if int(c["id"]) == key), None)

    def cell_members(self, cell_id) -> np.ndarray:
        """Indices of the images of ``cell_id`` or of an image set (ascending), empty for an
        unknown cell or set (ids of a set that are not images of this run are left out)."""
        if imagesets.is_set(cell_id):
            kept = imagesets.read_set(self.app_dir, cell_id)
            ids = np.array(sorted({int(i) for i in (kept or {}).get("ids", [])}), dtype=np.int64)
            return ids[(ids >= 0) & (ids < self.n_images)]
        key = imagesets.cell_key(cell_id)
        return self.members.get(key, np.zeros(0, dtype=np.int64)) if key is not None else \
            np.zeros(0, dtype=np.int64)

    def in_cell(self, cell_id, indices) -> np.ndarray:
        """(len(indices),) bool: which of ``indices`` belong to the cell or image set ``cell_id``."""
        return np.isin(np.asarray(list(indices), dtype=np.int64), self.cell_members(cell_id))

    def z16(self) -> np.ndarray:
        return RunStore(self.path).load_array("z16", mmap=True)

    @functools.cached_property
    def classifier_weight(self) -> np.ndarray | None:
        """(K,) weight of the head's output layer (read torch-free from ``head.pt``: an applied
        set's is its run's), or None for a run folder without a readable head."""
        try:
            return read_classifier_weight(self.path)
        except ArtifactError:
            return None

    def contributions(self, indices) -> np.ndarray | None:
        """(len(indices), K) each dimension's contribution to the logit, ``w_k * z_k``, from the
        run's ``z16`` (the formula of the relevance maps' ``contributions``, known without them),
        or None when the run's head cannot be read."""
        w = self.classifier_weight
        if w is None:
            return None
        return contributions(self.z16()[np.asarray(list(indices), dtype=np.int64)], w)

    @functools.cached_property
    def logit(self) -> np.ndarray:
        """(N,) float64 the run's logit per image (``logit.npy``; recovered from p(fake) where a
        run lacks it)."""
        return self.columns.logit

    @property
    def precision(self) -> dict:
        """How the run's numbers were computed (``meta.json`` -> ``encoder.extra``): ``precision``
        of the embeddings (so of p(fake)) and ``maps_precision`` of the relevance maps' forward;
        "fp32" where a run does not say."""
        extra = (self.meta.get("encoder") or {}).get("extra") or {}
        return {"precision": str(extra.get("precision") or "fp32"),
                "maps_precision": str(extra.get("maps_precision") or extra.get("precision") or "fp32")}

    def file_name(self, index: int) -> str:
        return Path(self.records[index]["path"]).name

    def cache_key(self) -> str:
        """Identity of this run's content (run id + creation time) for app-side caches."""
        created = str(self.meta.get("created", ""))
        name = self.run_id.replace(APPLIED_SEP, ".applied.")  # "@" is not kept in file names
        return re.sub(r"[^A-Za-z0-9_.-]", "", f"{name}-{created}")[:160]
