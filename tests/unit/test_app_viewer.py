"""The image viewer's callback bodies (app.views.viewer), called directly on a generated run."""
import numpy as np
import pytest
from dash import no_update
from PIL import Image

from app.state import ids

from app.files import viewer_files
from app.state.context import AppContext
from app.views import images, viewer
from pipeline.explain.overlays import FAKE_RGB, REAL_RGB
from pipeline.store.run_store import RunStore
from tests.fixtures_runs import FAKE_EXPLAIN
from tests.unit.test_app_callbacks import Progress, _texts


@pytest.fixture
def ctx(make_fake_run, app_config):
    make_fake_run(n_images=30, n_cells=3)  # images are 40 x 32 pixels
    return AppContext(app_config)


def _rows(table) -> dict:
    """{heading: text} of the facts table."""
    return {_texts(tr.children[0]): _texts(tr.children[1]) for tr in table.children.children}


def _open(ctx, index, overlay=(), which=viewer.AGGREGATE):
    click = {"points": [{"customdata": index, "x": 0.5, "y": -0.5}]}
    return viewer.navigate(ctx, ids.IMAGES_GRAPH, click, None, "fake-run", list(overlay), which)


def test_a_clicked_thumbnail_opens_with_its_label_prediction_and_file(ctx):
    view = ctx.run("fake-run")
    wrong = next(i for i in range(30) if not view.correct[i] and view.label[i] == 0)  # real, called fake
    right = next(i for i in range(30) if view.correct[i] and view.label[i] == 1)
    for index, label, pred, verdict in ((wrong, "real", "fake", "✘ wrong"), (right, "fake", "fake", "✔ right")):
        payload = _open(ctx, index)
        assert payload == {"index": index, "map": None, "pair": None}
        out = viewer.content(ctx, payload, "fake-run")
        title, position, facts = out["title"], out["position"], out["facts"]
        rows = _rows(facts)
        record = view.records[index]
        assert title == view.file_name(index)
        assert rows["label"] == label and rows["prediction"].startswith(pred) and verdict in rows["prediction"]
        assert rows["p(fake)"] == f"{view.prob[index]:.3f}"
        assert rows["generator"] == record["generator"] and rows["category"] == record["category"]
        assert rows["split"] == record["split"] and rows["file"] == record["path"]
        assert rows["size"].startswith("40 × 32 px · PNG")
        assert position.endswith(f"in cell {record['cell']}")
        # the picture: the original file at its own size, on axes in its pixels
        fig = viewer.JOB.render(ctx, payload, "fake-run", 0.6)[0]
        (picture,) = fig.layout.images
        assert picture.source == f"/files/image/fake-run/{index}"
        assert (picture.sizex, picture.sizey) == (40, 32) and list(fig.layout.xaxis.range) == [0, 40]
    # a click that is not on a thumbnail, or an index not in the run, opens nothing
    assert viewer.navigate(ctx, ids.IMAGES_GRAPH, {"points": []}, None, "fake-run", [], "aggregate") is no_update
    assert _open(ctx, 30) is no_update


def test_previous_and_next_follow_the_grid_order_and_stop_at_the_ends(ctx):
    view = ctx.run("fake-run")
    request = images.JOB.render(ctx, 1, "fake-run", None)[-1]
    images.JOB.prepare(ctx, request, Progress())  # the cell's grid, arranged by similarity
    from app.files import artifacts

    order = [i for i in artifacts.read_grid(ctx.app_cache(view), 1)["order"] if i >= 0]
    assert sorted(order) == view.cell_members(1).tolist() and order != sorted(order)
    seen, payload = [order[0]], _open(ctx, order[0])
    out = viewer.content(ctx, payload, "fake-run")
    position, prev_disabled, next_disabled = out["position"], out["prev_disabled"], out["next_disabled"]
    assert position == f"image 1 of {len(order)} in cell 1" and prev_disabled and not next_disabled
    assert viewer.navigate(ctx, ids.VIEWER_PREV, 1, payload, "fake-run", [], "aggregate") is no_update
    while True:
        step = viewer.navigate(ctx, ids.VIEWER_NEXT, 1, payload, "fake-run", [], "aggregate")
        if step is no_update:
            break
        payload = step
        seen.append(payload["index"])
    assert seen == order  # every image of the cell once, in the grid's order, none of another cell
    out = viewer.content(ctx, payload, "fake-run")
    position, prev_disabled, next_disabled = out["position"], out["prev_disabled"], out["next_disabled"]
    assert position == f"image {len(order)} of {len(order)} in cell 1" and next_disabled and not prev_disabled
    back = viewer.navigate(ctx, ids.VIEWER_PREV, 1, payload, "fake-run", [], "aggregate")
    assert back["index"] == order[-2]
    # a cell whose grid is not prepared yet: ascending indices
    members = view.cell_members(2).tolist()
    assert viewer.navigate(ctx, ids.VIEWER_NEXT, 1, _open(ctx, members[0]), "fake-run", [],
                           "aggregate")["index"] == members[1]


