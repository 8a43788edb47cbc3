"""pipeline.represent.thumbnails: images by index only, thumbnails cached, paths outside the root refused."""
import os

import numpy as np
import pytest
from PIL import Image

from pipeline.store.run_store import RunStore
from pipeline.represent.thumbnails import BACKGROUND, PathRefused, RunImages
from tests.fixtures_runs import image_colour


@pytest.fixture
def run(make_fake_run):
    return make_fake_run(n_images=8, n_cells=2, image_size=(40, 20))


def _rewrite_path(run_dir, index, new_path):
    store = RunStore(run_dir)
    records = store.read_records()
    records[index]["path"] = new_path
    store.write_records(records)


def test_thumbnail_shows_the_image_letterboxed_and_is_cached(run, tmp_path):
    images = RunImages(run, tmp_path / "cache", thumb_size=64)
    path = images.thumbnail(3)
    assert path.is_relative_to(tmp_path / "cache" / "thumbnails")
    with Image.open(path) as im:
        arr = np.asarray(im.convert("RGB"), dtype=int)
    assert arr.shape == (64, 64, 3)
    # a 40x20 image fills the width and a 32-pixel band in the middle; rows above are background
    assert np.abs(arr[32, 32] - image_colour(3, 1)).max() < 12
    assert np.abs(arr[32, 1] - image_colour(3, 1)).max() < 12  # scaled up to the full width
    assert np.abs(arr[2, 32] - BACKGROUND).max() < 12
    mtime = path.stat().st_mtime_ns
    assert images.thumbnail(3) == path and path.stat().st_mtime_ns == mtime  # not regenerated
    # another RunImages over the same data (e.g. a second run) finds the same cached file
    assert RunImages(run, tmp_path / "cache", thumb_size=64).has_thumbnail(3)


@pytest.mark.parametrize("index", [-1, 8, 10**9, "3", "../../etc/passwd", 2.0, True, None])
def test_only_valid_integer_indices_are_accepted(run, tmp_path, index):
    images = RunImages(run, tmp_path / "cache")
    with pytest.raises(PathRefused):
        images.source_path(index)
    with pytest.raises(PathRefused):
        images.thumbnail(index)


def test_records_pointing_outside_the_data_root_are_refused(run, tmp_path):
    secret = tmp_path / "secret.png"
    Image.new("RGB", (8, 8), (1, 2, 3)).save(secret)
    root = tmp_path / "data"
    _rewrite_path(run, 0, "../secret.png")
    _rewrite_path(run, 1, str(secret))  # absolute path in a record
    link = root / "gan" / "link.png"
    os.symlink(secret, link)
    _rewrite_path(run, 2, "gan/link.png")  # a link inside the root that leaves it
    images = RunImages(run, tmp_path / "cache")
    for i in (0, 1, 2):
        with pytest.raises(PathRefused):
            images.source_path(i)
        with pytest.raises(PathRefused):
            images.thumbnail(i)
    assert images.source_path(3).is_file()  # the others are untouched


def test_unreadable_image_gets_a_placeholder_and_a_reason(run, tmp_path):
    images = RunImages(run, tmp_path / "cache", thumb_size=32)
    images.source_path(4).write_bytes(b"not an image at all")
    path = images.thumbnail(4)
    with Image.open(path) as im:
        assert im.size == (32, 32)
    assert "not a readable image" in images.thumbnail_error(4)  # the reason load_image_rgb gives
    assert images.thumbnail_error(5) is None


def test_ensure_thumbnails_reports_progress_and_skips_cached(run, tmp_path):
    images = RunImages(run, tmp_path / "cache", thumb_size=32)
    images.thumbnail(0)
    calls = []
    images.ensure_thumbnails(range(8), progress=lambda d, t: calls.append((d, t)))
    assert calls[0] == (0, 7) and calls[-1] == (7, 7)
    assert images.missing_thumbnails(range(8)) == []


def test_sprite_draws_each_thumbnail_in_its_slot_with_its_frame(run, tmp_path):
    images = RunImages(run, tmp_path / "cache", thumb_size=64)
    order = np.array([[5, 2], [7, -1]])
    red, green = (214, 39, 40), (44, 160, 44)
    frames = {5: red, 2: green, 7: green}
    blue, orange = (31, 119, 180), (255, 127, 14)
    badges = {5: ("F", orange), 2: ("R", blue), 7: ("F", orange)}
    out = images.compose_sprite(order, tile=40, frame_colors=frames, out_path=tmp_path / "s.jpg",
                                frame_width=4, badges=badges)
    with Image.open(out) as im:
        arr = np.asarray(im.convert("RGB"), dtype=int)
    assert arr.shape == (80, 80, 3)
    for (r, c), index in np.ndenumerate(order):
        y0, x0 = r * 40, c * 40
        if index < 0:  # empty slot: light background inside, a dashed grey outline at its edge
            assert np.abs(arr[y0 + 20, x0 + 20] - 250).max() < 12
            edge = arr[y0 + 4, x0 + 4:x0 + 36].mean(axis=1)
            assert edge.min() < 200 and edge.max() > 235  # dashes: dark and light runs
            continue
        # the label badge in the top-left corner, inside the frame
        assert np.abs(arr[y0 + 5, x0 + 5] - badges[index][1]).max() < 45
        assert np.abs(arr[y0 + 1, x0 + 20] - frames[index]).max() < 40  # frame, top edge
        assert np.abs(arr[y0 + 20, x0 + 1] - frames[index]).max() < 40  # frame, left edge
        assert np.abs(arr[y0 + 20, x0 + 20] - image_colour(index, index % 2)).max() < 25
