"""app.figures.glyph_map: pie glyphs encode counts, classes, correctness and confidence."""
import numpy as np
import plotly.io.json as pio_json
import pytest

from app.figures import glyph_map as figures
from app.figures.glyph_map import (CLASSES, class_colour, glyph_patch, HIGHLIGHT_TRACE_NAME, HOVER_TRACE_NAME,
                                   REPRESENTATION_TRACES, SATURATIONS, WEDGE_TRACE_NAMES, arc_vertices,
                                   confidence_bins, highlight_ring, representation_figure, wedge_polygons)
from app.figures.common import trace_index


def _cell(i, x, y, counts, conf=0.95, r=None):
    rc, rw, fc, fw = counts
    n = sum(counts)
    c = {"id": i, "x": x, "y": y, "n": n, "real_correct": rc, "real_wrong": rw, "fake_correct": fc,
         "fake_wrong": fw, "mean_confidence": conf, "accuracy": (rc + fc) / n, "mean_prob_fake": 0.5}
    if r is not None:
        c["r"] = r
    return c


def _polygon_areas(x, y):
    """Areas of the NaN-separated polygons of a fill='toself' trace (shoelace)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    areas, start = [], 0
    for end in list(np.flatnonzero(np.isnan(x))) + [len(x)]:
        px, py = x[start:end], y[start:end]
        if len(px) > 2:
            areas.append(0.5 * abs(np.dot(px, np.roll(py, -1)) - np.dot(py, np.roll(px, -1))))
        start = end + 1
    return areas


def _class_traces(fig, cls):
    return [t for t in fig.data if t.name and t.name.startswith(cls + " ")]


def test_trace_layout_and_names():
    fig = representation_figure({"cells": [_cell(0, 0, 0, (5, 1, 2, 2))], "boundary_x": 0.0})
    assert len(fig.data) == len(CLASSES) * len(SATURATIONS) + 5
    # every trace is named, in the order patches of the figure on screen count on
    assert [t.name for t in fig.data] == list(REPRESENTATION_TRACES)
    assert len(set(REPRESENTATION_TRACES)) == len(REPRESENTATION_TRACES)
    for name in REPRESENTATION_TRACES:
        assert trace_index(fig, name) == trace_index(REPRESENTATION_TRACES, name)
    assert trace_index(fig, HOVER_TRACE_NAME) == trace_index(fig, HIGHLIGHT_TRACE_NAME) - 1
    # the empty discs and notes marks come after the ring
    assert trace_index(fig, HIGHLIGHT_TRACE_NAME) < trace_index(fig, figures.EMPTY_TRACE_NAME) \
        < trace_index(fig, figures.NOTES_TRACE_NAME)
    with pytest.raises(KeyError):
        trace_index(fig, "no such trace")
    assert fig.data[trace_index(fig, HOVER_TRACE_NAME)].type == "scatter"  # SVG while all are pies
    assert fig.layout.yaxis.scaleanchor == "x"  # equal scaling: circles stay circles
    assert not fig.layout.shapes  # glyphs are traces, never layout shapes


def test_wedge_areas_are_proportional_to_class_counts():
    counts = (30, 10, 0, 60)
    fig = representation_figure({"cells": [_cell(0, 0.0, 0.0, counts, r=2.0)]})
    full = np.pi * 2.0 ** 2
    for cls, count in zip(CLASSES, counts):
        areas = [a for t in _class_traces(fig, cls) for a in _polygon_areas(t.x, t.y)]
        if count == 0:
            assert areas == []
        else:
            assert len(areas) == 1
            assert areas[0] == pytest.approx(full * count / 100, rel=0.03)


def test_glyph_area_is_proportional_to_image_count_when_radii_are_not_given():
    cells = [_cell(0, 0.0, 0.0, (100, 0, 0, 0)), _cell(1, 10.0, 0.0, (25, 0, 0, 0))]
    fig = representation_figure({"cells": cells})
    areas = sorted(a for t in _class_traces(fig, "real_correct") for a in _polygon_areas(t.x, t.y))
    assert areas[1] / areas[0] == pytest.approx(4.0, rel=0.03)


def test_colour_pattern_and_saturation_encode_class_correctness_and_confidence():
    cells = [_cell(0, 0, 0, (1, 1, 1, 1), conf=0.97), _cell(1, 5, 0, (1, 1, 1, 1), conf=0.52)]
    fig = representation_figure({"cells": cells})
    for t in (fig.data[trace_index(fig, name)] for name in WEDGE_TRACE_NAMES):
        cls, b = t.name.split(" confidence bin ")
        has_wedges = len(t.x) > 0
        if cls.endswith("wrong"):
            assert t.fillpattern.shape == "/"
        else:
            assert t.fillpattern.shape is None
        colour = t.fillpattern.fgcolor if cls.endswith("wrong") else t.fillcolor
        r, g, bl = (int(v) for v in colour[4:-1].split(","))
        if int(b) >= 2:  # saturated enough to tell the hue
            assert (bl > r) if cls.startswith("real") else (r > bl)
        # the confident cell lands in the top bin, the unsure one in the bottom bin
        assert has_wedges == (int(b) in (0, len(SATURATIONS) - 1))
    assert confidence_bins(np.array([0.5, 0.65, 0.99, 1.0])).tolist() == [0, 1, 4, 4]


def test_hover_layer_carries_counts_and_highlight_ring_surrounds_the_cell():
    cells = [_cell(7, 1.0, 2.0, (3, 1, 4, 2), r=0.5), _cell(9, 4.0, 2.0, (1, 1, 1, 1), r=0.5)]
    fig = representation_figure({"cells": cells}, selected_cell=9)
    hover = fig.data[trace_index(fig, HOVER_TRACE_NAME)]
    assert np.asarray(hover.customdata)[:, :5].tolist() == [[7, 3, 1, 4, 2], [9, 1, 1, 1, 1]]
    ring = fig.data[trace_index(fig, HIGHLIGHT_TRACE_NAME)]
    d = np.hypot(np.asarray(ring.x) - 4.0, np.asarray(ring.y) - 2.0)
    assert np.allclose(d, 1.15 * 0.5)
    assert highlight_ring({"cells": cells}, None) == ([], [])


def test_level_of_detail_and_payload_at_5000_cells(monkeypatch):
    assert arc_vertices(500) > arc_vertices(5000) > arc_vertices(20000) >= arc_vertices(100000)
    rng = np.random.default_rng(0)
    cells = []
    for i in range(5000):
        c = rng.multinomial(int(rng.integers(4, 200)), [0.4, 0.1, 0.4, 0.1])
        cells.append(_cell(i, float(rng.normal() * 20), float(rng.normal() * 20), tuple(int(v) for v in c),
                           conf=float(rng.uniform(0.5, 1))))
    payload = pio_json.to_json_plotly(representation_figure({"cells": cells}))
    assert len(payload) < 3_000_000

    # one more cell: the overview shows coloured markers and no pie until a zoom
    cells.append(_cell(5000, 0.0, 0.0, (5, 0, 0, 0), conf=0.9))
    fig = representation_figure({"cells": cells})
    layer = fig.data[trace_index(fig, HOVER_TRACE_NAME)]
    assert layer.type == "scatter" and len(layer.x) == 5001
    assert all(len(fig.data[trace_index(fig, name)].x) == 0 for name in WEDGE_TRACE_NAMES)
    assert layer.marker.color[-1] == class_colour("real_correct", 4)  # all real, right, confident
    view = {"x0": -5.0, "x1": 5.0, "y0": -5.0, "y1": 5.0}
    lod = glyph_patch(figures.CellArrays.of({"cells": cells}), view)
    near = sum(abs(c["x"]) <= 5 + 1 and abs(c["y"]) <= 5 + 1 for c in cells)
    assert sorted(lod["wedges"]) == sorted(WEDGE_TRACE_NAMES)
    assert 0 < lod["drawn"] <= near and lod["colours"].count("rgba(0,0,0,0)") == lod["drawn"]
    assert len(pio_json.to_json_plotly(lod)) < 3_000_000
    monkeypatch.setattr(figures, "SVG_MARKERS", 5000)  # many markers: WebGL
    fig = representation_figure({"cells": cells})
    assert fig.data[trace_index(fig, HOVER_TRACE_NAME)].type == "scattergl"


def test_wedge_polygons_follow_the_arc():
    xs, ys = wedge_polygons(np.array([1.0]), np.array([2.0]), np.array([3.0]),
                            np.array([0.0]), np.array([np.pi / 2]), k=16)
    pts = np.column_stack([xs, ys])[~np.isnan(xs)]
    assert pts[0].tolist() == [1.0, 2.0]  # the centre
    assert np.allclose(np.hypot(pts[1:, 0] - 1, pts[1:, 1] - 2), 3.0)
    assert np.isnan(xs[-1])