def test_esc_close_and_a_new_run_close_the_viewer(ctx):
    payload = _open(ctx, 3)
    assert viewer.navigate(ctx, ids.VIEWER_MODAL, False, payload, "fake-run", [], None) is None
    assert viewer.navigate(ctx, ids.VIEWER_MODAL, True, payload, "fake-run", [], None) is no_update
    assert viewer.navigate(ctx, ids.VIEWER_CLOSE, 1, payload, "fake-run", [], None) is None
    assert viewer.navigate(ctx, ids.STORE_RUN, "other", payload, "other", [], None) is None
    assert viewer.navigate(ctx, ids.VIEWER_CLOSE, 1, None, "fake-run", [], None) is no_update


def test_the_callbacks_outputs_are_named(ctx):
    nothing = dict.fromkeys(viewer.NAVIGATE_OUTPUTS, no_update)
    payload = _open(ctx, 3)
    # a button (re)created, not clicked; nothing to change; closed; opened with or without a map
    assert viewer.navigate_outputs(ctx, ids.viewer_compare(5), None, payload, "fake-run", [], None) == nothing
    assert viewer.navigate_outputs(ctx, ids.VIEWER_MODAL, True, payload, "fake-run", [], None) == nothing
    assert viewer.navigate_outputs(ctx, ids.VIEWER_CLOSE, 1, payload, "fake-run", [], None) == \
        dict(nothing, state=None, is_open=False)
    click = {"points": [{"customdata": 3}]}
    assert viewer.navigate_outputs(ctx, ids.IMAGES_GRAPH, click, None, "fake-run", [], "aggregate") == \
        dict(state=payload, is_open=True, overlay=[], map=no_update)
    shown = viewer.navigate_outputs(ctx, ids.IMAGES_GRAPH, click, None, "fake-run", ["on"], "aggregate")
    assert shown == dict(state={**payload, "map": "aggregate"}, is_open=True, overlay=["on"], map="aggregate")
    assert list(viewer.content(ctx, payload, "fake-run")) == list(viewer.CONTENT_OUTPUTS)
    assert viewer.content(ctx, {"index": 99}, "fake-run") == dict.fromkeys(viewer.CONTENT_OUTPUTS, no_update)


def test_other_views_open_the_viewer_on_an_image_with_a_dimension_map(ctx):
    button = viewer.open_button(7, 3, "map")
    assert button.id == ids.viewer_open(7, 3) and "dimension 3" in button.title
    opened = viewer.navigate(ctx, ids.viewer_open(7, 3), 1, None, "fake-run", [], viewer.AGGREGATE)
    assert opened == {"index": 7, "map": 3, "pair": None}
    # "" keeps the analyst's overlay choice; a later toggle turns the map off
    kept = viewer.navigate(ctx, ids.viewer_open(8, ""), 1, opened, "fake-run", ["on"], 5)
    assert kept == {"index": 8, "map": 5, "pair": None}
    off = viewer.navigate(ctx, ids.VIEWER_OVERLAY, [], kept, "fake-run", [], 5)
    assert off["map"] is None and off["index"] == 8
    # next keeps the map the analyst is looking at
    view = ctx.run("fake-run")
    order = view.cell_members(int(view.cell[7])).tolist()
    step = viewer.navigate(ctx, ids.VIEWER_NEXT, 1, opened, "fake-run", ["on"], 3)
    assert step == {"index": order[order.index(7) + 1], "map": 3, "pair": None}


def _set_sources(ctx, sources: dict):
    store = RunStore(ctx.run("fake-run").path)
    records = store.read_records()
    for i, s in sources.items():
        records[i]["source"] = s
    store.write_records(records)
    store.update_meta(status="complete")  # a new meta mtime: the app reloads the run


