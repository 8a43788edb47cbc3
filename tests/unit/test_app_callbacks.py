"""The app's callback bodies, called directly (no browser): views, router, notes, status."""
import numpy as np
import pytest
from dash import Patch, no_update
from PIL import Image

from app.files import artifacts
from app.figures.common import trace_index
from app.figures.concept_palette import concept_colour
from app.figures.glyph_map import HIGHLIGHT_TRACE_NAME, HOVER_TRACE_NAME, REPRESENTATION_TRACES, WEDGE_TRACE_NAMES
from app.figures.grid import GRID_TRACE_NAME, GRID_TRACES

from app.state import ids
from app.state.context import AppContext
from app.jobs.work import new_run_config
from app.state.urlstate import ViewState
from app.views import attention, concepts, images, notes, representation, shell
from pipeline.report.notes import NotesStore
from pipeline.explain.overlays import muted
from pipeline.explain.results import concepts_plan
from tests.fixtures_runs import FAKE_EXPLAIN, known_contributions


@pytest.fixture
def ctx(make_fake_run, app_config):
    make_fake_run(n_images=30, n_cells=3)
    return AppContext(app_config)


def _texts(component):
    """All strings inside a Dash component tree."""
    out = []

    def walk(c):
        if c is None:
            return
        if isinstance(c, (str, int, float)):
            out.append(str(c))
        elif isinstance(c, (list, tuple)):
            for x in c:
                walk(x)
        else:
            walk(getattr(c, "children", None))

    walk(component)
    return " ".join(out)


def _find(component, cls):
    found = []

    def walk(c):
        if isinstance(c, (list, tuple)):
            for x in c:
                walk(x)
        elif hasattr(c, "children") or hasattr(c, "className"):
            if cls in (getattr(c, "className", None) or "").split():
                found.append(c)
            walk(getattr(c, "children", None))

    walk(component)
    return found


class Progress:
    def __init__(self):
        self.calls = []

    def __call__(self, value):
        self.calls.append(value)


def test_default_run_and_unknown_runs(ctx):
    assert ctx.initial_run() == "fake-run"
    assert ctx.run("fake-run").n_images == 30
    for bad in (None, "nope", "../fake-run", "fake-run/..", "/etc", ".hidden"):
        assert ctx.run(bad) is None


def test_representation_render_and_highlight_patch(ctx):
    fig, info, shown = representation.render(ctx, "fake-run", 1)
    hover = fig.data[trace_index(fig, HOVER_TRACE_NAME)]
    assert len(hover.x) == 3 and "3 cells · 30 images" in info and shown == "fake-run"
    assert len(fig.data[trace_index(fig, HIGHLIGHT_TRACE_NAME)].x) > 0  # ring drawn on the open cell
    # the cell tooltip names the file facts that dominate the cell (all 40x32 PNGs here)
    assert all("files: all PNG · all 40x32" in t for t in hover.text)
    fig, info, shown = representation.render(ctx, "missing", None)
    assert shown is None and info == ""
    assert representation.highlight(ctx, "fake-run", 2, shown=None) is no_update  # not drawn yet
    patch = representation.highlight(ctx, "fake-run", 2, shown="fake-run")
    assert isinstance(patch, Patch)


def test_image_view_requests_a_job_then_draws_the_prepared_cell(ctx):
    fig, shown, message, request = images.JOB.render(ctx, 1, "fake-run", None, pending=None)
    assert shown is None and request["cell"] == 1 and "Preparing" in message
    assert images.title(ctx, "fake-run", 1).startswith("Cell 1 · 10 images")
    progress = Progress()
    fig, shown, message = images.JOB.prepare(ctx, request, progress)
    assert progress.calls[-1] == ("100", "drawing: 1/1", {"display": "block"})  # the report shows the bar
    view = ctx.run("fake-run")
    members = view.cell_members(1).tolist()
    t = fig.data[trace_index(fig, GRID_TRACE_NAME)]
    assert sorted(t.customdata) == members and len(t.text) == 10
    first = int(t.customdata[0])
    assert view.file_name(first) in t.text[0]
    assert ("label fake" if view.label[first] else "label real") in t.text[0]
    assert shown["cell"] == 1 and fig.layout.images[0].source.endswith(shown["sprite"] + ".jpg")
    # now cached: drawn at once, with the selection from the store, and a pending job is cleared
    sel = {"ids": members[:2], "from": "state"}
    fig2, shown2, _, request2 = images.JOB.render(ctx, 1, "fake-run", sel, pending=request)
    assert request2 is None and shown2 == shown
    grid2 = fig2.data[trace_index(fig2, GRID_TRACE_NAME)]
    assert sorted(int(grid2.customdata[p]) for p in grid2.selectedpoints) == members[:2]


