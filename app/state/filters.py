"""The analyst's image filter, and what it leaves of a run: a mask over the images, counts per cell.

An :class:`ImageFilter` says which images to look at (generator, category, label, right/wrong,
split, a p(fake) range, a piece of the file name); the page keeps it as JSON in
``ids.STORE_FILTER`` (``None`` = every image). :func:`mask` turns it into a boolean array over a
run's images and :func:`cell_counts` recounts every cell from the matching images, so that the
representation view can draw its glyphs, and the cell table list its cells, from the filtered
images only. Both are vectorised over precomputed columns (:class:`ImageColumns`, built once per
loaded run): categorical columns are small integer codes, counts are ``numpy.bincount`` calls,
so 100k images take milliseconds.

Images without a label (an applied set may have them, ``label`` -1) pass no label filter and no
right / wrong filter (they have no outcome); they are counted apart (``CellCounts.unlabelled``, by
prediction), and the accuracy of a cell is over its labelled images.

Nothing here imports Dash.
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, fields

import numpy as np

LABELS = ("real", "fake")  # label 0, 1
OUTCOMES = ("right", "wrong")  # the prediction is right / wrong
EMPTY = "(none)"  # default name of an empty value (real images often have no generator)
NO_GENERATOR, NO_CATEGORY, NO_SPLIT = "no generator", "no category", "no split"  # their empty values
MAX_NAME = 200  # longest file-name search kept


def _names(values) -> tuple[str, ...]:
    """A sorted tuple of distinct non-empty strings from a list (or a single string)."""
    if values is None:
        return ()
    if isinstance(values, str):
        values = [values]
    return tuple(sorted({str(v) for v in values if v is not None and str(v) != ""}))


@dataclass(frozen=True)
class ImageFilter:
    """Which images to look at; an empty choice means "any".

    Parameters
    ----------
    generators, categories, splits : tuple of str
        Values of the records' columns to keep (:data:`NO_GENERATOR`, ... for an empty value).
    labels : tuple of str
        ``"real"`` and/or ``"fake"`` (:data:`LABELS`).
    outcomes : tuple of str
        ``"right"`` and/or ``"wrong"``: the prediction is right / wrong (:data:`OUTCOMES`).
    p_range : (float, float)
        Inclusive range of p(fake); (0, 1) keeps every image.
    name : str
        Part of the file name (case-insensitive); empty keeps every image.
    """

    generators: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    labels: tuple[str, ...] = ()
    outcomes: tuple[str, ...] = ()
    splits: tuple[str, ...] = ()
    p_range: tuple[float, float] = (0.0, 1.0)
    name: str = ""

    def __post_init__(self):
        # normalised, so that two equal filters have one JSON form and one cache key
        for f in ("generators", "categories", "splits"):
            object.__setattr__(self, f, _names(getattr(self, f)))
        object.__setattr__(self, "labels", tuple(v for v in LABELS if v in _names(self.labels)))
        object.__setattr__(self, "outcomes", tuple(v for v in OUTCOMES if v in _names(self.outcomes)))
        lo, hi = self.p_range
        lo, hi = sorted((float(np.clip(lo, 0.0, 1.0)), float(np.clip(hi, 0.0, 1.0))))
        object.__setattr__(self, "p_range", (round(lo, 6), round(hi, 6)))
        object.__setattr__(self, "name", str(self.name or "").strip()[:MAX_NAME])

    # -- what it is -------------------------------------------------------------------------------
    @property
    def keeps_all(self) -> bool:
        """True when the filter keeps every image (nothing chosen, full p range, no name)."""
        return self == ImageFilter()

    def to_json(self) -> dict | None:
        """JSON for ``STORE_FILTER``: only the parts that filter; None when it keeps all."""
        if self.keeps_all:
            return None
        out: dict = {}
        for key in ("generators", "categories", "labels", "outcomes", "splits"):
            if getattr(self, key):
                out[key] = list(getattr(self, key))
        if self.p_range != (0.0, 1.0):
            out["p_range"] = list(self.p_range)
        if self.name:
            out["name"] = self.name
        return out

    @classmethod
    def from_json(cls, data) -> "ImageFilter":
        """Inverse of :meth:`to_json`; None (or anything not a dict) is the filter that keeps all.

        Unknown keys are ignored and a malformed p range falls back to (0, 1): the store comes
        from the browser.
        """
        if not isinstance(data, dict):
            return cls()
        known = {f.name for f in fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in known and k != "p_range"}
        p = data.get("p_range")
        try:
            lo, hi = (float(p[0]), float(p[1])) if p is not None else (0.0, 1.0)
            if not (math.isfinite(lo) and math.isfinite(hi)):
                raise ValueError
        except (TypeError, ValueError, IndexError):
            lo, hi = 0.0, 1.0
        if not isinstance(kwargs.get("name", ""), str):
            kwargs.pop("name")
        return cls(p_range=(lo, hi), **kwargs)

    def key(self) -> str:
        """Short stable hash of the filter for cache file names ("" when it keeps all)."""
        data = self.to_json()
        if data is None:
            return ""
        return hashlib.sha1(json.dumps(data, sort_keys=True).encode()).hexdigest()[:12]

    def describe(self) -> str:
        """One line in words, e.g. ``label fake · p(fake) 0.40–0.60 · file name contains "img_1"``."""
        parts = []
        for key, word in (("generators", "generator"), ("categories", "category"),
                          ("labels", "label"), ("outcomes", "prediction"), ("splits", "split")):
            if getattr(self, key):
                parts.append(f"{word} {' or '.join(getattr(self, key))}")
        if self.p_range != (0.0, 1.0):
            parts.append(f"p(fake) {self.p_range[0]:.2f}–{self.p_range[1]:.2f}")
        if self.name:
            parts.append(f'file name contains "{self.name}"')
        return " · ".join(parts) or "all images"


# -- columns of a run, built once per loaded run ---------------------------------------------------
@dataclass(frozen=True)
class Categorical:
    """A string column as codes into its distinct values (sorted; ``empty`` names the value "")."""

    values: tuple[str, ...]
    codes: np.ndarray  # (N,) int32

    @classmethod
    def of(cls, column, empty: str = EMPTY) -> "Categorical":
        values, codes = np.unique(np.array([str(v) if v not in (None, "") else empty for v in column],
                                           dtype=object), return_inverse=True)
        return cls(values=tuple(str(v) for v in values), codes=codes.astype(np.int32).ravel())

    def isin(self, chosen) -> np.ndarray:
        """Boolean mask of the rows whose value is one of ``chosen`` (unknown values match none)."""
        chosen = set(chosen)
        table = np.array([v in chosen for v in self.values], dtype=bool)
        return table[self.codes] if len(self.values) else np.zeros(len(self.codes), dtype=bool)


@dataclass(frozen=True)
class ImageColumns:
    """The columns a filter and the per-cell counts read, as arrays over a run's images."""

    label: np.ndarray  # (N,) int8, 0 real / 1 fake / -1 no label (an applied set's image)
    correct: np.ndarray  # (N,) bool (False without a label)
    prob: np.ndarray  # (N,) float64, p(fake)
    logit: np.ndarray  # (N,) float64
    cell_ids: np.ndarray  # (C,) the cells' ids in cells.json order
    cell_pos: np.ndarray  # (N,) position of each image's cell in ``cell_ids``; -1 if not a cell
    generator: Categorical
    category: Categorical
    split: Categorical
    names: np.ndarray  # (N,) lower-cased file names, for the search
    pred: np.ndarray | None = None  # (N,) int8 predictions (None: from the logit's sign)

    @classmethod
    def of(cls, records: list[dict], label, correct, prob, cell, cell_ids, logit=None, pred=None) -> "ImageColumns":
        """Columns from a run's records and arrays (``logit`` None: recovered from ``prob``)."""
        prob = np.asarray(prob, dtype=np.float64)
        if logit is None or len(logit) != len(prob):
            p = np.clip(prob, 1e-7, 1 - 1e-7)
            logit = np.log(p / (1 - p))
        cell = np.asarray(cell, dtype=np.int64)
        cell_ids = np.asarray(cell_ids, dtype=np.int64)
        pos = np.full(len(cell), -1, dtype=np.int64)
        if len(cell_ids):
            order = np.argsort(cell_ids, kind="stable")
            at = np.clip(np.searchsorted(cell_ids[order], cell), 0, len(cell_ids) - 1)
            found = cell_ids[order][at] == cell
            pos[found] = order[at[found]]

        def column(name):
            return [r.get(name, "") for r in records]

        names = np.array([str(r.get("path", "")).replace("\\", "/").rsplit("/", 1)[-1].lower()
                          for r in records], dtype=str)
        return cls(label=np.asarray(label, dtype=np.int8), correct=np.asarray(correct, dtype=bool),
                   prob=prob, logit=np.asarray(logit, dtype=np.float64), cell_ids=cell_ids,
                   cell_pos=pos, generator=Categorical.of(column("generator"), NO_GENERATOR),
                   category=Categorical.of(column("category"), NO_CATEGORY),
                   split=Categorical.of(column("split"), NO_SPLIT),
                   names=names, pred=None if pred is None else np.asarray(pred, dtype=np.int8))

    @property
    def n(self) -> int:
        return len(self.label)

    @property
    def labelled(self) -> np.ndarray:
        return self.label >= 0

    @property
    def predicted(self) -> np.ndarray:
        """(N,) 0 / 1: the predictions (the logit's sign when none were given)."""
        return self.pred if self.pred is not None else (self.logit > 0).astype(np.int8)


