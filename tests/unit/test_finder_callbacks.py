"""The cell finder's callback bodies (filter bar, name search, cell table) and what the filter does
to the representation view and the image grid, called directly (no browser)."""
import base64

import numpy as np
import pytest
from dash import Patch, no_update

from app.files import artifacts

from app.figures import glyph_map as figures
from app.figures.common import trace_index
from app.figures.glyph_map import REPRESENTATION_TRACES, WEDGE_TRACE_NAMES
from app.figures.grid import GRID_TRACE_NAME

from app.state import ids
from app.state.context import AppContext
from app.state.filters import ImageFilter
from app.state.urlstate import ViewState
from app.views import finder, images, representation, shell
from pipeline.report.notes import NotesStore
from pipeline.store.run_store import RunStore

FAKES = {"labels": ["fake"]}


@pytest.fixture
def ctx(make_fake_run, app_config):
    make_fake_run(n_images=48, n_cells=4)
    return AppContext(app_config)


def _hover(fig):
    return fig.data[trace_index(fig, figures.HOVER_TRACE_NAME)]


def _at(name):
    """Index of the representation figure's trace ``name``, where its patches put it."""
    return trace_index(REPRESENTATION_TRACES, name)


def _progress(_value):
    pass


def test_table_rows_are_the_cells_sorted_by_accuracy_with_their_facts(ctx):
    rows, info = finder.table_rows(ctx, "fake-run", None)
    view = ctx.run("fake-run")
    cells = {c["id"]: c for c in view.cells["cells"]}
    assert len(rows) == len(cells) and "click a row" in info
    accuracies = [r["accuracy"] for r in rows]
    assert accuracies == sorted(accuracies)
    assert accuracies[0] == pytest.approx(min(c["accuracy"] for c in cells.values()), abs=1e-4)
    logit = np.asarray(RunStore(view.path).load_array("logit"), dtype=np.float64)
    for row in rows:
        cell, members = cells[row["cell"]], view.cell_members(row["cell"])
        assert row["key"] == str(row["cell"]) and row["n"] == cell["n"]
        assert row["real_wrong"] == cell["real_wrong"] and row["fake_wrong"] == cell["fake_wrong"]
        assert row["accuracy"] == pytest.approx(cell["accuracy"], abs=1e-4)
        assert row["confidence"] == pytest.approx(cell["mean_confidence"], abs=1e-4)
        assert row["boundary"] == pytest.approx(abs(np.arcsinh(logit[members].mean())), abs=1e-4)
        assert row["side"] == ("fake" if logit[members].mean() > 0 else "real")
        gens = [view.records[i]["generator"] for i in members]
        assert row["mix"] == " · ".join(f"{g} {gens.count(g) / len(gens):.0%}"
                                        for g in sorted(set(gens), key=lambda g: (-gens.count(g), g)))


def test_table_follows_the_filter(ctx):
    rows, info = finder.table_rows(ctx, "fake-run", {"labels": ["real"], "outcomes": ["wrong"]})
    view = ctx.run("fake-run")
    expected = {c["id"]: c["real_wrong"] for c in view.cells["cells"] if c["real_wrong"]}
    assert {r["cell"]: r["n"] for r in rows} == expected
    assert all(r["accuracy"] == 0 and r["fake_wrong"] == 0 for r in rows)
    assert f"{len(expected)} of 4 cells" in info
    rows, info = finder.table_rows(ctx, "fake-run", {"name": "no-such-file"})
    assert rows == [] and "0 of 4 cells" in info


def test_a_row_click_routes_to_the_cell_and_an_open_cell_selects_its_row(ctx):
    current = ViewState(run="fake-run", cell=0, sel=(1, 2))
    state, write = shell.route(ctx, ids.FINDER_TABLE, {"rowId": "2", "colId": "accuracy"}, current)
    assert (state.cell, state.sel, write) == (2, (), True)
    for bad in (None, {"rowId": None}, {"rowId": "99"}, {"rowId": "x"}):  # no row, no such cell
        assert shell.route(ctx, ids.FINDER_TABLE, bad, current) == (current, False)
    assert finder.table_selection(3) == ({"ids": ["3"]}, {"rowId": "3", "rowPosition": "middle"})
    assert finder.table_selection(None) == ([], no_update)


