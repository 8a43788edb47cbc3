"""The app's side of scoring new images with a run and of the cross-generator matrix (issue 13):
applied sets opened as pseudo-runs ``RUN@SET`` (representation, grid, routes, explanations), the
"score a folder" job, and a matrix pair's misclassified images opened as an image set.

Known answers come from a real run of a generated data set with the tiny encoder and applied sets
made by ``pipeline.generalise.apply`` (as tests/unit/test_apply.py makes them): the set's ``cells.json``
tallies, the run's own predictions for its own images, the matrix's misclassified indices.
"""
from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest
from dash import no_update

from app.state import ids, imagesets
from app.figures.applied import MARKERS_NAME, applied_radii
from app.state.context import AppContext
from app.figures.common import trace_index
from app.figures.glyph_map import CLASSES, EMPTY_TRACE_NAME, HOVER_TRACE_NAME
from app.figures.grid import GRID_TRACE_NAME
from app.main import create_app
from app.figures.matrix import TABLES, TITLES, matrix_figure, pair_title
from app.state.runs import applied_id, run_choices, valid_run_id
from app.state.urlstate import ViewState, format_search, parse_search
from app.views import applied, attention, concepts, images, matrix, representation, shell
from pipeline.generalise.apply import apply_run
from pipeline.config import REPO_ROOT, from_dict, load_config
from pipeline.generalise.crossgen import TABLES as PIPELINE_TABLES
from pipeline.model.run_models import clear_cache, load_run_models, model_fingerprint
from pipeline.generalise.run_matrix import run_matrix
from pipeline.runner import run_pipeline
from pipeline.store.run_store import RunStore
from tests.fixtures_runs import FAKE_EXPLAIN, make_dataset