def _columns(view) -> ImageColumns:
    return view if isinstance(view, ImageColumns) else view.columns


def mask(view, flt: ImageFilter | dict | None) -> np.ndarray:
    """Boolean array over the run's images: True where the image passes the filter.

    Parameters
    ----------
    view : app.state.runs.RunView or ImageColumns
        The run (its :attr:`~app.state.runs.RunView.columns`).
    flt : ImageFilter, its JSON, or None (every image)
    """
    cols = _columns(view)
    flt = flt if isinstance(flt, ImageFilter) else ImageFilter.from_json(flt)
    keep = np.ones(cols.n, dtype=bool)
    if flt.generators:
        keep &= cols.generator.isin(flt.generators)
    if flt.categories:
        keep &= cols.category.isin(flt.categories)
    if flt.splits:
        keep &= cols.split.isin(flt.splits)
    if len(flt.labels) == 1:
        keep &= cols.label == LABELS.index(flt.labels[0])
    if len(flt.outcomes) == 1:  # an image without a label has no outcome
        keep &= cols.labelled & (cols.correct == (flt.outcomes[0] == "right"))
    if flt.p_range != (0.0, 1.0):
        lo, hi = flt.p_range
        keep &= (cols.prob >= lo) & (cols.prob <= hi)  # inclusive at both ends
    if flt.name:
        keep &= np.char.find(cols.names, flt.name.lower()) >= 0
    return keep