def _patch_ops(patch) -> dict:
    return {tuple(op["location"]): op["params"]["value"] for op in patch.to_plotly_json()["operations"]}


def test_selection_is_outlined_around_tiles_not_painted_over_them(ctx):
    request = images.JOB.render(ctx, 0, "fake-run", None)[-1]
    fig, shown, _ = images.JOB.prepare(ctx, request, Progress())
    grid = fig.data[trace_index(fig, GRID_TRACE_NAME)]
    assert grid.selected.marker.color == "rgba(0,0,0,0)"  # no square over the image
    members = ctx.run("fake-run").cell_members(0).tolist()
    grid = artifacts.read_grid(ctx.app_cache(ctx.run("fake-run")), 0)
    # drawn by the user: only the outlines are patched in (plotly already marks the points)
    ops = _patch_ops(images.selection_patch(ctx, "fake-run", 0, {"ids": members[:1], "from": "graph"},
                                            shown))
    [outline] = ops[("layout", "shapes")]
    slot, cols = grid["order"].index(members[0]), grid["cols"]
    assert outline["x0"] < slot % cols + 0.5 < outline["x1"]  # around that image's tile
    assert outline["y1"] < -(slot // cols) - 0.5 < outline["y0"]
    assert ("data", trace_index(GRID_TRACES, GRID_TRACE_NAME), "selectedpoints") not in ops
    assert images.selection_patch(ctx, "fake-run", 1, {"ids": [], "from": "state"}, shown) is no_update
    ops = _patch_ops(images.selection_patch(ctx, "fake-run", 0, {"ids": members[:3], "from": "state"},
                                            shown))
    markers = trace_index(GRID_TRACES, GRID_TRACE_NAME)
    assert len(ops[("layout", "shapes")]) == 3 and len(ops[("data", markers, "selectedpoints")]) == 3


def test_attention_matrix_has_one_column_order_for_the_whole_selection(ctx):
    sel = {"ids": [0, 3], "from": "graph"}  # both in cell 0 (images 0..9)
    content, ready, message, request = attention.JOB.render(ctx, sel, "fake-run", 0, pending=None)
    assert ready is no_update and request["indices"] == [0, 3] and "Computing" in message
    # at once: the matrix with a placeholder per row (this run has no head.pt: no order yet)
    assert len(_find(content, "fx-attn-error")) == 2 and _find(content, "fx-attn-head") == []
    progress = Progress()
    content, ready, message = attention.JOB.prepare(ctx, request, progress, explain=FAKE_EXPLAIN)
    assert progress.calls and ready == {"run": "fake-run"}
    # the maps are shown before the deletion check has run: its marks say it is pending
    assert all(_texts(h).endswith("…") for h in _find(content, "fx-attn-head"))
    # the check is a job of its own, started once maps are shown, then the matrix redraws
    _, _, check = attention.CHECK.render(ctx, ready, "fake-run", None)
    assert check["run"] == "fake-run"
    checked, _ = attention.CHECK.prepare(ctx, check, Progress(), explain=FAKE_EXPLAIN)
    assert checked == "fake-run" and attention.CHECK.render(ctx, ready, "fake-run", checked) == (no_update,) * 3
    content, message = attention.redraw(ctx, checked, sel, "fake-run", 0)
    assert attention.redraw(ctx, checked, {"ids": [0, 12]}, "fake-run", 0) == (no_update, no_update)
    _, _, _, request2 = attention.JOB.render(ctx, sel, "fake-run", 0, pending=request)
    assert request2 is None  # shown from disk: a pending job is cleared
    [matrix] = _find(content, "fx-attn-matrix")
    heads = _find(matrix, "fx-attn-head")
    order = [int(h.to_plotly_json()["props"]["data-dim"]) for h in heads]
    # known contributions: linspace(-1, 1, 16) for image 0, reversed for image 3, so the mean
    # |contribution| ranks the ends first: d0 and d15 (1.0), d1 and d14, ...
    mean_abs = np.abs(np.stack([known_contributions(0), known_contributions(3)])).mean(axis=0)
    assert order == np.argsort(-mean_abs, kind="stable").tolist() and order[:4] == [0, 15, 1, 14]
    dims = _find(matrix, "fx-attn-dim")
    assert len(dims) == 32
    for index in (0, 3):  # every row in the header's order: a column reads down
        row = [int(d.to_plotly_json()["props"]["data-dim"]) for d in dims
               if d.to_plotly_json()["props"]["data-index"] == str(index)]
        assert row == order
    # the deletion check once per column, in words; d0 (gain 0, win 50%) fails and is marked
    failing = [int(h.to_plotly_json()["props"]["data-dim"]) for h in heads if "fails" in h.className]
    assert failing == [0]
    assert "d15 passes the deletion check" in heads[order.index(15)].title
    assert "✗ 50%" in _texts(heads[0]) and "✓ 80%" in _texts(heads[order.index(15)])
    # the summary row: mean contribution of d15 over the two images is (1 + -1) / 2 = 0
    assert "+0.00" in _texts(heads[order.index(15)])
    # every map opens the image viewer on its image, with that map as the overlay
    buttons = [b.id for b in _find(matrix, "fx-attn-map")]
    assert ids.viewer_open(3, 15) in buttons and ids.viewer_open(0, "aggregate") in buttons
    assert len(buttons) == 2 * 18
    # the overlay of dimension 5 is bright on its own rows (10, 11); elsewhere it shows the photo
    # (uniform grey 128), muted as every overlay's background is
    cache = ctx.app_cache(ctx.run("fake-run"))
    with Image.open(artifacts.attention_file(cache, 0, "d05")) as im:
        arr = np.asarray(im.convert("RGB").resize((32, 32)), dtype=float)
    photo = muted(np.full((1, 1, 3), 128, np.uint8))[0, 0, 0]
    assert abs(arr[10:12].mean() - photo) > 40 and abs(arr[20:30].mean() - photo) < 8


def test_attention_shows_each_image_as_soon_as_its_maps_are_drawn(ctx):
    sel = {"ids": [0, 2, 4, 6], "from": "graph"}
    request = attention.JOB.render(ctx, sel, "fake-run", 0)[-1]
    view = ctx.run("fake-run")
    pushed = []

    def push(value):  # what the panel shows of the running job, each time a pass is drawn
        (children, _), note = attention.partial_rows(ctx, value)
        pending = [c for c in _find(children, "fx-attn-error")]
        pushed.append((len(pending), note))

    attention.compute(ctx, view, request, lambda *a: None, explain=FAKE_EXPLAIN, partial=push)
    assert [p[0] for p in pushed] == [3, 2, 1, 0]  # one image per pass: 3 still computing, ...
    assert "Computing the maps of 3 more image(s)" in pushed[0][1] and pushed[-1][1] == ""


def test_attention_shows_at_most_eight_images(ctx):
    sel = {"ids": list(range(10)), "from": "graph"}  # the whole of cell 0
    request = attention.JOB.render(ctx, sel, "fake-run", 0)[-1]
    content, _, message = attention.JOB.prepare(ctx, request, Progress(), explain=FAKE_EXPLAIN)
    rows = _find(content, "fx-attn-big")
    assert len(rows) == 2 * attention.MAX_IMAGES and "first 8 of 10" in message


def test_a_selection_outside_the_open_cell_is_refused(ctx):
    # a link like ?cell=1&sel=0,1,2: images 0..2 are in cell 0
    content, _, message, request = attention.JOB.render(ctx, {"ids": [0, 1, 12]}, "fake-run", 1)
    assert content == [] and request is no_update
    assert "2 of the 3 selected images are not in cell 1" in _texts(message)


def test_concepts_message_says_when_they_come_from_a_sample(ctx):
    def sampled(run_dir, cell, progress=None):
        return FAKE_EXPLAIN[1](run_dir, cell, progress, n_images=200, n_images_used=62,
                               skipped=[{"index": 3, "message": "x"}, {"index": 9, "message": "y"}])

    request = concepts.JOB.render(ctx, "concepts", 1, "fake-run")[-1]
    content, message = concepts.JOB.prepare(ctx, request, Progress(),
                                            explain=(FAKE_EXPLAIN[0], sampled, FAKE_EXPLAIN[2]))
    assert message == ("3 concepts of cell 1, from a fixed random sample of 64 of its 200 images "
                       "(concepts.max_images); 2 unreadable images left out")
    assert concepts.JOB.render(ctx, "concepts", 1, "fake-run")[1] == message  # cached: same words


def test_attention_job_reports_errors_in_the_panel(ctx):
    def broken(*a, **k):
        raise RuntimeError("model files missing")

    request = attention.JOB.render(ctx, {"ids": [1]}, "fake-run", 0)[-1]
    content, _, message = attention.JOB.prepare(ctx, request, Progress(),
                                                explain=(broken, broken, broken))
    assert content == [] and "model files missing" in _texts(message)


def test_concepts_job_then_cached_view_and_patch_paths(ctx):
    assert concepts.JOB.render(ctx, "images", 2, "fake-run") == (no_update,) * 3
    content, message, request = concepts.JOB.render(ctx, "concepts", 2, "fake-run")
    assert request["cell"] == 2
    content, message = concepts.JOB.prepare(ctx, request, Progress(), explain=FAKE_EXPLAIN)
    assert len(content) == 3 and message == "3 concepts of cell 2"
    view = ctx.run("fake-run")
    first = view.cell_members(2).tolist()[:6]  # concept 1: one segment from each of these
    n_fake = int(view.label[first].sum())
    text = _texts(content[0])
    # one segment per image in the fake concepts: 6 segments from 6 images, each counted by label
    assert (f"6 segments from 6 images ({6 - n_fake} real, {n_fake} fake images) · 50% of the cell's "
            f"12 segments") in text
    assert (f"{6 - n_fake} segments from real images ({(6 - n_fake) / 6:.0%}), {n_fake} from fake images "
            f"({n_fake / 6:.0%})") in text
    assert not any("small concept" in _texts(c) for c in content)  # 6, 4, 2 of 12: all >= 10%
    tiny = {"size": 1, "profile": [0.0] * 16, "images": [first[0]], "segments_real": 1,
            "segments_fake": 0}
    assert ("small concept: fewer than 2 segments (under 10% of the cell's 20 segments, or a single "
            "segment)") in _texts(concepts.concept_block("fake-run", 2, 3, tiny, total=20))
    # "show its images": the highlight names the concept's images, the grid draws them
    h = concepts.highlight(ctx, ids.concept_show(0), 1, "fake-run", 2)
    assert h["ids"] == first and h["cell"] == 2 and "concept 1" in h["why"]
    assert concepts.highlight(ctx, ids.HIGHLIGHT_CLEAR, 1, "fake-run", 2) is None
    request = images.JOB.render(ctx, 2, "fake-run", None, None, h)[-1]
    fig, shown, _ = images.JOB.prepare(ctx, request, Progress())
    dotted = [sh for sh in fig.layout.shapes if sh.line.dash == "dot"]
    assert len(dotted) == 6 and {sh.line.color for sh in dotted} == {concept_colour(0)}  # concept 1's colour
    assert images.highlight_note("fake-run", 2, h)[0] == "Highlighted (dotted magenta): the 6 images of concept 1"
    shapes = _patch_ops(images.selection_patch(ctx, "fake-run", 2, None, shown, h))[("layout", "shapes")]
    assert [sh["line"]["color"] for sh in shapes] == [concept_colour(0)] * 6  # outlines redrawn in it
    assert images.highlight_note("fake-run", 1, h) == ("", {"display": "none"})  # another cell
    view = ctx.run("fake-run")
    cache = ctx.app_cache(view)
    assert artifacts.concept_patch(view, cache, 2, 1, 0).name == "c1-0.png"
    assert artifacts.concept_patch(view, cache, 2, 5, 0) is None
    # the app reads the pipeline's own concepts file in the run folder (no copy in its cache)
    assert artifacts.read_concepts(view, 2) == {**concepts_plan(view.path, 2).result.read(), "n_skipped": 0}
    assert not (cache / "concepts").exists()
    data = concepts_plan(view.path, 2).result.read()
    outside = view.path.parent / "outside.png"  # an intact (sealed) file, but...
    artifacts.write_sealed(outside, b"not the run's")
    data["concepts"][0]["patches"][0] = "../outside.png"
    concepts_plan(view.path, 2).result.write(data)
    assert artifacts.read_concepts(view, 2)["concepts"][0]["patches"][0] == "../outside.png"
    assert artifacts.concept_patch(view, cache, 2, 0, 0) is None  # ...outside the run folder
    assert artifacts.concept_patch(view, cache, 2, 0, 1).name == "c0-1.png"
    # a damaged patch makes the kept concepts stale: not shown, computed again
    (view.path / "concepts" / "cell-2" / "c1-0.png").write_bytes(b"damaged")
    assert artifacts.read_concepts(view, 2) is None and artifacts.concept_patch(view, cache, 2, 1, 0) is None


def test_notes_add_list_and_errors(ctx):
    msg, saved = notes.add_note(ctx, "fake-run", None, None, "x", "", on_images=False)
    assert not saved and "Open a cell" in _texts(msg)
    msg, saved = notes.add_note(ctx, "fake-run", 1, {"ids": []}, "x", "", on_images=True)
    assert not saved and "Select some images" in _texts(msg)
    msg, saved = notes.add_note(ctx, "fake-run", 1, None, "bird in yellow grass", "grass", False)
    assert saved and msg == "Note saved on cell 1."
    items, export = notes.list_notes(ctx, "fake-run")
    assert "bird in yellow grass" in _texts(items) and "grass" in _texts(items)
    assert any(getattr(a, "href", "") == "/files/notes/fake-run.csv" for a in export)


def test_a_note_names_its_dimensions_prefilled_from_the_attention_view(ctx):
    from tests.fixtures_runs import fake_get_maps

    sel = {"ids": [0, 2]}
    assert notes.attention_dims(ctx, "fake-run", sel) == []  # maps not drawn yet: nothing offered
    view = ctx.run("fake-run")
    for i, maps in fake_get_maps(view.path, [0, 2]).items():
        artifacts.render_attention(ctx.app_cache(view), i, maps)
    # contributions -1..1 over the 16 dimensions: largest |c| at both ends, so the columns start 0, 15, 1
    assert notes.attention_dims(ctx, "fake-run", sel) == [0, 15, 1]
    msg, saved = notes.add_note(ctx, "fake-run", 1, sel, "halo", "", True, dims=[15, 0])
    assert saved and NotesStore(ctx.run_dir("fake-run")).list()[0]["dims"] == [15, 0]
    items, export = notes.list_notes(ctx, "fake-run")
    assert "2 image(s) · dimensions 15, 0 · " in _texts(items)
    assert any(getattr(a, "href", "") == "/files/findings/fake-run.pdf" for a in export)
    msg, saved = notes.add_note(ctx, "fake-run", 1, sel, "x", "", True, dims=[16])
    assert not saved and "0..15" in _texts(msg)


def test_a_note_records_who_wrote_it_and_others_see_the_name(ctx, monkeypatch):
    monkeypatch.setattr(notes, "current_identity", lambda cfg: ("alice", "analyst"))
    msg, saved = notes.add_note(ctx, "fake-run", 1, None, "halo around the hair", "", False)
    assert saved and NotesStore(ctx.run_dir("fake-run")).list()[0]["author"] == "alice"
    monkeypatch.setattr(notes, "current_identity", lambda cfg: ("bob", "analyst"))
    items, _ = notes.list_notes(ctx, "fake-run")
    assert "cell 1 · " in _texts(items) and _texts(items).endswith("· by alice show")
    assert "delete" not in _texts(items)  # bob, an analyst, may not delete alice's note


def test_router_follows_clicks_selection_url_and_notes(ctx):
    start = ViewState(run="fake-run")
    state, write = shell.route(ctx, None, "", ViewState())
    assert state == ViewState(run="fake-run") and write
    state, write = shell.route(ctx, ids.URL, "?run=fake-run&cell=2&sel=4-5", start)
    assert state == ViewState(run="fake-run", cell=2, sel=(4, 5)) and not write
    # an unknown run in a link: nothing opens (not the default run, where notes would go astray)
    state, write = shell.route(ctx, ids.URL, "?run=ghost&cell=2&sel=1", start)
    assert state == ViewState(run="ghost") and not write
    line, notice, style, metrics = shell.status(ctx, "ghost")
    assert style == {} and "Run 'ghost' cannot be shown" in _texts(notice) and "no run named" in _texts(notice)
    assert metrics == "" and representation.render(ctx, "ghost", None)[2] is None
    click = {"points": [{"customdata": [1, 3, 1, 4, 2, 0.7, 0.8]}]}
    state, _ = shell.route(ctx, ids.REPR_GRAPH, click, ViewState(run="fake-run", cell=2, sel=(4,)))
    assert state == ViewState(run="fake-run", cell=1)
    box = {"points": [{"customdata": 7}, {"customdata": 3}]}
    state, _ = shell.route(ctx, ids.IMAGES_GRAPH, box, ViewState(run="fake-run", cell=1))
    assert state.sel == (3, 7)
    state, _ = shell.route(ctx, ids.VIEW_TOGGLE, "concepts", state)
    assert state.view == "concepts"
    # a concept's images highlighted from the concept view: the grid comes back to show them
    back, write = shell.route(ctx, ids.STORE_HIGHLIGHT, {"ids": [3], "cell": 1}, state)
    assert back.view == "images" and write
    assert shell.route(ctx, ids.STORE_HIGHLIGHT, None, state) == (state, False)
    view = ctx.run("fake-run")
    members = view.cell_members(2).tolist()[:2]
    note = NotesStore(view.path).add("look", images=members)
    state, write = shell.route(ctx, ids.note_jump(note["id"]), None, ViewState(run="fake-run"))
    assert state == ViewState(run="fake-run", cell=2, sel=tuple(members)) and write


def test_status_line_metrics_and_stand_in_notice(make_fake_run, app_config):
    make_fake_run(n_images=12, n_cells=2, run_id="standin", encoder_fallback="no CLIP weights offline")
    ctx = AppContext(app_config)
    line, notice, style, metrics = shell.status(ctx, "standin")
    assert "dinov2_standin" in line and "12 images" in line
    assert style == {} and "no CLIP weights offline" in _texts(notice) and "CLIP was not used" in _texts(notice)
    assert "held-out accuracy" in _texts(metrics) and "gan" in _texts(metrics)
    make_fake_run(n_images=12, n_cells=2, run_id="clip")
    assert shell.status(ctx, "clip")[2] == {"display": "none"}


def test_new_run_config(app_config, tmp_path):
    folder = tmp_path / "set"
    folder.mkdir()
    manifest = tmp_path / "m.csv"
    manifest.write_text("path,label\n")
    cfg = new_run_config(app_config, str(folder), "bird, cat", "")
    assert cfg.data.root == str(folder.resolve()) and cfg.data.manifest is None
    assert cfg.data.categories == ("bird", "cat") and cfg.data.generators is None
    cfg = new_run_config(app_config, str(manifest), "", "progan")
    assert cfg.data.manifest == str(manifest.resolve()) and cfg.data.generators == ("progan",)
    with pytest.raises(ValueError, match="does not exist"):
        new_run_config(app_config, str(tmp_path / "nope"), "", "")
    with pytest.raises(ValueError, match="neither a folder"):
        new_run_config(app_config, __file__, "", "")
    assert new_run_config(app_config, "", None, None).data == app_config.data


def test_relayout_ranges_are_read_like_plotly_sends_them():
    view_from = representation.view_from_relayout
    assert view_from({"xaxis.range[0]": -1, "xaxis.range[1]": 2, "yaxis.range[0]": 0,
                      "yaxis.range[1]": 3}, None) == {"x0": -1, "x1": 2, "y0": 0, "y1": 3}
    prev = {"x0": -1.0, "x1": 2.0, "y0": 0.0, "y1": 3.0}
    assert view_from({"xaxis.range": [5, 6]}, prev) == {"x0": 5, "x1": 6, "y0": 0, "y1": 3}
    assert view_from({"xaxis.autorange": True, "yaxis.autorange": True}, prev) is None
    assert view_from({"dragmode": "zoom"}, prev) == prev and view_from(None, prev) == prev


def decoded(typed: dict) -> np.ndarray:
    """A plotly.js typed array (``{"dtype": "f4", "bdata": base64}``) as numbers."""
    import base64

    assert typed["dtype"] == "f4"
    return np.frombuffer(base64.b64decode(typed["bdata"]), dtype="<f4").astype(float)


def test_level_of_detail_draws_pies_only_for_the_cells_in_view(ctx, monkeypatch):
    from app.figures import glyph_map as figures

    monkeypatch.setattr(figures, "GLYPH_CELLS", 1)  # the 3 cells of the fake run are "many"
    view = ctx.run("fake-run")
    items = sorted(view.cells["cells"], key=lambda c: c["x"])
    fig, info, _ = representation.render(ctx, "fake-run", None)
    assert [t.name for t in fig.data] == list(REPRESENTATION_TRACES)  # what the patches count on
    wedge_points = sum(np.isfinite(np.asarray(fig.data[trace_index(fig, name)].x, dtype=float)).sum()
                       for name in WEDGE_TRACE_NAMES)
    hover = fig.data[trace_index(fig, HOVER_TRACE_NAME)]
    assert wedge_points == 0 and "zoom in to see pies" in info  # overview: markers only
    assert all(c != "rgba(0,0,0,0)" for c in hover.marker.color)

    one = items[0]  # zoom onto the leftmost cell alone
    relayout = {"xaxis.range[0]": one["x"] - 1e-3, "xaxis.range[1]": one["x"] + 1e-3,
                "yaxis.range[0]": one["y"] - 1e-3, "yaxis.range[1]": one["y"] + 1e-3}
    patch, info, stored = representation.level_of_detail(ctx, "fake-run", "fake-run", relayout, None)
    ops = {tuple(op["location"]): op["params"]["value"] for op in patch.to_plotly_json()["operations"]}
    xs = np.concatenate([decoded(ops[("data", trace_index(REPRESENTATION_TRACES, name), "x")])
                         for name in WEDGE_TRACE_NAMES])
    centres = xs[np.isfinite(xs)]
    assert len(centres) > 0 and np.allclose(np.min(np.abs(centres - one["x"])), 0, atol=1e-5)
    radius = figures.CellArrays.of(view.cells).r[[c["id"] for c in view.cells["cells"]].index(one["id"])]
    assert all(abs(x - one["x"]) <= radius + 1e-5 for x in centres)  # no other cell's wedges
    colours = ops[("data", trace_index(REPRESENTATION_TRACES, HOVER_TRACE_NAME), "marker", "color")]
    shown_ids = [int(c["id"]) for c in view.cells["cells"]]
    assert colours[shown_ids.index(int(one["id"]))] == "rgba(0,0,0,0)"  # its pie replaces the dot
    assert sum(c == "rgba(0,0,0,0)" for c in colours) == 1 and "pies for the 1 cells" in info

    wide = {"xaxis.range[0]": -1e6, "xaxis.range[1]": 1e6, "yaxis.range[0]": -1e6, "yaxis.range[1]": 1e6}
    patch, info, _ = representation.level_of_detail(ctx, "fake-run", "fake-run", wide, stored)
    assert "zoom in to see pies" in info  # all 3 in view: more than the limit, markers again
    assert representation.level_of_detail(ctx, "fake-run", "other", wide, None) == (no_update,) * 3


def test_finished_run_is_offered_not_forced_on_an_analyst_at_work(ctx):
    search, message, options = shell.finished_run_message(ctx, "fake-run", open_run="other-run")
    assert search is no_update  # the open run stays on screen
    link = message.children[1]
    assert link.id == ids.NEWRUN_OPEN and link.href == "?run=fake-run"
    assert "fake-run" in [o["value"] for o in options]
    search, message, _ = shell.finished_run_message(ctx, "fake-run", open_run=None)
    assert search == "?run=fake-run" and message == "Run fake-run is ready."  # nothing open: open it