def test_the_paired_image_is_found_by_source_and_shown_side_by_side(ctx):
    # 0 and 2 are real, 3 and 5 fake (labels alternate); 4 has a source of its own
    _set_sources(ctx, {0: "photo-a", 2: "photo-a", 3: "photo-a", 5: "photo-a", 4: "photo-b"})
    view = ctx.run("fake-run")
    assert viewer.same_source(view, 0) == [3, 5, 2]  # the other class first
    assert viewer.same_source(view, 4) == [] and viewer.same_source(view, 1) == []
    payload = _open(ctx, 0)
    out = viewer.content(ctx, payload, "fake-run")
    assert list(out) == list(viewer.CONTENT_OUTPUTS)  # every output, by name
    strip, pair_fig, pair_style = out["pairs"], out["pair_figure"], out["pair_style"]
    pair_head, main_head = out["pair_head"], out["main_head"]
    assert pair_style == {} and pair_fig.layout.images[0].source == "/files/image/fake-run/3"
    assert view.file_name(3) in _texts(pair_head) and view.file_name(0) in _texts(main_head)
    assert "3 other image(s)" in _texts(strip)
    # a click in the strip shows that image side by side; "none" hides the pair
    chosen = viewer.navigate(ctx, ids.viewer_compare(5), 1, payload, "fake-run", [], None)
    assert chosen == {**payload, "pair": 5}
    assert viewer.content(ctx, chosen, "fake-run")["pair_figure"].layout.images[0].source == "/files/image/fake-run/5"
    hidden = viewer.navigate(ctx, ids.viewer_compare(-1), 1, payload, "fake-run", [], None)
    assert viewer.content(ctx, hidden, "fake-run")["pair_style"] == {"display": "none"}
    # an image without a source shows no pair and no strip
    out = viewer.content(ctx, _open(ctx, 1), "fake-run")
    strip, pair_style = out["pairs"], out["pair_style"]
    assert strip == [] and pair_style == {"display": "none"}


def test_the_map_is_computed_once_and_laid_over_the_square_the_model_saw(ctx):
    payload = {"index": 4, "map": viewer.AGGREGATE, "pair": None}
    fig, message, request = viewer.JOB.render(ctx, payload, "fake-run", 0.7)
    assert len(fig.layout.images) == 1 and "Computing" in message and request["index"] == 4
    progress = Progress()
    fig, message = viewer.JOB.prepare(ctx, request, progress, explain=FAKE_EXPLAIN)
    assert progress.calls and message == ""
    picture, layer = fig.layout.images
    # a 40 x 32 image: the model saw its centre 32 x 32 square, x from 4 to 36
    assert (layer.x, -layer.y, layer.sizex, layer.sizey) == (4, 0, 32, 32) and layer.opacity == 0.7
    assert layer.source == "/files/layer/fake-run/4/aggregate.png"
    shaded = [s for s in fig.layout.shapes if s.fillcolor]
    assert sorted((s.x0, s.x1) for s in shaded) == [(0, 4), (36, 40)]  # the unseen border

    # Draw the layer where the figure puts it, over the original: FAKE_EXPLAIN's aggregate is +1
    # (fake) on the left half of the model input and -1 (real) on the right half.
    view = ctx.run("fake-run")
    path = viewer_files.layer_file(ctx.app_cache(view), 4, "aggregate")
    original = np.asarray(Image.open(view.images.source_path(4)).convert("RGB"), dtype=float)
    with Image.open(path) as im:
        rgba = np.asarray(im.convert("RGBA").resize((int(layer.sizex), int(layer.sizey))), dtype=float)
    shown = original.copy()
    x0 = int(layer.x)
    alpha = rgba[..., 3:] / 255 * layer.opacity
    shown[:, x0:x0 + 32] = original[:, x0:x0 + 32] * (1 - alpha) + rgba[..., :3] * alpha

    def hue(pixel):  # which class colour a pixel moved towards
        moved = pixel - original[10, 20]
        return "fake" if np.dot(moved, np.subtract(FAKE_RGB, original[10, 20])) > \
            np.dot(moved, np.subtract(REAL_RGB, original[10, 20])) else "real"

    assert hue(shown[10, x0 + 4]) == "fake" and hue(shown[10, x0 + 12]) == "fake"
    assert hue(shown[10, x0 + 20]) == "real" and hue(shown[10, x0 + 28]) == "real"
    assert np.array_equal(shown[:, :x0], original[:, :x0])  # the border: no map

    # drawn now: shown at once (a pending job is cleared), other maps too, no job
    fig2, _, request2 = viewer.JOB.render(ctx, payload, "fake-run", 0.7, pending=request)
    assert request2 is None and fig2.layout.images[1].source == layer.source
    dim = viewer.JOB.render(ctx, {**payload, "map": 5}, "fake-run", 0.7)[0]
    assert dim.layout.images[1].source == "/files/layer/fake-run/4/d05.png"
    with Image.open(viewer_files.layer_file(ctx.app_cache(view), 4, "d05")) as im:
        a = np.asarray(im.convert("RGBA"))[..., 3]
    assert a[10:12].min() > 150 and a[:10].max() == 0 and a[12:].max() == 0  # its rows 10-11 only


