"""Pure figure parts of an applied set (new images scored with a run) in the representation view.

Two ways to draw a set among the run's cells (``pipeline.generalise.apply``; the set's ``cells.json`` holds
the run's cells with the set's tallies):

* **the set's glyphs** (:func:`applied_cell_arrays`): every cell where the run drew it, its pie
  recounted from the set's images (blue real / orange fake, solid right / hatched wrong, as for
  the run). Glyph *area* is proportional to the number of the set's images in the cell, on one
  scale for the whole set chosen so that the set's glyphs cover as much of the map as the run's do:
  a cell that holds the same share of the set as of the run's images keeps its size. Radii are
  kept between :data:`MIN_RADIUS` and :data:`MAX_RADIUS` times the run's glyph (a single image stays
  visible; an over-full cell does not cover its neighbours); the tooltip gives the exact counts. A
  cell that no image of the set reached is drawn empty (a grey disc, as a cell emptied by a
  filter). Images without a label are drawn in the colour of their *prediction*, solid: there is
  no right or wrong without a label, and the legend and tooltips say so.
* **both** (:func:`image_markers`): the run's own glyphs, faded, with each image of the set drawn
  over them as a marker at its position inside its cell (``records.csv`` ``x``, ``y``: the run's
  images fill their glyph, a new image sits where it falls among them, one that deviates more than
  95 % of them on the rim). Marker colour = label (blue real, orange fake), or the prediction
  without a label; shape = ● right, ✕ wrong, ◆ no label; a black outline = *far* (farther from
  the cell's centre in the 16-d space than 95 % of the run's own images there: the head has not
  seen images like it in that cell).

Nothing here imports Dash.
"""
from __future__ import annotations

import numpy as np

from app.figures.glyph_map import CLASSES, CellArrays, class_colour

MIN_RADIUS, MAX_RADIUS = 0.3, 1.5  # of the run's glyph radius
MARKER_SYMBOLS = {"right": "circle", "wrong": "x", "unlabelled": "diamond"}
FAR_LINE, NEAR_LINE = "rgb(20,20,20)", "rgb(255,255,255)"
APPLIED_TEMPLATE = "<b>cell %{customdata[0]}</b><br>%{text}<extra></extra>"  # text says it all
MARKERS_NAME = "images of the applied set"


def _column(items: list[dict], key: str, default: float = 0.0) -> np.ndarray:
    return np.array([default if c.get(key) is None else c[key] for c in items], dtype=np.float64)


def drawn_counts(labelled: np.ndarray, unlabelled: np.ndarray) -> np.ndarray:
    """(C, 4) wedge counts in :data:`app.figures.glyph_map.CLASSES` order: the labelled images' four classes,
    with unlabelled images added to the solid wedge of their prediction (``unlabelled``: (C, 2),
    predicted real / predicted fake)."""
    out = np.asarray(labelled, dtype=np.float64).reshape(-1, 4).copy()
    unlabelled = np.asarray(unlabelled, dtype=np.float64).reshape(-1, 2)
    out[:, 0] += unlabelled[:, 0]
    out[:, 2] += unlabelled[:, 1]
    return out


def applied_radii(n: np.ndarray, run_r: np.ndarray) -> np.ndarray:
    """Glyph radii of a set's cells: area ~ images, the set's total area = the run's, clipped to
    [:data:`MIN_RADIUS`, :data:`MAX_RADIUS`] x the run's radius; an empty cell keeps the run's."""
    n = np.asarray(n, dtype=np.float64)
    run_r = np.asarray(run_r, dtype=np.float64)
    total = n.sum()
    if total <= 0:
        return run_r.copy()
    r = np.sqrt(n * float((run_r ** 2).sum()) / total)
    return np.where(n > 0, np.clip(r, MIN_RADIUS * run_r, MAX_RADIUS * run_r), run_r)


def applied_cell_arrays(cells: dict) -> CellArrays:
    """The set's glyphs (module docstring) from its ``cells.json`` tallies."""
    items = cells.get("cells", [])
    labelled = np.array([[c.get(k, 0) for k in CLASSES] for c in items], dtype=np.float64).reshape(-1, 4)
    unlabelled = np.column_stack([_column(items, "unlabelled_pred_real"), _column(items, "unlabelled_pred_fake")])
    counts = drawn_counts(labelled, unlabelled)
    n = counts.sum(axis=1)
    run_r = _column(items, "run_r", 1.0)
    return CellArrays(ids=np.array([c["id"] for c in items], dtype=np.int64), x=_column(items, "x"),
                      y=_column(items, "y"), n=n, counts=counts,
                      conf=_column(items, "mean_confidence", 0.5),
                      acc=_column(items, "accuracy", 1.0),  # undefined (no label): not drawn as wrong
                      r=applied_radii(n, run_r))


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def set_lines(labelled, unlabelled, n_far=None) -> list[str]:
    """Per cell, what the set's images there are, in words (one string of ``<br>`` lines each):
    ``labelled`` (C, 4) in CLASSES order, ``unlabelled`` (C, 2), ``n_far`` (C,) or None."""
    labelled = np.asarray(labelled, dtype=np.int64).reshape(-1, 4).tolist()
    unlabelled = np.asarray(unlabelled, dtype=np.int64).reshape(-1, 2).tolist()
    far = None if n_far is None else np.asarray(n_far, dtype=np.int64).tolist()
    out = []
    for k, (rc, rw, fc, fw) in enumerate(labelled):
        up_real, up_fake = unlabelled[k]
        n = rc + rw + fc + fw + up_real + up_fake
        parts = [f"this set: {_plural(n, 'image')}"]
        if rc + rw:
            parts.append(f"real {rc + rw} ({rc} right, {rw} wrong)")
        if fc + fw:
            parts.append(f"fake {fc + fw} ({fc} right, {fw} wrong)")
        lines = [" · ".join(parts)]
        if rc + rw + fc + fw:
            lines.append(f"accuracy {(rc + fc) / (rc + rw + fc + fw):.0%} on its labelled images")
        if up_real + up_fake:
            lines.append(f"{up_real + up_fake} without a label (prediction only): {up_real} predicted "
                         f"real, {up_fake} predicted fake")
        if far is not None and far[k]:
            lines.append(f"{far[k]} far from the cell's training images (16-d)")
        out.append("<br>".join(lines))
    return out


