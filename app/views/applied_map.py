"""The representation view of an applied set (a pseudo-run ``RUN@SET``, :mod:`app.state.runs`).

Two ways to draw it (``ids.REPR_LAYERS``; :mod:`app.figures.applied` has the encodings):

* ``"set"``: the set's own glyphs in the run's cells, recounted from its images (under the
  analyst's filter, from its matching images); cells no image of the set reached are empty discs;
* ``"both"``: the run's training glyphs, faded, with the set's images drawn over them as markers
  at their place in their cell (the filter picks the markers; the glyphs stay the run's).

The figure keeps the trace order of ``app.figures.glyph_map.representation_figure`` (the markers are
appended last), so the representation view's patches (highlight ring, notes marks, level of
detail) work on it unchanged; :func:`drawn_arrays` tells them which glyphs are on screen.
"""
from __future__ import annotations

import numpy as np

from app.state import filters
from app.figures.applied import APPLIED_TEMPLATE, applied_hover_texts, image_markers, set_lines
from app.figures.glyph_map import CLASSES, WEDGE_TRACE_NAMES, CellArrays, cell_hover_texts, representation_figure

SET, BOTH = "set", "both"
FADED = 0.35  # opacity of the run's glyphs under the set's markers


def layers_of(value) -> str:
    return BOTH if value == BOTH else SET


def drawn_arrays(ctx, view, flt, layers=None) -> tuple[CellArrays, filters.CellCounts | None]:
    """(glyphs on screen, the set's recounts under ``flt`` or None when it keeps every image)."""
    flt = filters.ImageFilter.from_json(flt)
    counts = None if flt.keeps_all else filters.cell_counts(view, filters.mask(view, flt))
    if layers_of(layers) == BOTH:
        parent = ctx.run(view.parent_id)
        if parent is not None:
            return parent.cell_arrays, counts
    if counts is None:
        return view.cell_arrays, None
    return view.cell_arrays.recounted(counts.drawn_counts, counts.confidence, counts.accuracy), counts


def _set_tallies(view, counts: filters.CellCounts | None):
    """(labelled (C, 4), unlabelled (C, 2), far (C,) or None) of the set per cell: from its
    ``cells.json`` (no filter), else from the filter's recount (far not recounted)."""
    items = view.cells.get("cells", [])
    if counts is not None:
        return counts.counts, counts.unlabelled, None
    labelled = np.array([[c.get(k, 0) for k in CLASSES] for c in items], dtype=np.int64).reshape(-1, 4)
    unlabelled = np.array([[c.get("unlabelled_pred_real", 0), c.get("unlabelled_pred_fake", 0)]
                           for c in items], dtype=np.int64).reshape(-1, 2)
    return labelled, unlabelled, np.array([c.get("n_far", 0) for c in items], dtype=np.int64)


def render(ctx, view, cell, flt, layers, lod_view, noted) -> tuple:
    """(figure, info line) of the applied set ``view`` (module docstring)."""
    layers = layers_of(layers)
    arrays, counts = drawn_arrays(ctx, view, flt, layers)
    labelled, unlabelled, far = _set_tallies(view, counts)
    totals = counts.total if counts is not None else None
    if layers == BOTH and view.parent_cells is not None:
        parent = ctx.run(view.parent_id)
        mine = set_lines(labelled, unlabelled, far)
        base = cell_hover_texts(arrays, (filters.cell_counts(parent).mixes() if parent else None))
        text = [f"{b}<br>{m}" for b, m in zip(base, mine)]
        fig = representation_figure(view.parent_cells, selected_cell=cell, uirevision=view.run_id,
                                    arrays=arrays, hover_text=text, noted=noted, view=lod_view)
        for trace in fig.data:
            if trace.name in WEDGE_TRACE_NAMES:
                trace.opacity = FADED
        keep = np.ones(view.n_images, dtype=bool) if counts is None else \
            filters.mask(view, filters.ImageFilter.from_json(flt))
        fig.add_trace(image_markers(view, np.flatnonzero(keep)))
    else:
        text = applied_hover_texts(arrays.ids, labelled, unlabelled, view.parent_cells, far, totals)
        fig = representation_figure(view.cells, selected_cell=cell, uirevision=view.run_id,
                                    arrays=arrays, hover_text=text, noted=noted, view=lod_view,
                                    hovertemplate=APPLIED_TEMPLATE)
    return fig, info_line(view, layers, counts)


def info_line(view, layers: str, counts) -> str:
    """What the map shows, in words, with the set's spread over the cells."""
    n_cells = len(view.cells.get("cells", []))
    items = view.cells.get("cells", [])
    if counts is None:
        n, reached = view.n_images, sum(1 for c in items if c.get("n"))
        what = f"{n:,} images of the set in {reached:,} of {n_cells:,} cells"
    else:
        what = (f"filter: {int(counts.n.sum()):,} of {view.n_images:,} images of the set, in "
                f"{int((counts.n > 0).sum()):,} of {n_cells:,} cells")
    where = ("markers: the set's images over the run's training glyphs" if layers == BOTH else
             "glyphs: the set's images per cell (empty: none fell there)")
    labels = "" if view.labelled.all() else (" · no labels: predictions only" if not view.labelled.any()
                                             else f" · {int((~view.labelled).sum()):,} without a label")
    return f"{what} · {where}{labels} · click a cell to open its images from the set"