# -- per-cell counts under a filter ----------------------------------------------------------------
@dataclass(frozen=True)
class CellCounts:
    """Every cell recounted from a subset of its images, in ``cells.json`` order.

    ``counts`` columns follow :data:`app.figures.glyph_map.CLASSES` (real right, real wrong, fake right,
    fake wrong), of the labelled images; ``unlabelled`` (predicted real, predicted fake) of the
    others. Means are NaN in cells with no matching image (accuracy: no labelled one).
    """

    ids: np.ndarray  # (C,)
    counts: np.ndarray  # (C, 4) float64
    n: np.ndarray  # (C,) matching images (labelled or not)
    total: np.ndarray  # (C,) all images of the cell
    accuracy: np.ndarray  # (C,)
    confidence: np.ndarray  # (C,) mean max(p, 1 - p)
    mean_logit: np.ndarray  # (C,)
    generators: np.ndarray  # (C, G) matching images per generator
    generator_names: tuple[str, ...]
    unlabelled: np.ndarray | None = None  # (C, 2) images without a label: predicted real, fake

    @property
    def drawn_counts(self) -> np.ndarray:
        """(C, 4) wedge counts: ``counts`` with the unlabelled images in the solid wedge of their
        prediction (``app.figures.applied.drawn_counts``)."""
        if self.unlabelled is None or not self.unlabelled.any():
            return self.counts
        out = self.counts.copy()
        out[:, 0] += self.unlabelled[:, 0]
        out[:, 2] += self.unlabelled[:, 1]
        return out

    @property
    def boundary_distance(self) -> np.ndarray:
        """|asinh(mean logit)|: the map's |x| of the cell (before glyphs are pushed apart)."""
        return np.abs(np.arcsinh(self.mean_logit))

    def mix(self, k: int, top: int = 3) -> str:
        """Generator mix of the ``k``-th cell: ``"gan 60% · diffusion 40%"`` (largest first)."""
        return self.mixes(top, rows=[k])[0]

    def mixes(self, top: int = 3, rows=None) -> list[str]:
        """:meth:`mix` of every cell (or of ``rows``): the sorting is done for all at once."""
        gen = self.generators if rows is None else self.generators[list(rows)]
        if gen.shape[1] == 0:
            return [""] * len(gen)
        total = gen.sum(axis=1)
        order = np.argsort(-gen, axis=1, kind="stable")
        share = np.round(100 * gen / np.maximum(total, 1)[:, None]).astype(int)  # as :.0% rounds
        taken = np.take_along_axis(gen, order[:, :top], axis=1)
        rest = total - taken.sum(axis=1)
        rest_share = np.round(100 * rest / np.maximum(total, 1)).astype(int)
        names = self.generator_names
        out = []
        for k in range(len(gen)):
            parts = [f"{names[g]} {share[k, g]}%" for g in order[k, :top] if gen[k, g] > 0]
            if rest[k] > 0:
                parts.append(f"others {rest_share[k]}%")
            out.append(" · ".join(parts))
        return out