def hover_layer(fig):
    """The cells' hover/click layer of a representation figure."""
    return fig.data[trace_index(fig, HOVER_TRACE_NAME)]


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """A tiny-encoder run (48 images, 4 cells) with three applied sets: ``one-cell`` (the run's
    held-out images of its largest cell, labelled), ``blind`` (the same files without labels) and
    ``all-own`` (every image of the run)."""
    tmp = tmp_path_factory.mktemp("applied-app")
    data = make_dataset(tmp / "data")
    cfg = load_config(REPO_ROOT / "configs" / "test.yaml", [f"data.root={data}", f"runs_dir={tmp / 'runs'}",
                                                            f"cache_dir={tmp / 'cache'}", "cells.n_cells=4"])
    clear_cache()
    run = run_pipeline(cfg)
    records = run.read_records()
    big = max(run.read_cells()["cells"], key=lambda c: c["n"])["id"]
    picked = [r for r in records if r["cell"] == big][:8]
    with open(data / "one-cell.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "label", "generator"])
        for r in picked:
            w.writerow([r["path"], "fake" if r["label"] else "real", r["generator"]])
    blind = tmp / "blind"
    blind.mkdir()
    for n, r in enumerate(picked):
        shutil.copy(data / r["path"], blind / f"img{n}.png")
    apply_run(run.path, data / "one-cell.csv", name="one-cell")
    apply_run(run.path, blind, name="blind")
    apply_run(run.path, data, name="all-own")
    return cfg, run, picked


@pytest.fixture
def ctx(made, tmp_path):
    cfg, run, _ = made
    return AppContext(from_dict({"runs_dir": str(run.path.parent), "cache_dir": str(cfg.cache_path),
                                 "encoder": {"name": "tiny"}}))


def hover_counts(fig) -> dict[int, list[int]]:
    """cell id -> the four wedge counts the glyph layer carries (CLASSES order)."""
    return {c[0]: c[1:5] for c in hover_layer(fig).customdata}


# -- the pseudo-run ---------------------------------------------------------------------------------
def test_an_applied_set_opens_as_a_pseudo_run_listed_under_its_run(ctx, made):
    _, run, picked = made
    rid = applied_id(run.run_id, "one-cell")
    view = ctx.run(rid)
    assert view is not None and view.is_applied and view.parent_id == run.run_id and view.set_name == "one-cell"
    assert [r["path"] for r in view.records] == [r["path"] for r in picked]
    assert view.describe() == f"applied set one-cell of run {run.run_id}"
    assert view.meta["encoder"]["name"] == "tiny"  # the run's encoder explains the set's images
    options = [o["value"] for o in run_choices(ctx.runs_path)]
    sets = [applied_id(run.run_id, s.name) for s in run.applied_sets()]  # by name, under their run
    assert rid in sets and options[options.index(run.run_id):][:1 + len(sets)] == [run.run_id] + sets
    for bad in (f"{run.run_id}@../x", f"{run.run_id}@.hidden", f"{run.run_id}@nope", f"..@one-cell",
                f"{run.run_id}@one-cell@x", f"{run.run_id}@"):
        assert ctx.run(bad) is None, bad
    assert not valid_run_id(f"{run.run_id}@a/b") and valid_run_id(rid)
    line, *_ = shell.status(ctx, rid)
    assert line.startswith(f"applied set one-cell of run {run.run_id} · scored with its encoder tiny")


def test_the_applied_glyphs_count_the_sets_tallies_and_cells_it_missed_are_drawn_empty(ctx, made):
    _, run, picked = made
    rid = applied_id(run.run_id, "one-cell")
    tallies = {c["id"]: c for c in RunStore(run.path).applied("one-cell").read_cells()["cells"]}
    empty = [k for k, c in tallies.items() if c["n"] == 0]
    assert empty and sum(c["n"] for c in tallies.values()) == len(picked)  # the test needs empty cells

    fig, info, shown = representation.render(ctx, rid, None, None, None, "set")
    assert shown == rid and f"{len(picked)} images of the set in {4 - len(empty)} of 4 cells" in info
    assert hover_counts(fig) == {k: [c[name] for name in CLASSES] for k, c in tallies.items()}
    # the cells the set missed are the grey discs (one polygon each), with words in their tooltip
    discs = np.isnan(np.asarray(fig.data[trace_index(fig, EMPTY_TRACE_NAME)].y, dtype=float)).sum()
    assert discs == len(empty)
    texts = dict(zip([c[0] for c in hover_layer(fig).customdata], hover_layer(fig).text))
    for k in empty:
        assert texts[k].startswith("no image of this set fell in this cell")
    full = max(tallies, key=lambda k: tallies[k]["n"])
    assert f"this set: {tallies[full]['n']} images" in texts[full] and "training images here" in texts[full]
    # recounted from the records under a filter that keeps them all: the same counts
    counts = representation.on_screen(ctx, ctx.run(rid), {"p_range": [0, 1], "labels": ["real", "fake"]}, "set")[1]
    assert counts.counts.tolist() == [[tallies[k][name] for name in CLASSES] for k in counts.ids.tolist()]
    # glyph areas follow the set's counts on one scale (the run's radius where it missed)
    arrays = ctx.run(rid).cell_arrays
    run_r = np.array([tallies[k]["run_r"] for k in arrays.ids.tolist()])
    np.testing.assert_allclose(arrays.r, applied_radii(arrays.n, run_r))
    assert all(arrays.r[arrays.n == 0] == run_r[arrays.n == 0])


def test_an_unlabelled_set_is_drawn_by_prediction_with_no_right_or_wrong(ctx, made):
    _, run, picked = made
    rid = applied_id(run.run_id, "blind")
    tallies = {c["id"]: c for c in RunStore(run.path).applied("blind").read_cells()["cells"]}
    fig, info, _ = representation.render(ctx, rid, None, None, None, "set")
    assert hover_counts(fig) == {k: [c["unlabelled_pred_real"], 0, c["unlabelled_pred_fake"], 0]
                                 for k, c in tallies.items()}
    assert "no labels: predictions only" in info
    assert all("right" not in t for t in hover_layer(fig).text)
    note, style = applied.legend_note(ctx, rid, "set")
    assert style == {} and "coloured by their prediction" in str(note)
    _, _, _, metrics = shell.status(ctx, rid)
    assert "No labels: predictions only" in str(metrics)
    view = ctx.run(rid)
    assert set(view.outcome(i) for i in range(view.n_images)) == {"unlabelled"}
    assert images.title(ctx, rid, int(view.cell[0])).endswith("no labels: predictions only")
    # no image without a label passes a label or right/wrong filter
    from app.state.filters import mask
    assert not mask(view, {"outcomes": ["wrong"]}).any() and not mask(view, {"labels": ["real"]}).any()


def test_both_draws_the_runs_glyphs_with_the_sets_images_over_them(ctx, made):
    _, run, picked = made
    rid = applied_id(run.run_id, "one-cell")
    fig, info, _ = representation.render(ctx, rid, None, None, None, "both")
    run_cells = {c["id"]: c for c in run.read_cells()["cells"]}
    assert hover_counts(fig) == {k: [c[name] for name in CLASSES] for k, c in run_cells.items()}
    markers = fig.data[trace_index(fig, MARKERS_NAME)]
    records = RunStore(run.path).applied("one-cell").read_records()
    np.testing.assert_allclose(markers.x, [r["x"] for r in records], atol=1e-5)
    np.testing.assert_allclose(markers.y, [r["y"] for r in records], atol=1e-5)
    assert [c[0] for c in markers.customdata] == [r["cell"] for r in records]  # a click opens the cell
    symbols = ["circle" if r["correct"] == 1 else "x" for r in records]
    assert list(markers.marker.symbol) == symbols
    assert "markers: the set's images over the run's training glyphs" in info
    # a filter picks the markers; the glyphs stay the run's
    fig, _, _ = representation.render(ctx, rid, None, {"labels": ["fake"]}, None, "both")
    assert len(fig.data[trace_index(fig, MARKERS_NAME)].x) == sum(r["label"] == 1 for r in records)
    assert hover_counts(fig) == {k: [c[name] for name in CLASSES] for k, c in run_cells.items()}


def test_the_data_switch_lists_the_sets_and_keeps_the_open_cell(ctx, made):
    _, run, _ = made
    rid = applied_id(run.run_id, "one-cell")
    options, layers_style, title, _ = applied.switch(ctx, run.run_id)
    assert [o["value"] for o in options] == [run.run_id] + [applied_id(run.run_id, s.name)
                                                             for s in run.applied_sets()]
    assert {"all-own", "blind", "one-cell"} <= {s.name for s in run.applied_sets()}
    assert layers_style == {"display": "none"} and title == "Representation"
    _, layers_style, title, _ = applied.switch(ctx, rid)
    assert layers_style == {} and f"applied set one-cell of run {run.run_id}" in str(title)
    state, write = shell.route(ctx, ids.REPR_DATA, rid, ViewState(run=run.run_id, cell=2, sel=(1, 2)))
    assert write and state == ViewState(run=rid, cell=2)
    assert shell.route(ctx, ids.REPR_DATA, f"{run.run_id}@nope", ViewState(run=run.run_id)) == \
        (ViewState(run=run.run_id), False)


# -- the other views on an applied set ----------------------------------------------------------------
def test_the_pseudo_run_opens_its_cells_grid_with_the_sets_images(ctx, made, tmp_path):
    _, run, picked = made
    rid = applied_id(run.run_id, "one-cell")
    view = ctx.run(rid)
    cell = int(np.bincount(view.cell).argmax())
    assert images.title(ctx, rid, cell).startswith(f"Cell {cell} of applied set one-cell · ")
    fig, shown, message, request = images.JOB.render(ctx, cell, rid, None, pending=None)
    assert request["run"] == rid and request["cell"] == cell
    fig, shown, _ = images.JOB.prepare(ctx, request, lambda *_: None)
    members = [i for i, r in enumerate(view.records) if r["cell"] == cell]
    grid = fig.data[trace_index(fig, GRID_TRACE_NAME)]
    assert sorted(grid.customdata) == members
    names = [Path(picked[i]["path"]).name for i in grid.customdata]
    assert all(Path(t.split("\n")[0]).name == n for t, n in zip(grid.text, names))
    assert shown["run"] == rid and ".applied." in str(ctx.app_cache(view))
    # a cell the set never reached says so
    missed = next(c["id"] for c in view.cells["cells"] if c["n"] == 0)
    fig, _, _, request = images.JOB.render(ctx, missed, rid, None, pending=None)
    assert request is no_update and "is in cell" in fig.layout.annotations[0].text

    client = create_app(ctx.cfg).server.test_client()
    for url in (f"/files/thumb/{rid}/0.jpg", f"/files/image/{rid}/0",
                f"/files/sprite/{rid}/{shown['sprite']}.jpg"):
        assert client.get(url).status_code == 200, url
    assert client.get(f"/files/thumb/{rid}/{len(picked)}.jpg").status_code in (403, 404)
    assert client.get(f"/files/thumb/{run.run_id}@nope/0.jpg").status_code == 404


def test_explanations_of_an_applied_image_are_its_runs(ctx, made):
    """Same file, same models: an applied image's relevance maps equal the run's own maps of it,
    cached inside the set's folder."""
    from pipeline.explain.cache import get_maps

    _, run, picked = made
    set_dir = run.path / "applied" / "one-cell"
    assert model_fingerprint(set_dir) == model_fingerprint(run.path)
    assert load_run_models(set_dir) is load_run_models(run.path)
    own = next(i for i, r in enumerate(run.read_records()) if r["path"] == picked[0]["path"])
    mine, theirs = get_maps(set_dir, [0])[0], get_maps(run.path, [own])[own]
    np.testing.assert_allclose(mine.maps, theirs.maps, atol=1e-5)
    assert mine.logit == pytest.approx(theirs.logit, abs=1e-4)
    assert (set_dir / "relevance").is_dir()
    # the attention view accepts a selection inside the open cell of the set
    rid = applied_id(run.run_id, "one-cell")
    view = ctx.run(rid)
    cell = int(view.cell[0])
    inside = [i for i in range(view.n_images) if int(view.cell[i]) == cell][:2]
    result = attention.show(ctx, {"ids": inside}, rid, cell)
    assert getattr(result, "request", {}).get("indices") == inside


def test_concepts_of_an_applied_cell_count_its_unlabelled_segments(ctx, made):
    from pipeline.explain.cache import get_concepts

    _, run, _ = made
    set_dir = run.path / "applied" / "blind"
    view = ctx.run(applied_id(run.run_id, "blind"))
    cell = int(np.bincount(view.cell).argmax())
    result = get_concepts(set_dir, cell)
    assert result["concepts"] and all(c["segments_unlabelled"] == c["size"] and c["segments_real"] == 0
                                      for c in result["concepts"])
    first = result["concepts"][0]
    block = concepts.label_share(first)
    assert f"{concepts.plural(first['size'], 'segment')}, all from images without a label" in str(block)
    n = len(first["images"])  # and its images: none real or fake
    assert concepts.images_words(n, concepts.image_counts(first, view.label)) == (
        f"{concepts.plural(n, 'image')} ({n} without a label)")


# -- the score-a-folder job ---------------------------------------------------------------------------
def test_scoring_a_folder_from_the_app_lists_the_new_set(ctx, made, tmp_path):
    _, run, picked = made
    folder = tmp_path / "batch"
    (folder / "1_fake").mkdir(parents=True)
    (folder / "0_real").mkdir()
    for n, r in enumerate(picked[:4]):
        shutil.copy(run.data_root() / r["path"], folder / ("1_fake" if r["label"] else "0_real") / f"{n}.png")
    reports = []
    message, picker, switch = applied.score(ctx, str(folder), "", run.run_id,
                                            lambda stage, d, t: reports.append(stage))
    rid = applied_id(run.run_id, "batch")
    assert "Applied set batch is ready: 4 images" in str(message) and format_search(ViewState(run=rid)) in str(message)
    assert rid in [o["value"] for o in picker] and rid in [o["value"] for o in switch]
    assert {"scan", "score", "write"} <= set(reports)
    message, picker, _ = applied.score(ctx, "", "", run.run_id, lambda *_: None)
    assert "name the folder" in str(message) and picker is no_update

    shared = from_dict({"runs_dir": str(run.path.parent), "cache_dir": str(ctx.cache_path),
                        "server": {"mode": "shared", "data_roots": [str(tmp_path / "lab")]}})
    (tmp_path / "lab").mkdir()
    message, picker, _ = applied.score(AppContext(shared), str(folder), "x", run.run_id, lambda *_: None)
    assert "outside the data folders" in str(message) and str(tmp_path / "lab") in str(message)
    assert picker is no_update and not (run.path / "applied" / "x").exists()


# -- the matrix and its image sets ----------------------------------------------------------------------
def test_a_matrix_pair_opens_exactly_its_misclassified_images(ctx, made):
    _, run, _ = made
    m = run_matrix(run.path)
    assert TABLES == PIPELINE_TABLES
    # the heatmaps show the matrix's figures
    fig = matrix_figure(m, "auc")
    gens = m["generators"]
    for table in TABLES:
        for r, train in enumerate(gens):
            for c, test in enumerate(gens):
                cell = m[table][train][test]
                assert fig.data[trace_index(fig, TITLES[table])].z[r][c] == (None if cell is None else cell["auc"])
    table, train, test = next((t, a, b) for t in TABLES for a in gens for b in gens
                              if (m[t][a] or {}).get(b) and m[t][a][b]["misclassified"])
    wrong = sorted(m[table][train][test]["misclassified"])
    click = {"points": [{"curveNumber": TABLES.index(table), "x": gens.index(test), "y": gens.index(train)}]}
    opened, message = matrix.open_pair(ctx, click, applied_id(run.run_id, "one-cell"))  # from a set too
    assert opened["run"] == run.run_id and imagesets.is_set(opened["cell"])
    assert f"{len(wrong)} images" in message

    view = ctx.run(run.run_id)
    key = opened["cell"]
    assert view.cell_members(key).tolist() == wrong
    state, write = shell.route(ctx, ids.MATRIX_OPEN, opened, ViewState(run=applied_id(run.run_id, "blind"), cell=1))
    assert write and state == ViewState(run=run.run_id, cell=key, view="images")
    assert parse_search(format_search(state)) == state  # the link keeps the set
    assert images.title(ctx, run.run_id, key) == f"{pair_title(table, train, test)} · {len(wrong)} images"
    request = images.JOB.render(ctx, key, run.run_id, None, pending=None)[-1]
    fig, shown, _ = images.JOB.prepare(ctx, request, lambda *_: None)
    assert sorted(fig.data[trace_index(fig, GRID_TRACE_NAME)].customdata) == wrong and shown["cell"] == key
    # a filter narrows the set's grid as it narrows a cell's
    fakes = [i for i in wrong if view.label[i] == 1]
    title = images.title(ctx, run.run_id, key, {"labels": ["fake"]})
    assert title.endswith(f"{len(fakes)} shown (filter)")
    # attention: a selection inside the set is accepted, one outside refused
    outside = next(i for i in range(view.n_images) if i not in wrong)
    assert attention.show(ctx, {"ids": wrong[:1]}, run.run_id, key).request["indices"] == wrong[:1]
    refused = attention.show(ctx, {"ids": [outside]}, run.run_id, key)
    assert "not in the open image set" in str(refused.message)
    # concepts are per cell; the highlight of a concept never lands on a set
    shown_concepts = concepts.show(ctx, "concepts", key, run.run_id)
    assert "Concepts are found per cell" in shown_concepts.message
    assert concepts.highlight(ctx, ids.concept_show(0), 1, run.run_id, key) is no_update
    assert representation.highlight(ctx, run.run_id, key, shown=run.run_id) is not no_update  # no ring, no error


def test_a_pair_without_misclassified_images_opens_nothing_and_a_run_with_one_generator_has_no_matrix(ctx, made):
    _, run, _ = made
    m = run_matrix(run.path)
    gens = m["generators"]
    fake = {**m, "one": {g: {t: {**(m["one"][g][t] or {}), "misclassified": [], "n_misclassified": 0}
                             for t in gens} for g in gens}}
    fig = matrix_figure(fake)
    assert "click to see them" not in str(fig.data[trace_index(fig, TITLES["one"])].hovertext)
    shown = matrix.show(ctx, None, run.run_id, "auc")
    assert shown.values[1] == {} and "2 generators" in shown.values[4]  # kept: drawn at once
    asked = matrix.show(ctx, {"run": run.run_id}, run.run_id, "auc")
    assert not hasattr(asked, "request")  # kept: shown, never computed again


def test_image_set_keys_are_checked_before_naming_a_file(tmp_path):
    key = imagesets.save_set(tmp_path, [5, 3, 3], "three and five")
    assert imagesets.read_set(tmp_path, key)["ids"] == [3, 5]
    assert imagesets.save_set(tmp_path, [3, 5], "three and five") == key  # same set, same key
    for bad in ("set:../../etc", "set:ABCDEF0123456789", "set:12", 3, None, "cell-1"):
        assert imagesets.read_set(tmp_path, bad) is None
    assert imagesets.cell_key("set:0123456789abcdef") == "set:0123456789abcdef"
    assert imagesets.cell_key("7") == 7 and imagesets.cell_key("x") is None and imagesets.cell_key(True) is None
    assert parse_search("?run=r&cell=set%3A..%2F..").cell is None