def test_a_label_filter_changes_the_grid_count_and_the_glyph_counts(ctx):
    view = ctx.run("fake-run")
    members = view.cell_members(1)
    fakes = [int(i) for i in members if view.label[i] == 1]
    assert 0 < len(fakes) < len(members)
    # the unfiltered grid first, then the filtered one: its own job and its own grid file
    request = images.JOB.render(ctx, 1, "fake-run", None, None)[-1]
    full, _, _ = images.JOB.prepare(ctx, request, _progress)
    assert sorted(full.data[trace_index(full, GRID_TRACE_NAME)].customdata) == members.tolist()
    fig, shown, message, request = images.JOB.render(ctx, 1, "fake-run", None, FAKES)
    assert request["filter"] == FAKES and "Preparing" in message
    fig, shown, _ = images.JOB.prepare(ctx, request, _progress)
    assert sorted(fig.data[trace_index(fig, GRID_TRACE_NAME)].customdata) == fakes
    assert shown["filter"] == ImageFilter(labels=("fake",)).key()
    grid = artifacts.read_grid(ctx.app_cache(view), 1, shown["filter"])
    assert grid["n"] == len(fakes) and sum(i >= 0 for i in grid["order"]) == len(fakes)
    # cached now: drawn at once; the unfiltered grid is still there, unchanged
    fig2, _, _, request2 = images.JOB.render(ctx, 1, "fake-run", None, FAKES)
    assert request2 is no_update and sorted(fig2.data[trace_index(fig2, GRID_TRACE_NAME)].customdata) == fakes
    assert artifacts.read_grid(ctx.app_cache(view), 1)["n"] == len(members)
    assert images.title(ctx, "fake-run", 1, FAKES).endswith(f"· {len(fakes)} shown (filter)")

    # the glyphs: real wedges gone, fake counts those of the run; the info line says how many
    fig, info, _ = representation.render(ctx, "fake-run", None, FAKES)
    custom = np.asarray(_hover(fig).customdata)
    for row, cell in zip(custom, view.cells["cells"]):
        assert row[:5].tolist() == [cell["id"], 0, 0, cell["fake_correct"], cell["fake_wrong"]]
    wedges = [fig.data[trace_index(fig, name)] for name in WEDGE_TRACE_NAMES]
    assert all(len(t.x) == 0 for t in wedges if t.name.startswith("real"))
    assert "filter: 24 of 48 images, in 4 of 4 cells" in info
    for text, cell in zip(_hover(fig).text, view.cells["cells"]):
        n_fake = cell["fake_correct"] + cell["fake_wrong"]
        assert text.startswith(f"{n_fake} of {cell['n']} images match the filter<br>accuracy "
                               f"{cell['fake_correct'] / n_fake:.0%}")


def test_a_filter_that_leaves_a_cell_empty_says_so(ctx):
    view = ctx.run("fake-run")
    name = view.file_name(int(view.cell_members(2)[0]))  # a file of cell 2 only
    flt = {"name": name}
    fig, shown, message, request = images.JOB.render(ctx, 1, "fake-run", None, flt)
    assert shown is None and request in (None, no_update)
    assert "No image of cell 1 passes the filter" in fig.layout.annotations[0].text
    fig, info, _ = representation.render(ctx, "fake-run", None, flt)
    hover = _hover(fig)
    empty = [t for t in hover.text if t.startswith("no image matches the filter")]
    assert len(empty) == 3 and "(12 images hidden)" in empty[0]
    # the three empty cells are grey discs at full size; the one with a match keeps a small pie
    discs = trace_index(fig, figures.EMPTY_TRACE_NAME)
    assert fig.data[discs].name == figures.EMPTY_TRACE_NAME
    assert np.isnan(np.asarray(fig.data[discs].x, float)).sum() == 3