def test_a_map_that_cannot_be_computed_leaves_the_picture_and_says_why(ctx):
    def unreadable(run_dir, indices, progress=None, on_error=None):
        for i in indices:
            on_error(i, "truncated or corrupted image data")
        return {}

    payload = {"index": 2, "map": viewer.AGGREGATE, "pair": None}
    request = viewer.JOB.render(ctx, payload, "fake-run", 0.6)[-1]
    fig, message = viewer.JOB.prepare(ctx, request, Progress(), explain=(unreadable, None, None))
    assert fig is no_update and "truncated or corrupted image data" in _texts(message)
    assert viewer_files.read_layers(ctx.app_cache(ctx.run("fake-run")), 2) is None


def test_an_unreadable_original_is_said_in_words(ctx):
    view = ctx.run("fake-run")
    view.images.source_path(6).write_bytes(b"not an image")
    fig = viewer.JOB.render(ctx, _open(ctx, 6), "fake-run", 0.6)[0]
    assert "cannot be shown" in fig.layout.annotations[0].text
    rows = _rows(viewer.content(ctx, _open(ctx, 6), "fake-run")["facts"])
    assert rows["size"].startswith("cannot be shown: not a readable image")


# -- the routes ------------------------------------------------------------------------------------
@pytest.fixture
def client(ctx, app_config, tmp_path):
    from app.main import create_app

    Image.new("RGB", (8, 8), (9, 9, 9)).save(tmp_path / "secret.png")
    return create_app(app_config).server.test_client()


def _replace(ctx, index, rel, write):
    """Point record ``index`` at a new file ``rel`` (under the data root) written by ``write``."""
    view = ctx.run("fake-run")
    path = view.images.root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    write(path)
    store = RunStore(view.path)
    records = store.read_records()
    records[index]["path"] = rel
    store.write_records(records)
    store.update_meta(status="complete")
    return path


def test_the_image_route_sends_browser_formats_as_they_are(client, ctx):
    source = ctx.run("fake-run").images.source_path(3)
    r = client.get("/files/image/fake-run/3")
    assert r.status_code == 200 and r.mimetype == "image/png" and r.data == source.read_bytes()
    assert "max-age" in r.headers["Cache-Control"] and r.headers.get("ETag")
    again = client.get("/files/image/fake-run/3", headers={"If-None-Match": r.headers["ETag"]})
    assert again.status_code == 304


def test_the_image_route_refuses_indices_and_records_outside_the_run(client, ctx, tmp_path):
    assert client.get("/files/image/fake-run/30").status_code == 404  # the run has 30 images
    assert client.get("/files/image/fake-run/-1").status_code == 404
    assert client.get("/files/image/ghost/1").status_code == 404
    assert client.get("/files/image/fake-run/..%2F..%2Fsecret.png").status_code == 404
    store = RunStore(ctx.run("fake-run").path)
    records = store.read_records()
    records[2]["path"] = "../secret.png"
    store.write_records(records)
    store.update_meta(status="complete")
    r = client.get("/files/image/fake-run/2")
    assert r.status_code == 403 and b"only paths under the data root" in r.data
    # a link inside the data root that leads out of it
    link = ctx.run("fake-run").images.root / "gan" / "leak.png"
    link.symlink_to(tmp_path / "secret.png")
    records[2]["path"] = "gan/leak.png"
    store.write_records(records)
    store.update_meta(status="complete")
    r = client.get("/files/image/fake-run/2")
    assert r.status_code == 403 and b"resolves outside the data root" in r.data
    assert client.get("/files/layer/fake-run/2/aggregate.png").status_code == 404  # not drawn