def cell_counts(view, keep: np.ndarray | None = None) -> CellCounts:
    """Counts, accuracy, mean confidence, mean logit and generator mix of every cell, from the
    images where ``keep`` is True (None: all images)."""
    cols = _columns(view)
    c, g = len(cols.cell_ids), len(cols.generator.values)
    valid = cols.cell_pos >= 0
    sel = valid if keep is None else (valid & np.asarray(keep, dtype=bool))
    known = cols.labelled[sel]
    pos = cols.cell_pos[sel]
    cls = 2 * cols.label[sel][known].astype(np.int64) + (~cols.correct[sel][known]).astype(np.int64)
    counts = np.bincount(pos[known] * 4 + cls, minlength=4 * c).reshape(c, 4).astype(np.float64)
    unlabelled = np.bincount(pos[~known] * 2 + cols.predicted[sel][~known].astype(np.int64),
                             minlength=2 * c).reshape(c, 2).astype(np.float64)
    n = counts.sum(axis=1) + unlabelled.sum(axis=1)
    total = np.bincount(cols.cell_pos[valid], minlength=c).astype(np.float64)
    prob = cols.prob[sel]
    with np.errstate(invalid="ignore", divide="ignore"):
        accuracy = (counts[:, 0] + counts[:, 2]) / counts.sum(axis=1)
        confidence = np.bincount(pos, weights=np.maximum(prob, 1 - prob), minlength=c) / n
        mean_logit = np.bincount(pos, weights=cols.logit[sel], minlength=c) / n
    gen = np.bincount(pos * g + cols.generator.codes[sel], minlength=c * g).reshape(c, g) if g else \
        np.zeros((c, 0), dtype=np.int64)
    return CellCounts(ids=cols.cell_ids, counts=counts, n=n, total=total, accuracy=accuracy,
                      confidence=confidence, mean_logit=mean_logit, generators=gen,
                      generator_names=cols.generator.values, unlabelled=unlabelled)


def matching_images(keep: np.ndarray, limit: int) -> tuple[np.ndarray, int]:
    """The first ``limit`` matching image indices (ascending) and how many match in all."""
    hits = np.flatnonzero(keep)
    return hits[:limit], int(len(hits))