def test_name_search_lists_files_and_a_hit_opens_its_cell_and_the_viewer(ctx):
    view = ctx.run("fake-run")
    items, info = finder.hits(ctx, "fake-run", {"name": "IMG_0001"})  # img_00010 .. img_00019
    buttons = [c for c in items if getattr(c, "id", None)]
    assert [b.id["index"] for b in buttons] == list(range(10, 10 + finder.MAX_HITS))
    assert info == "10 of 48 images pass" and "10 file(s)" in items[0].children
    first = " ".join(str(x) for x in buttons[0].children[1:])
    assert f"cell {int(view.cell[10])}" in first and ("fake" if view.label[10] else "real") in first
    assert "and 2 more" in items[-1].children  # 10 files, MAX_HITS (8) listed
    items, _ = finder.hits(ctx, "fake-run", {"name": "img"})
    assert sum(bool(getattr(c, "id", None)) for c in items) == finder.MAX_HITS
    assert "and 40 more" in items[-1].children
    assert finder.hits(ctx, "fake-run", None) == ([], "all 48 images")
    assert finder.hits(ctx, "fake-run", FAKES) == ([], "24 of 48 images pass")

    hit = ids.finder_hit(30)
    state, write = shell.route(ctx, hit, None, ViewState(run="fake-run", cell=0, view="concepts"))
    assert (state.cell, state.view, write) == (int(view.cell[30]), "images", True)
    for bad in (999, -1, "x"):
        assert shell.route(ctx, ids.finder_hit(bad), None, ViewState(run="fake-run"))[1] is False
    assert finder.viewer_for_hit(hit, 1) == {"index": 30}
    assert finder.viewer_for_hit(hit, 0) is no_update  # a button created anew is no click


def test_filter_controls(ctx):
    assert finder.filter_from_controls([], [], [], [], [], [0, 1], "") is None
    assert finder.filter_from_controls(["gan"], None, ["fake"], ["wrong"], [], [0.2, 0.9], " img ") == \
        {"generators": ["gan"], "labels": ["fake"], "outcomes": ["wrong"], "p_range": [0.2, 0.9],
         "name": "img"}
    gen, cat, split, g, c, s = finder.controls_for_run(ctx, "fake-run", (["gan", "vqgan"], ["cat"], None))
    assert gen == [{"label": "diffusion (24)", "value": "diffusion"}, {"label": "gan (24)", "value": "gan"}]
    assert [o["value"] for o in split] == ["heldout", "train"]
    assert (g, c, s) == (["gan"], ["cat"], [])  # a generator the run lacks is dropped
    assert finder.controls_for_run(ctx, "missing", ((), (), ())) == ([], [], [], [], [], [])
    cleared = finder.controls(ctx, True, "fake-run", (["gan"], [], []))
    assert cleared[:3] == (no_update,) * 3 and cleared[3:] == ([], [], [], [], [], [0, 1], "")
    kept = finder.controls(ctx, False, "fake-run", (["gan", "vqgan"], [], []))
    assert kept[3] == ["gan"] and kept[6:] == (no_update,) * 4


def test_cells_with_notes_are_marked_and_the_marks_follow_the_notes(ctx):
    view = ctx.run("fake-run")
    fig, _, shown = representation.render(ctx, "fake-run", None)
    assert len(fig.data[trace_index(fig, figures.NOTES_TRACE_NAME)].x) == 0
    NotesStore(view.path).add("grass", cell=2)
    NotesStore(view.path).add("odd ears", images=[int(view.cell_members(3)[0])])
    patch = representation.notes_patch(ctx, "fake-run", shown, None)
    assert isinstance(patch, Patch)
    x = patch.to_plotly_json()["operations"]
    xs = next(op["params"]["value"] for op in x if op["location"] == ["data", _at(figures.NOTES_TRACE_NAME), "x"])
    a = view.cell_arrays
    assert sorted(xs) == sorted((a.x[[2, 3]] + 0.75 * a.r[[2, 3]]).tolist())
    assert representation.notes_patch(ctx, "fake-run", None, None) is no_update  # not drawn yet
    fig, _, _ = representation.render(ctx, "fake-run", None)
    assert len(fig.data[trace_index(fig, figures.NOTES_TRACE_NAME)].x) == 2