def test_a_tiff_is_converted_once_and_the_conversion_cached(client, ctx, monkeypatch):
    from pipeline.represent import originals

    pixels = np.random.default_rng(0).integers(0, 255, (30, 50, 3), dtype=np.uint8)
    _replace(ctx, 5, "tiffs/five.tif", lambda p: Image.fromarray(pixels).save(p, format="TIFF"))
    calls = []
    real_convert = originals.convert
    monkeypatch.setattr(originals, "convert", lambda *a, **k: calls.append(a) or real_convert(*a, **k))
    r = client.get("/files/image/fake-run/5")
    assert r.status_code == 200 and r.mimetype == "image/png"
    import io

    assert np.array_equal(np.asarray(Image.open(io.BytesIO(r.data)).convert("RGB")), pixels)
    assert client.get("/files/image/fake-run/5").data == r.data and len(calls) == 1  # cached
    # the viewer says what the file is and that it was converted
    rows = _rows(viewer.content(ctx, _open(ctx, 5), "fake-run")["facts"])
    assert rows["size"].startswith("50 × 30 px · TIFF (converted for the browser")


def test_a_decompression_bomb_is_refused_with_the_reason(client, ctx):
    from tests.unit.test_originals import png_header

    _replace(ctx, 7, "bombs/big.png", lambda p: p.write_bytes(png_header(12000, 12000)))
    r = client.get("/files/image/fake-run/7")
    assert r.status_code == 422 and b"decompression bomb" in r.data
    fig = viewer.JOB.render(ctx, _open(ctx, 7), "fake-run", 0.6)[0]
    assert "decompression bomb" in fig.layout.annotations[0].text


def test_the_layer_route_serves_drawn_layers_only(client, ctx):
    request = viewer.JOB.render(ctx, {"index": 1, "map": viewer.AGGREGATE, "pair": None}, "fake-run", 0.6)[-1]
    viewer.JOB.prepare(ctx, request, Progress(), explain=FAKE_EXPLAIN)
    r = client.get("/files/layer/fake-run/1/aggregate.png")
    assert r.status_code == 200 and r.mimetype == "image/png"
    assert client.get("/files/layer/fake-run/1/d15.png").status_code == 200
    assert client.get("/files/layer/fake-run/1/d16.png").status_code == 404
    assert client.get("/files/layer/fake-run/1/meta.png").status_code == 404
    assert client.get("/files/layer/fake-run/1/..%2F..%2Fgrids.png").status_code == 404


# -- honest pairs: linked only when they show the same region (issue 23) ---------------------------
def _pair_of(ctx, index, pair=None):
    payload = {**_open(ctx, index), "pair": pair} if pair is not None else _open(ctx, index)
    return viewer.content(ctx, payload, "fake-run")


def test_only_a_pair_of_the_same_region_is_linked_another_crop_is_said_and_not_linked(make_fake_run, app_config):
    # pairs (0, 1) and (2, 3): one photo each; 3 is another crop of photo-1 than 2 (provenance.csv)
    make_fake_run(n_images=8, n_cells=1, paired_sources=True, other_crop_pairs=[1])
    ctx = AppContext(app_config)
    view = ctx.run("fake-run")
    assert viewer.relation(view, 0, 1) == "same region" and viewer.relation(view, 2, 3) == "other crop"
    same = _pair_of(ctx, 0)
    assert same["pair_figure"].layout.images[0].source == "/files/image/fake-run/1"
    assert same["pair_figure"].layout.meta["linked"] is True
    assert "same region: pan and zoom linked" in _texts(same["pair_head"])
    assert "same region" in _texts(same["pairs"])
    other = _pair_of(ctx, 2)
    assert other["pair_figure"].layout.images[0].source == "/files/image/fake-run/3"
    assert other["pair_figure"].layout.meta["linked"] is False
    assert "same source photo, other crop: not the same region, not linked" in _texts(other["pair_head"])
    assert "other crop" in _texts(other["pairs"])
    # the fake 3 knows its region, but photo-1 is nowhere on this machine: said, nothing offered
    strip = _texts(_pair_of(ctx, 3)["pairs"])
    assert "Its source photo (photo-1, photo-1.png) is not on this machine" in strip
    assert "source photo" not in _texts(_pair_of(ctx, 2)["pairs"])  # a real: its region is itself
    assert viewer.chosen_pair(ctx, view, {"index": 3, "pair": viewer.SOURCE_REGION}) is None
    # the main figure itself is never marked linked: the pair's figure decides
    assert viewer.figure_of(view, 0).layout.meta["linked"] is False


