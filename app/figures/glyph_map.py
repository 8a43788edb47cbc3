"""The representation view's figure: pure functions from ``cells.json`` to the glyph map.

Representation view (method.md section 6): each cell is a pie glyph whose *area* is proportional
to its image count, with up to four wedges (real-correct, real-wrong, fake-correct, fake-wrong):
blue for real, orange for fake, solid for correct, hatched for wrong; the colour's saturation
encodes the cell's mean confidence. Plotly layout shapes are unusable past ~1k cells (*measured*),
so the glyphs are 20 SVG ``fill='toself'`` scatter traces (4 classes x 5 saturation bins), each
holding all its wedges as polygons separated by NaN gaps, and one invisible marker layer gives
hover, click and selection. Level of detail: fewer arc vertices per wedge as the number of cells
grows, and past :data:`GLYPH_CELLS` cells pies only for the cells in view.

The marker layer is SVG (``scatter``) up to :data:`SVG_MARKERS` cells and WebGL (``scattergl``)
past that. *Measured* in headless Chromium with software rendering (``bench/app.py --browser``,
frames during a gesture): a WebGL layer is redrawn on every pan/zoom frame, and at 5,000
invisible markers it alone took ~230 ms per frame, against ~57 ms for the whole 5,000-pie figure
with SVG markers, which pan as one moved layer; at 20,000 overview markers, ~940 ms (WebGL)
against ~100 ms (SVG). With a GPU both are fast. Far past that, SVG's one DOM node per marker
costs more than WebGL does.
"""
from __future__ import annotations

import base64
import colorsys
from dataclasses import dataclass, replace

import numpy as np
import plotly.graph_objects as go

CLASSES = ("real_correct", "real_wrong", "fake_correct", "fake_wrong")
CLASS_LABELS = {"real_correct": "real, predicted real", "real_wrong": "real, predicted fake",
                "fake_correct": "fake, predicted fake", "fake_wrong": "fake, predicted real"}
REAL_HUE, FAKE_HUE = 208 / 360, 28 / 360  # blue, orange
CONFIDENCE_EDGES = (0.5, 0.6, 0.7, 0.8, 0.9, 1.0001)  # 5 saturation bins of mean confidence
SATURATIONS = (0.18, 0.38, 0.58, 0.78, 0.98)
BOUNDARY_TRACE_NAME = "decision boundary"
HOVER_TRACE_NAME = "cells"
HIGHLIGHT_TRACE_NAME = "selected cell"
EMPTY_TRACE_NAME = "cells without matching images"
NOTES_TRACE_NAME = "cells with notes"


def wedge_trace_name(cls: str, saturation_bin: int) -> str:
    """Name of the wedge trace of class ``cls`` at one saturation bin."""
    return f"{cls} confidence bin {saturation_bin}"


WEDGE_TRACE_NAMES = tuple(wedge_trace_name(cls, b) for cls in CLASSES for b in range(len(SATURATIONS)))
# Every trace of the representation figure by name, in the order it draws them (later on top):
# the wedges, the boundary, the hover/click layer, the highlight ring, the discs of cells that no
# image of the filter matches, the marks of cells that carry notes. A caller that patches the
# figure without holding it (``dash.Patch``) finds a trace's index here with
# :func:`app.figures.common.trace_index`.
REPRESENTATION_TRACES = (*WEDGE_TRACE_NAMES, BOUNDARY_TRACE_NAME, HOVER_TRACE_NAME,
                         HIGHLIGHT_TRACE_NAME, EMPTY_TRACE_NAME, NOTES_TRACE_NAME)
EMPTY_COLOUR = "rgba(175,180,188,0.45)"  # a cell the filter leaves empty: a pale grey disc
NOTES_COLOUR = "rgb(110,64,201)"  # the diamond on a cell with notes
# A filtered glyph's area follows its matching images, but its radius stays at least this share
# of the full glyph's, so that a cell with one matching image out of hundreds can still be seen.
MIN_FILTERED_RADIUS = 0.35


def class_colour(cls: str, saturation_bin: int) -> str:
    """CSS colour of a wedge class at one saturation bin (0 = least confident)."""
    hue = REAL_HUE if cls.startswith("real") else FAKE_HUE
    r, g, b = colorsys.hls_to_rgb(hue, 0.52, SATURATIONS[saturation_bin])
    return f"rgb({round(r * 255)},{round(g * 255)},{round(b * 255)})"


