"""A run's images as the run saw them (its controlled re-encoding applied) and the balanced sample
the deletion check and the bias probe draw (``pipeline.data.as_run``)."""
import numpy as np
import pytest
from PIL import Image

from pipeline.config import from_dict
from pipeline.data.as_run import balanced_sample, load_as_run
from pipeline.data.scan import BadImageError, PathRefused


def test_an_image_is_loaded_with_the_runs_re_encoding(tmp_path):
    path = tmp_path / "a.png"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)).save(path)
    plain = load_as_run(path, from_dict({}))
    assert plain.size == (60, 40) and np.array_equal(np.asarray(plain), np.asarray(Image.open(path)))
    seen = load_as_run(path, from_dict({"data": {"reencode": "jpeg:50:32"}}))
    assert seen.size == (32, 32)  # resized, cropped, and through JPEG 50: not the file's pixels
    with pytest.raises(PathRefused):
        load_as_run(PathRefused("outside the data root"), from_dict({}))
    (tmp_path / "bad.png").write_bytes(b"not a png")
    with pytest.raises(BadImageError):
        load_as_run(tmp_path / "bad.png", from_dict({}))


def test_the_sample_is_half_real_half_fake_seeded_and_fills_in_when_short():
    labels = [0] * 10 + [1] * 10
    picks = balanced_sample(labels, 8, seed=3)
    assert picks == sorted(picks) and len(set(picks)) == 8
    assert sorted(labels[i] for i in picks) == [0] * 4 + [1] * 4
    assert balanced_sample(labels, 8, seed=3) == picks and balanced_sample(labels, 8, seed=4) != picks
    # among a subset only (the bias probe: held-out images)
    held = [0, 2, 4, 11, 13, 15, 17]
    assert set(balanced_sample(labels, 6, 0, among=held)) <= set(held)
    # one class short: the other fills in, either way round
    for short in ([0] * 2 + [1] * 10, [0] * 10 + [1] * 2):
        picks = balanced_sample(short, 8, 0)
        assert len(set(picks)) == 8 and min(sum(short[i] for i in picks), 8 - sum(short[i] for i in picks)) == 2
    # unlabelled images (an applied set) fill in last; never more than there are
    assert len(balanced_sample([-1] * 5, 8, 0)) == 5
    mixed = [0, 1] + [-1] * 10
    assert {0, 1} <= set(balanced_sample(mixed, 4, 0))