def test_without_provenance_same_source_images_are_region_unknown_and_not_linked(make_fake_run, app_config):
    run = make_fake_run(n_images=8, n_cells=1, paired_sources=True)
    (run.parents[1] / "data" / "provenance.csv").unlink()
    ctx = AppContext(app_config)
    out = _pair_of(ctx, 0)
    assert out["pair_figure"].layout.meta["linked"] is False
    assert "same source (region unknown): not linked" in _texts(out["pair_head"])
    assert "region unknown" in _texts(out["pairs"])


def _demo_fake_of_a_wallpaper(ctx, app_config, fake_rgb=(200, 0, 0)):
    """Image 1 (a fake) becomes a 16 x 16 regeneration of the box (16, 8, 32) of a Debian wallpaper
    unpacked in the app's cache: that box is red, the rest of the photo blue."""
    photo = np.zeros((48, 64, 3), np.uint8)
    photo[:, :] = (0, 0, 255)
    photo[8:40, 16:48] = (255, 0, 0)
    root = app_config.cache_path / "demo_sources" / "mate-backgrounds"
    (root / "usr/share/backgrounds/mate/nature").mkdir(parents=True)
    Image.fromarray(photo).save(root / "usr/share/backgrounds/mate/nature/lake.jpg", quality=98)
    (root / ".complete.json").write_text("{}")
    _replace(ctx, 1, "g/mate-backgrounds/1_fake/lake_000.png",
             lambda p: Image.new("RGB", (16, 16), fake_rgb).save(p))
    (ctx.run("fake-run").images.root / "provenance.csv").write_text(
        "path,label,source,view_file,crop_x,crop_y,crop_side\n"
        "g/mate-backgrounds/1_fake/lake_000.png,fake,mate-backgrounds/lake.jpg,lake.jpg,16,8,32\n")
    _set_sources(ctx, {1: "mate-backgrounds/lake.jpg"})


def _png(response) -> np.ndarray:
    import io
    return np.asarray(Image.open(io.BytesIO(response.data)).convert("RGB")).astype(int)


def test_the_region_route_cuts_the_fakes_source_region_and_the_difference(client, ctx, app_config):
    _demo_fake_of_a_wallpaper(ctx, app_config)
    r = client.get("/files/region/fake-run/1/source.png")
    assert r.status_code == 200 and r.mimetype == "image/png"
    source = _png(r)
    assert source.shape == (16, 16, 3)  # the image's own size
    assert np.abs(source[2:-2, 2:-2] - (255, 0, 0)).max() <= 12  # the red box (JPEG-compressed)
    diff = _png(client.get("/files/region/fake-run/1/difference.png"))
    assert np.abs(diff[2:-2, 2:-2] - (220, 0, 0)).max() <= 48  # |200 - 255| x 4, JPEG error x 4
    cached = viewer_files.layers_dir(ctx.app_cache(ctx.run("fake-run")), 1)
    assert (cached / "source.png").is_file() and (cached / "difference.png").is_file()
    assert client.get("/files/region/fake-run/1/other.png").status_code == 404
    assert client.get("/files/region/fake-run/0/source.png").status_code == 404  # no provenance for it
    assert client.get("/files/region/fake-run/99/source.png").status_code == 404


def test_a_demo_fake_opens_beside_its_source_region_linked_with_a_difference_toggle(ctx, app_config):
    _demo_fake_of_a_wallpaper(ctx, app_config)
    out = _pair_of(ctx, 1)
    fig = out["pair_figure"]
    assert fig.layout.images[0].source == "/files/region/fake-run/1/source.png" and fig.layout.meta["linked"] is True
    assert "its source photo, same region" in _texts(out["pair_head"])
    assert "lake.jpg, box x 16 y 8, side 32 px" in _texts(out["pair_head"])
    chosen = viewer.navigate(ctx, ids.viewer_compare(viewer.DIFFERENCE), 1, _open(ctx, 1), "fake-run", [], None)
    assert chosen["pair"] == viewer.DIFFERENCE
    out = viewer.content(ctx, chosen, "fake-run")
    assert out["pair_figure"].layout.images[0].source == "/files/region/fake-run/1/difference.png"
    assert out["pair_figure"].layout.meta["linked"] is True and "× 4" in _texts(out["pair_head"])
