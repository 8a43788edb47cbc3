"""app.figures.grid: the image view's grid figure (sprite + one selectable marker per image)."""
import numpy as np

from app.figures.common import trace_index
from app.figures.grid import (GRID_TRACE_NAME, GRID_TRACES, HIGHLIGHT_STYLE, SELECTION_STYLE, highlight_style,
                             image_grid_figure)


def test_image_grid_figure_places_one_marker_per_image_on_its_slot():
    grid = {"rows": 2, "cols": 3, "order": [4, 9, 2, 7, -1, -1], "run_id": "r", "cell": 1}
    fig = image_grid_figure(grid, "/files/sprite/r/abc.jpg", ["a", "b", "c", "d"], selected=[7, 9])
    t = fig.data[trace_index(fig, GRID_TRACE_NAME)]
    assert list(t.customdata) == [4, 9, 2, 7]
    assert np.allclose(t.x, [0.5, 1.5, 2.5, 0.5]) and np.allclose(t.y, [-0.5, -0.5, -0.5, -1.5])
    assert list(t.selectedpoints) == [1, 3]
    img = fig.layout.images[0]
    assert img.source == "/files/sprite/r/abc.jpg" and (img.sizex, img.sizey) == (3, 2)
    assert fig.layout.dragmode == "select"


def test_the_grid_figure_draws_its_traces_in_the_named_order():
    grid = {"rows": 1, "cols": 2, "order": [0, 1], "run_id": "r", "cell": 0}
    fig = image_grid_figure(grid, "/files/sprite/r/abc.jpg", ["a", "b"])
    assert [t.name for t in fig.data] == list(GRID_TRACES)  # what a patch of the selection counts on


def test_highlighted_images_are_outlined_dotted_in_the_colour_given():
    grid = {"rows": 1, "cols": 3, "order": [5, 6, 7], "run_id": "r", "cell": 0}
    fig = image_grid_figure(grid, "/s.jpg", ["a", "b", "c"], selected=[5], highlighted=[6, 7],
                            highlight_colour="#44AA99")  # a concept's colour
    solid = [s for s in fig.layout.shapes if s.line.dash is None]
    dotted = [s for s in fig.layout.shapes if s.line.dash == "dot"]
    assert [s.x0 for s in solid] == [0.03] and {s.line.color for s in solid} == {SELECTION_STYLE["color"]}
    assert [s.x0 for s in dotted] == [1.1, 2.1] and {s.line.color for s in dotted} == {"#44AA99"}
    assert highlight_style() == HIGHLIGHT_STYLE  # without a colour: the default one
    assert highlight_style("#222222") == {**HIGHLIGHT_STYLE, "color": "#222222"}