def arc_vertices(n_cells: int) -> int:
    """Vertices of a full circle's arc: the level of detail drops as cells get many (and small).

    A wedge gets a share of them proportional to its angle (at least 2).
    """
    if n_cells <= 1000:
        return 40
    if n_cells <= 5000:  # *measured* (bench/app.py --browser): 22 -> 14 cuts the draw by ~1/3
        return 14
    if n_cells <= 20000:
        return 8
    return 6


def glyph_radii(x: np.ndarray, y: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Radius per cell, proportional to sqrt(count) so that *area* is proportional to count.

    The scale makes a median-sized glyph about 0.45 of the median nearest-neighbour spacing.
    """
    n = np.maximum(np.asarray(n, dtype=np.float64), 0)
    if len(n) == 0:
        return np.zeros(0)
    pts = np.column_stack([x, y])
    if len(pts) > 1:
        from scipy.spatial import cKDTree

        d, _ = cKDTree(pts).query(pts, k=2)
        spacing = float(np.median(d[:, 1]))
    else:
        spacing = 1.0
    if not np.isfinite(spacing) or spacing <= 0:
        extent = float(np.ptp(pts, axis=0).max()) if len(pts) > 1 else 0.0
        spacing = extent / max(np.sqrt(len(pts)), 1) or 1.0
    median_n = float(np.median(n[n > 0])) if np.any(n > 0) else 1.0
    return 0.45 * spacing * np.sqrt(n / median_n)


def cell_radii(items: list[dict], x: np.ndarray, y: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Glyph radii: ``pipeline.represent.cells`` gives them (``r``, already de-overlapped); else computed."""
    if items and all("r" in c for c in items):
        return np.array([c["r"] for c in items], dtype=np.float64)
    return glyph_radii(x, y, n)


def wedge_polygons(cx: np.ndarray, cy: np.ndarray, r: np.ndarray, a0: np.ndarray, a1: np.ndarray,
                   k: int) -> tuple[np.ndarray, np.ndarray]:
    """Polygons of wedges (centre, then arc points from angle ``a0`` to ``a1``), NaN-separated.

    A wedge spanning a fraction f of the circle gets ``max(2, ceil(f * k) + 1)`` arc points, so
    thin wedges stay cheap. Returns flat x and y arrays for a ``fill='toself'`` scatter trace.
    """
    w = len(cx)
    if w == 0:
        return np.zeros(0), np.zeros(0)
    span = np.abs(a1 - a0) / (2 * np.pi)
    m = np.maximum(2, np.ceil(span * k).astype(np.int64) + 1)  # arc points per wedge
    length = m + 2  # centre + arc + gap
    offset = np.concatenate([[0], np.cumsum(length)[:-1]])
    total = int(length.sum())
    xs = np.full(total, np.nan)
    ys = np.full(total, np.nan)
    xs[offset], ys[offset] = cx, cy
    wid = np.repeat(np.arange(w), m)  # wedge of each arc point
    j = np.arange(int(m.sum())) - np.repeat(np.cumsum(m) - m, m)  # position inside its arc
    t = j / (m[wid] - 1)
    ang = a0[wid] + (a1 - a0)[wid] * t
    pos = offset[wid] + 1 + j
    xs[pos] = cx[wid] + r[wid] * np.cos(ang)
    ys[pos] = cy[wid] + r[wid] * np.sin(ang)
    return xs, ys


def confidence_bins(conf: np.ndarray) -> np.ndarray:
    """Saturation bin (0..4) of each mean confidence (0.5..1)."""
    return np.clip(np.digitize(conf, CONFIDENCE_EDGES[1:-1]), 0, len(SATURATIONS) - 1)


# Level of detail: at most this many cells are drawn as pie glyphs at once. Past it, the overview
# shows every cell as one marker in its majority colour, and zooming in (the app's relayout
# callback, :func:`glyph_patch`) draws the pies of the cells in view once they are few enough.
GLYPH_CELLS = 5000
SVG_MARKERS = 20000  # marker layer in SVG up to this many cells, WebGL past it (module doc)


@dataclass(frozen=True)
class CellArrays:
    """Columns of ``cells.json`` as arrays, computed once per figure or patch."""

    ids: np.ndarray
    x: np.ndarray
    y: np.ndarray
    n: np.ndarray
    counts: np.ndarray  # (N, 4) in CLASSES order
    conf: np.ndarray
    acc: np.ndarray
    r: np.ndarray

    @classmethod
    def of(cls, cells: dict) -> "CellArrays":
        items = cells.get("cells", [])
        x = np.array([c["x"] for c in items], dtype=np.float64)
        y = np.array([c["y"] for c in items], dtype=np.float64)
        n = np.array([c["n"] for c in items], dtype=np.float64)
        return cls(ids=np.array([c["id"] for c in items], dtype=np.int64), x=x, y=y, n=n,
                   counts=np.array([[c[k] for k in CLASSES] for c in items],
                                   dtype=np.float64).reshape(-1, 4),
                   conf=np.array([c.get("mean_confidence", 0.5) for c in items], dtype=np.float64),
                   acc=np.array([c.get("accuracy", 0.0) for c in items], dtype=np.float64),
                   r=cell_radii(items, x, y, n))

    def recounted(self, counts: np.ndarray, confidence: np.ndarray, accuracy: np.ndarray) -> "CellArrays":
        """The same cells drawn from a subset of their images (``app.state.filters.cell_counts``).

        Positions stay; wedges follow ``counts``; the glyph's area follows the number of matching
        images (radius x sqrt(share), at least :data:`MIN_FILTERED_RADIUS` of the full radius);
        a cell with no matching image keeps its full radius (drawn as a grey disc).
        """
        counts = np.asarray(counts, dtype=np.float64).reshape(-1, 4)
        n = counts.sum(axis=1)
        share = n / np.maximum(self.n, 1)
        r = np.where(n > 0, self.r * np.maximum(np.sqrt(share), MIN_FILTERED_RADIUS), self.r)
        return replace(self, n=n, counts=counts, r=r,
                       conf=np.where(n > 0, np.nan_to_num(confidence, nan=0.5), 0.5),
                       acc=np.where(n > 0, np.nan_to_num(accuracy, nan=0.0), 0.0))


def cells_in_view(a: CellArrays, view: dict | None) -> np.ndarray:
    """Boolean mask of the cells whose glyph touches ``view`` (``x0, x1, y0, y1``, a side that is
    None is unbounded; ``view`` None = all)."""
    if not view:
        return np.ones(len(a.x), dtype=bool)

    def side(key, unbounded):
        return unbounded if view.get(key) is None else float(view[key])

    x0, x1 = sorted((side("x0", -np.inf), side("x1", np.inf)))
    y0, y1 = sorted((side("y0", -np.inf), side("y1", np.inf)))
    return (a.x + a.r >= x0) & (a.x - a.r <= x1) & (a.y + a.r >= y0) & (a.y - a.r <= y1)


def glyph_mask(a: CellArrays, view: dict | None, limit: int | None = None) -> np.ndarray:
    """Cells drawn as pies: all when few; else those in ``view`` when at most ``limit``
    (default :data:`GLYPH_CELLS`); else none."""
    limit = GLYPH_CELLS if limit is None else limit
    if len(a.x) <= limit:
        return np.ones(len(a.x), dtype=bool)
    shown = cells_in_view(a, view) if view else np.zeros(len(a.x), dtype=bool)
    return shown if shown.sum() <= limit else np.zeros(len(a.x), dtype=bool)


def wedge_traces(a: CellArrays, drawn: np.ndarray) -> list[dict]:
    """The 20 wedge traces (4 classes x 5 saturation bins) of the ``drawn`` cells, as dicts."""
    k = arc_vertices(int(drawn.sum()))
    bins = confidence_bins(a.conf)
    total = np.maximum(a.counts.sum(axis=1, keepdims=True), 1)
    frac = a.counts / total
    # Wedges start at 12 o'clock and run clockwise in CLASSES order.
    ends = np.pi / 2 - 2 * np.pi * np.cumsum(frac, axis=1)
    starts = np.column_stack([np.full(len(a.x), np.pi / 2), ends[:, :-1]])
    traces = []
    for ci, cls in enumerate(CLASSES):
        wrong = cls.endswith("wrong")
        for b in range(len(SATURATIONS)):
            m = drawn & (frac[:, ci] > 0) & (bins == b)
            xs, ys = wedge_polygons(a.x[m], a.y[m], a.r[m], starts[m, ci], ends[m, ci], k)
            colour = class_colour(cls, b)
            trace = dict(x=xs.astype(np.float32), y=ys.astype(np.float32), mode="lines",
                         fill="toself", line=dict(width=0), hoverinfo="skip", showlegend=False,
                         name=wedge_trace_name(cls, b))
            if wrong:
                trace["fillcolor"] = "rgba(255,255,255,0.9)"
                trace["fillpattern"] = dict(shape="/", fgcolor=colour, bgcolor="white",
                                            size=6, solidity=0.45)
            else:
                trace["fillcolor"] = colour
            traces.append(trace)
    return traces


def overview_colours(a: CellArrays, drawn: np.ndarray) -> list[str]:
    """Marker colour per cell: transparent where a pie is drawn, else the cell's majority class
    (real blue / fake orange) at its saturation bin, paler when most of it is predicted wrong."""
    palette = np.array([[class_colour(cls, b) for b in range(len(SATURATIONS))] + ["rgba(0,0,0,0)"]
                        for cls in CLASSES])  # last column: transparent
    real = a.counts[:, 0] + a.counts[:, 1] >= a.counts[:, 2] + a.counts[:, 3]
    ok = a.acc >= 0.5
    cls = np.where(real, 0, 2) + np.where(ok, 0, 1)  # index into CLASSES
    column = np.where(drawn, len(SATURATIONS), np.where(ok, confidence_bins(a.conf), 0))
    colours = palette[cls, column].astype(object)  # a fixed-width str array would cut longer names
    colours[(a.counts.sum(axis=1) == 0) & ~drawn] = EMPTY_COLOUR  # no image matches the filter
    return colours.tolist()


def empty_discs(a: CellArrays, drawn: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Polygons (NaN-separated) of the ``drawn`` cells that hold no image (under a filter)."""
    m = drawn & (a.counts.sum(axis=1) == 0)
    k = arc_vertices(int(drawn.sum()))
    full = np.full(int(m.sum()), 2 * np.pi)
    xs, ys = wedge_polygons(a.x[m], a.y[m], a.r[m], np.zeros_like(full), full, k)
    return xs.astype(np.float32), ys.astype(np.float32)


def notes_marks(a: CellArrays, noted_ids) -> tuple[list, list]:
    """Where the "has notes" diamonds go: the top-right edge of each noted cell's full glyph."""
    noted = np.isin(a.ids, np.asarray(sorted(noted_ids), dtype=np.int64))
    off = 0.75 * a.r[noted]
    return (a.x[noted] + off).tolist(), (a.y[noted] + off).tolist()


def cell_hover_texts(a: CellArrays, mixes: list[str] | None = None,
                     totals: np.ndarray | None = None, files: list[str] | None = None) -> list[str]:
    """The per-cell part of the cells' tooltip: accuracy, confidence, generator mix and the file
    facts that dominate the cell (``files``); under a filter (``totals``: all images per cell) how
    many images match, or that none does."""
    n, acc, conf = a.counts.sum(axis=1).astype(int).tolist(), a.acc.tolist(), a.conf.tolist()
    total = totals.astype(int).tolist() if totals is not None else None
    out = []
    for k in range(len(n)):  # plain Python numbers: formatting numpy scalars is slower
        if total is not None and n[k] == 0:
            out.append(f"no image matches the filter ({total[k]} images hidden)")
            continue
        lines = [f"{n[k]} of {total[k]} images match the filter"] if total is not None else []
        lines.append(f"accuracy {acc[k]:.0%} · mean confidence {conf[k]:.2f}")
        if mixes and mixes[k]:
            lines.append(f"generators: {mixes[k]}")
        if files and files[k]:
            lines.append(f"files: {files[k]}")
        out.append("<br>".join(lines))
    return out


def glyph_patch(a: CellArrays, view: dict | None) -> dict | None:
    """What a zoom or pan changes in a figure with more than :data:`GLYPH_CELLS` cells: the 20
    wedge traces' ``x``/``y`` (``wedges``: trace name -> (x, y)), the marker colours and the
    empty discs. None when the figure draws all pies anyway."""
    if len(a.x) <= GLYPH_CELLS:
        return None
    drawn = glyph_mask(a, view)
    return {"wedges": {t["name"]: (typed_array(t["x"]), typed_array(t["y"])) for t in wedge_traces(a, drawn)},
            "colours": overview_colours(a, drawn), "drawn": int(drawn.sum()),
            "empty": tuple(typed_array(v) for v in empty_discs(a, drawn))}


def typed_array(values: np.ndarray) -> dict:
    """A float32 array in plotly.js's typed-array form (base64), as ``go.Figure`` sends arrays:
    a ``dash.Patch`` would otherwise carry it as a JSON list of decimals, about three times larger."""
    data = np.ascontiguousarray(values, dtype="<f4")
    return {"dtype": "f4", "bdata": base64.b64encode(data.tobytes()).decode("ascii")}


# x ticks: the map's x is asinh(mean logit) (pipeline.represent.cells), so ticks sit at round logits
LOGIT_TICKS = (-300, -100, -30, -10, -3, -1, 0, 1, 3, 10, 30, 100, 300)
X_TITLE = "mean logit of the cell (asinh scale): ◀ real · 0 · fake ▶"
Y_TITLE = "main axis of the 16-d space orthogonal to the classifier"


def representation_figure(cells: dict, selected_cell: int | None = None,
                          uirevision: str | None = None,
                          arrays: CellArrays | None = None, hover_text: list[str] | None = None,
                          noted=(), view: dict | None = None,
                          hovertemplate: str | None = None) -> go.Figure:
    """Pie-glyph map of all cells (``cells.json`` content) -> figure.

    Traces, named and in the order of :data:`REPRESENTATION_TRACES`: 20 wedge traces, the
    boundary line, the hover/click marker layer, the highlight ring of the selected cell (updated
    alone with ``dash.Patch``), the grey discs of cells left empty by a filter, the diamonds of
    cells with notes. With more than
    :data:`GLYPH_CELLS` cells this is the overview: no pies (zooming patches them in,
    :func:`glyph_patch`), every cell a coloured marker. ``arrays``: ``CellArrays.of(cells)`` when
    the caller keeps it (or its :meth:`CellArrays.recounted` form under a filter);
    ``hover_text``: the per-cell tooltip lines (:func:`cell_hover_texts`); ``noted``: ids of the
    cells with notes; ``view``: the axis ranges on screen (pies for the cells in view past
    :data:`GLYPH_CELLS`); ``hovertemplate``: the cells' tooltip template, when ``hover_text`` says
    everything (an applied set's cells, :mod:`app.figures.applied`).
    """
    a = arrays if arrays is not None else CellArrays.of(cells)
    ids, x, y, counts, conf, acc, r = a.ids, a.x, a.y, a.counts, a.conf, a.acc, a.r
    drawn = glyph_mask(a, view)
    fig = go.Figure()
    for trace in wedge_traces(a, drawn):
        fig.add_trace(go.Scatter(**trace))

    ypad = (np.ptp(y) if len(y) > 1 else 1.0) * 0.08 + (r.max() if len(r) else 0.5)
    ylo, yhi = (y.min() - ypad, y.max() + ypad) if len(y) else (-1, 1)
    bx = float(cells.get("boundary_x", 0.0))
    fig.add_trace(go.Scatter(x=[bx, bx], y=[ylo, yhi], mode="lines", hoverinfo="skip",
                             line=dict(color="rgba(80,80,80,0.6)", width=1, dash="dash"),
                             showlegend=False, name=BOUNDARY_TRACE_NAME))

    # customdata as plain lists: plotly leaves typed-array customdata out of click/selection events
    custom = [[int(i), *map(int, cnt), round(float(ac), 4), round(float(c), 4)]
              for i, cnt, ac, c in zip(ids, counts, acc, conf)]
    marker_layer = go.Scatter if len(x) <= SVG_MARKERS else go.Scattergl  # see the module doc
    fig.add_trace(marker_layer(
        x=x.astype(np.float32), y=y.astype(np.float32), mode="markers", name=HOVER_TRACE_NAME, customdata=custom,
        marker=dict(size=np.clip(2 * r / (r.max() if len(r) and r.max() > 0 else 1) * 22, 8, 30).astype(np.float32),
                    color=overview_colours(a, drawn), line=dict(width=0)),
        text=hover_text if hover_text is not None else cell_hover_texts(a),
        hovertemplate=hovertemplate or ("<b>cell %{customdata[0]}</b><br>real: %{customdata[1]} right, "
                                        "%{customdata[2]} wrong<br>fake: %{customdata[3]} right, "
                                        "%{customdata[4]} wrong<br>%{text}<extra></extra>"),
        showlegend=False))
    hx, hy = highlight_ring(cells, selected_cell, r_by_id=dict(zip(ids.tolist(), r.tolist())))
    fig.add_trace(go.Scatter(x=hx, y=hy, mode="lines", hoverinfo="skip", showlegend=False,
                             name=HIGHLIGHT_TRACE_NAME, line=dict(color="black", width=2.5)))
    ex, ey = empty_discs(a, drawn)
    fig.add_trace(go.Scatter(x=ex, y=ey, mode="lines", fill="toself", fillcolor=EMPTY_COLOUR,
                             line=dict(width=0), hoverinfo="skip", showlegend=False,
                             name=EMPTY_TRACE_NAME))
    nx, ny = notes_marks(a, noted)
    fig.add_trace(go.Scatter(x=nx, y=ny, mode="markers", hoverinfo="skip", showlegend=False,
                             name=NOTES_TRACE_NAME,
                             marker=dict(symbol="diamond", size=10, color=NOTES_COLOUR,
                                         line=dict(color="white", width=1.5))))

    fig.update_layout(
        margin=dict(l=44, r=10, t=28, b=40), plot_bgcolor="white", paper_bgcolor="white",
        dragmode="pan", hovermode="closest", hoverdistance=25, uirevision=uirevision,
        xaxis=dict(showgrid=False, zeroline=False, showticklabels=True, ticks="outside",
                   tickvals=np.arcsinh(LOGIT_TICKS).round(4).tolist(),
                   ticktext=[f"{v:+d}" if v else "0" for v in LOGIT_TICKS],
                   tickfont=dict(size=10, color="#555"), showline=True, linecolor="#ccc",
                   title=dict(text=X_TITLE, font=dict(size=11), standoff=4)),
        yaxis=dict(showgrid=False, zeroline=False, showticklabels=True, ticks="outside",
                   tickfont=dict(size=10, color="#555"), showline=True, linecolor="#ccc",
                   scaleanchor="x", scaleratio=1,
                   title=dict(text=Y_TITLE, font=dict(size=11), standoff=2)),
        # inside the top of the plot, on the boundary line: above it, the graph's toolbar covers
        # them when the boundary sits near the right edge (a narrow screen)
        annotations=[
            dict(x=bx, y=1.0, xref="x", yref="paper", text="real ◀", xanchor="right",
                 yanchor="top", showarrow=False, bgcolor="rgba(255,255,255,0.8)",
                 font=dict(color=class_colour("real_correct", 4))),
            dict(x=bx, y=1.0, xref="x", yref="paper", text="▶ fake", xanchor="left",
                 yanchor="top", showarrow=False, bgcolor="rgba(255,255,255,0.8)",
                 font=dict(color=class_colour("fake_correct", 4))),
        ])
    return fig


def highlight_ring(cells: dict, cell_id: int | None, r_by_id: dict | None = None,
                   k: int = 48) -> tuple[list, list]:
    """Circle around ``cell_id``'s glyph (empty lists when no cell is selected)."""
    if cell_id is None:
        return [], []
    items = cells.get("cells", [])
    cell = next((c for c in items if int(c["id"]) == int(cell_id)), None)
    if cell is None:
        return [], []
    if r_by_id is None:
        x = np.array([c["x"] for c in items])
        y = np.array([c["y"] for c in items])
        r = cell_radii(items, x, y, np.array([c["n"] for c in items]))
        r_by_id = dict(zip([int(c["id"]) for c in items], r.tolist()))
    rad = 1.15 * r_by_id[int(cell_id)]
    t = np.linspace(0, 2 * np.pi, k)
    return (cell["x"] + rad * np.cos(t)).tolist(), (cell["y"] + rad * np.sin(t)).tolist()