def test_filtered_glyph_area_follows_the_matching_images():
    cells = {"cells": [{"id": 0, "x": 0.0, "y": 0.0, "r": 1.0, "n": 100, "real_correct": 100,
                        "real_wrong": 0, "fake_correct": 0, "fake_wrong": 0}]}
    a = figures.CellArrays.of(cells)
    assert a.recounted(np.array([[25, 0, 0, 0]]), np.array([0.9]), np.array([1.0])).r[0] == pytest.approx(0.5)
    # one image of 100: not 0.1 of the radius (invisible) but the floor
    assert a.recounted(np.array([[1, 0, 0, 0]]), np.array([0.9]), np.array([1.0])).r[0] == \
        pytest.approx(figures.MIN_FILTERED_RADIUS)
    empty = a.recounted(np.zeros((1, 4)), np.array([np.nan]), np.array([np.nan]))
    assert empty.r[0] == 1.0 and empty.n[0] == 0
    assert figures.overview_colours(empty, np.zeros(1, bool)) == [figures.EMPTY_COLOUR]


def test_axes_say_what_they_mean_with_ticks_at_round_logits(ctx):
    fig, _, _ = representation.render(ctx, "fake-run", None)
    x, y = fig.layout.xaxis, fig.layout.yaxis
    assert x.showticklabels and y.showticklabels
    assert "mean logit" in x.title.text and "◀ real · 0 · fake ▶" in x.title.text
    assert "orthogonal to the classifier" in y.title.text
    ticks = dict(zip(x.ticktext, x.tickvals))
    assert ticks["0"] == 0 and ticks["+3"] == pytest.approx(np.arcsinh(3), abs=1e-4)
    assert ticks["-10"] == pytest.approx(-np.arcsinh(10), abs=1e-4)
    # the tooltip has the generator mix of the cell
    assert all("generators: " in t for t in _hover(fig).text)


def test_zooming_under_a_filter_patches_recounted_pies_and_empty_discs(ctx, monkeypatch):
    monkeypatch.setattr(figures, "GLYPH_CELLS", 1)  # the 4 cells of the fake run are "many"
    view = ctx.run("fake-run")
    name = view.file_name(int(view.cell_members(2)[0]))  # a file of cell 2 only: 3 cells empty
    flt = {"name": name}
    fig, info, _ = representation.render(ctx, "fake-run", None, flt)
    colours = _hover(fig).marker.color  # the overview: markers, grey where nothing matches
    assert [c == figures.EMPTY_COLOUR for c in colours] == [k != 2 for k in range(4)]
    assert "filter: 1 of 48 images, in 1 of 4 cells" in info
    one = view.cells["cells"][0]  # an empty cell alone in view: its grey disc is patched in
    around = {"xaxis.range[0]": one["x"] - 1e-3, "xaxis.range[1]": one["x"] + 1e-3,
              "yaxis.range[0]": one["y"] - 1e-3, "yaxis.range[1]": one["y"] + 1e-3}
    patch, info, _ = representation.level_of_detail(ctx, "fake-run", "fake-run", around, None, flt)
    ops = {tuple(op["location"]): op["params"]["value"] for op in patch.to_plotly_json()["operations"]}
    disc_x = np.frombuffer(base64.b64decode(ops[("data", _at(figures.EMPTY_TRACE_NAME), "x")]["bdata"]), dtype="<f4")
    assert np.isnan(disc_x).sum() == 1 and np.nanmin(np.abs(disc_x - one["x"])) < 1e-5
    assert all(ops[("data", _at(name), "x")]["bdata"] == "" for name in WEDGE_TRACE_NAMES)  # no wedge: it is empty
    assert ops[("data", _at(figures.HOVER_TRACE_NAME), "marker", "color")][0] == "rgba(0,0,0,0)"