def training_lines(parent_cells: dict, ids: np.ndarray) -> list[str]:
    """Per cell (``ids`` order), the run's own images there: count, real / fake, accuracy."""
    by_id = {int(c["id"]): c for c in (parent_cells or {}).get("cells", [])}
    out = []
    for cid in np.asarray(ids).tolist():
        c = by_id.get(int(cid))
        if c is None:
            out.append("")
            continue
        real, fake = c["real_correct"] + c["real_wrong"], c["fake_correct"] + c["fake_wrong"]
        out.append(f"training images here: {c['n']} ({real} real, {fake} fake), accuracy "
                   f"{c.get('accuracy', 0):.0%}")
    return out


def applied_hover_texts(ids, labelled, unlabelled, parent_cells: dict, n_far=None,
                        totals: np.ndarray | None = None) -> list[str]:
    """The tooltip of each cell of the set's glyphs: the set's images there (or that none is,
    or none matches the filter: ``totals`` = all the set's images per cell under a filter), then
    the run's own images there."""
    n = (np.asarray(labelled).reshape(-1, 4).sum(axis=1) + np.asarray(unlabelled).reshape(-1, 2).sum(axis=1))
    mine, theirs = set_lines(labelled, unlabelled, n_far), training_lines(parent_cells, ids)
    out = []
    for k in range(len(n)):
        if n[k] == 0:
            head = ("no image of this set fell in this cell" if totals is None or totals[k] == 0 else
                    f"no image of this set here matches the filter ({int(totals[k])} hidden)")
        else:
            head = (f"{int(n[k])} of {int(totals[k])} of this set's images here match the filter<br>"
                    if totals is not None else "") + mine[k]
        out.append("<br>".join(t for t in (head, theirs[k]) if t))
    return out


def marker_colours(label: np.ndarray, pred: np.ndarray) -> list[str]:
    """Label colour (real blue, fake orange), the prediction's where there is no label."""
    shown = np.where(np.asarray(label) >= 0, label, pred)
    real, fake = class_colour("real_correct", 4), class_colour("fake_correct", 4)
    return [fake if v == 1 else real for v in np.asarray(shown).tolist()]


def image_markers(view, indices: np.ndarray) -> dict:
    """The markers of the set's images ``indices`` over the run's glyphs ("both"), as a trace dict.

    ``customdata`` = [cell, image index]: a click opens the marker's cell (the router reads the
    first entry, as for a glyph)."""
    idx = np.asarray(indices, dtype=np.int64)
    recs = [view.records[i] for i in idx.tolist()]
    x = np.array([r.get("x") for r in recs], dtype=np.float64)
    y = np.array([r.get("y") for r in recs], dtype=np.float64)
    far = np.array([int(r.get("far") or 0) for r in recs], dtype=bool)
    outcomes = [view.outcome(i) for i in idx.tolist()]
    text = [f"{view.file_name(i)}<br>label {view.label_word(i)} · predicted {view.pred_word(i)} "
            f"{view.outcome_mark(i)} · p(fake) {view.prob[i]:.3f}<br>cell {int(view.cell[i])}"
            + (" · far from the cell's training images" if f else "")
            for i, f in zip(idx.tolist(), far.tolist())]
    size = 7 if len(idx) <= 300 else 5  # many images: smaller markers (zoom in to tell them apart)
    return dict(type="scatter", x=x.astype(np.float32), y=y.astype(np.float32), mode="markers",
                name=MARKERS_NAME, showlegend=False, text=text,
                customdata=[[int(view.cell[i]), int(i)] for i in idx.tolist()],
                hovertemplate="%{text}<extra></extra>",
                marker=dict(size=size, color=marker_colours(view.label[idx], view.pred[idx]),
                            symbol=[MARKER_SYMBOLS[o] for o in outcomes],
                            line=dict(width=[1.2 if f else 0.6 for f in far.tolist()],
                                      color=[FAR_LINE if f else NEAR_LINE for f in far.tolist()])))
