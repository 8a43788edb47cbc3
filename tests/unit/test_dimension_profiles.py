"""Subject masks, per-dimension profiles, their summaries and the atlas's words, on arrays whose
answers are known (pipeline.explain.subject_mask, .profiles, .atlas); kept masks and profiles read
back from a generated run."""
from __future__ import annotations

import re

import numpy as np
import pytest

from pipeline.explain._bilinear import upsample
from pipeline.explain.atlas import atlas_lines, atlas_sample, build_atlas, dimension_sentence
from pipeline.explain.cache import ImageMaps, maps_result
from pipeline.explain.profiles import (BORDER_FRACTION, ImageProfile, count_sentence, profile_image,
                                       read_profiles, summarise, textured_pixels, verdict_of)
from pipeline.explain.relevance import upsample as torch_upsample
from pipeline.explain.results import image_paths
from pipeline.explain.subject_mask import (SubjectMask, foreground_from_tokens, mask_derived,
                                           read_subject_mask)
from pipeline.store.derived import model_fingerprint
from pipeline.store.run_store import open_store

G = 16  # patch grid
SIZE = 224


def centre_block(g: int = G, margin: int = 4) -> np.ndarray:
    m = np.zeros((g, g), bool)
    m[margin:g - margin, margin:g - margin] = True
    return m


# -- the subject mask ------------------------------------------------------------------------------

@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_foreground_is_the_part_away_from_the_border(sign):
    """Tokens of two kinds (a centre block and the rest) plus noise: the mask is the centre block,
    whichever way the principal component points (negated tokens flip it)."""
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=32), rng.normal(size=32)
    inside = centre_block()
    tokens = sign * np.where(inside[..., None], a, b) + rng.normal(scale=0.05, size=(G, G, 32))
    score, mask = foreground_from_tokens(tokens)
    assert np.array_equal(mask, inside)
    assert (score[inside] > 0).all() and (score[~inside] < 0).all()


def test_mask_at_pixel_size_follows_the_grid():
    inside = centre_block()
    mask = SubjectMask(0, np.where(inside, 1.0, -1.0).astype(np.float32), inside)
    at = mask.at((SIZE, SIZE))
    assert at.shape == (SIZE, SIZE) and abs(at.mean() - inside.mean()) < 0.01
    assert at[SIZE // 2, SIZE // 2] and not at[0, 0]


def test_numpy_upsampling_equals_the_maps_torch_upsampling():
    maps = np.random.default_rng(1).random((3, 7, 7)).astype(np.float32)
    assert np.allclose(upsample(maps, (SIZE, 200)), torch_upsample(maps, (SIZE, 200)), atol=1e-5)
    signed = np.random.default_rng(0).normal(size=(2, 3, 5, 7)).astype(np.float32)  # the aggregate's signs
    assert np.allclose(upsample(signed, (32, 20)), torch_upsample(signed, (32, 20)), atol=1e-5)


# -- one image's profiles --------------------------------------------------------------------------

def _rgb_half_textured(seed: int = 0) -> np.ndarray:
    """Left half noisy, right half flat grey."""
    rgb = np.full((SIZE, SIZE, 3), 128, np.uint8)
    rgb[:, : SIZE // 2] = np.random.default_rng(seed).integers(0, 256, (SIZE, SIZE // 2, 1))
    return rgb


def test_profile_of_known_maps():
    inside = centre_block()
    subject = SubjectMask(0, np.where(inside, 1.0, -1.0).astype(np.float32), inside).at((SIZE, SIZE))
    maps = np.zeros((4, G, G), np.float32)
    maps[0] = np.where(inside, 1.0, 0.0)  # only on the subject
    maps[1] = 1.0  # flat: every share is its region's area
    maps[2, :, : G // 2 - 1] = 1.0  # left (textured) half, away from the middle column
    maps[3, 7, 7] = 1.0  # one patch
    rgb = _rgb_half_textured()
    p = profile_image(3, maps, rgb, subject, np.array([0.5, -0.2, 0.1, 0.0]), np.zeros(4))
    border_area = 1 - (1 - 2 * BORDER_FRACTION) ** 2
    # all of it but what bilinear upsampling spills past the block's edge and the mask's rounded corners
    assert p.subject[0] > 0.92 and p.border[0] < 0.01
    assert p.subject[1] == pytest.approx(subject.mean(), abs=1e-9)
    assert p.border[1] == pytest.approx(border_area, abs=0.01) and p.border_area == pytest.approx(border_area, abs=0.01)
    assert p.textured[2] > 0.97 and p.textured[1] == pytest.approx(p.textured_area, abs=1e-9)
    assert 0.45 < p.textured_area < 0.55  # "textured" is relative to the image's median
    assert p.concentration[3] == pytest.approx(1.0) and p.concentration[1] == pytest.approx(26 / 256)
    assert p.subject[3] == 1.0


def test_textured_pixels_of_a_flat_image_are_none():
    assert not textured_pixels(np.full((32, 32, 3), 77, np.uint8)).any()


# -- summaries and words ---------------------------------------------------------------------------

def _profile(index: int, subject: list[float], contributions: list[float], z: list[float] | None = None
             ) -> ImageProfile:
    k = len(subject)
    return ImageProfile(index, np.array(subject), np.full(k, 0.44), np.full(k, 0.6), np.full(k, 0.2),
                        np.array(contributions, float), np.array(z if z is not None else contributions, float),
                        0.45, 0.44, 0.5)


def test_summary_verdicts_and_count_sentence():
    profiles = [_profile(0, [0.9, 0.2, 0.5, 0.3], [1.0, -1.0, 0.2, 0.5]),
                _profile(1, [0.7, 0.3, 0.52, 0.1], [0.5, 1.0, -0.2, 0.5]),
                _profile(2, [0.8, 0.1, 0.48, 0.2], [-0.3, -1.0, 0.3, 0.5])]
    s = summarise(profiles)
    assert [x.verdict for x in s] == ["subject", "background", "mixed", "background"]
    assert s[0].subject_share == pytest.approx(0.8) and s[1].mean_contribution == pytest.approx(-1 / 3)
    assert s[0].towards_fake == pytest.approx(2 / 3) and s[3].towards_fake == 1.0
    assert count_sentence(s, "these 3 images") == (
        "of 4 dimensions, 2 look mostly at the background of these 3 images: d1, d3; "
        "1 at the subject: d0; 1 at both")
    # against the subject's area: an evenly spread map is "mixed" whatever the subject's size
    assert [verdict_of(share, 0.5) for share in (0.56, 0.44, 0.5)] == ["subject", "background", "mixed"]
    assert verdict_of(0.3, 0.3) == "mixed" and verdict_of(0.4, 0.3) == "subject" and verdict_of(0.6, 0.7) == "background"
    assert summarise([]) == [] and "no dimension" in count_sentence([], "cell 4")


def test_atlas_examples_and_sentence():
    records = [{"id": f"im{i}", "label": i % 2} for i in range(6)]
    # d0 on the background (subject 26%), high on fakes 1, 3, 5; pushes fake on 1 and 3
    profiles = [_profile(i, [0.26, 0.7], [0.4 if i in (1, 3) else -0.4, 0.1], z=[i, -i]) for i in range(6)]
    atlas = build_atlas(profiles, records)
    d0, d1 = atlas["dimensions"]
    assert [e["index"] for e in d0["top"]] == [5, 4, 3, 2] and [e["index"] for e in d0["bottom"]] == [0, 1, 2, 3]
    assert [e["index"] for e in d1["top"]][:2] == [0, 1]
    # fakes with z >= the median (2.5): images 3 and 5; image 3 pushes towards fake, 5 does not
    assert d0["fake_high_towards_fake"] == pytest.approx(0.5)
    assert d0["sentence"].startswith("d0: looks at the background (74% of its relevance on 55% of the image), "
                                      "textured regions (60%)")
    assert "pushes towards fake in 50% of the fakes it is high on" in d0["sentence"]
    assert d1["verdict"] == "subject" and atlas["names_available"] is False and d0["names"] is None
    lines = atlas_lines(atlas)
    assert lines[1].startswith("of 2 dimensions, 1 look mostly at the background of the 6 images: d0")
    assert sum(bool(re.match(r"d\d+: ", line)) for line in lines) == 2
    named = dimension_sentence({**d0, "names": [{"word": "grass", "score": 0.3}]})
    assert named.endswith("looks like grass (CLIP)")


def test_atlas_sample_is_held_out_balanced_and_seeded():
    records = [{"label": i % 2, "split": "heldout" if i % 3 == 0 else "train"} for i in range(120)]
    sample = atlas_sample(records, 10, seed=0)
    assert len(sample) == 10 and all(records[i]["split"] == "heldout" for i in sample)
    assert sum(records[i]["label"] for i in sample) == 5
    assert sample == atlas_sample(records, 10, seed=0) != atlas_sample(records, 10, seed=1)


# -- kept masks and profiles of a run --------------------------------------------------------------

def _keep_maps(run, index: int, patch_maps: np.ndarray, rgb: np.ndarray) -> None:
    store = open_store(run)
    records, cfg = store.read_records(), store.config()
    path = image_paths(store, records, [index])[0]
    k = len(patch_maps)
    maps = ImageMaps(index, patch_maps, np.zeros((G, G), np.float32), np.ones(k, np.float32),
                     np.linspace(-1, 1, k).astype(np.float32), 0.3, rgb)
    maps_result(run, index, records[index]["id"], cfg, path, model_fingerprint(run)).write(maps)


def test_kept_profiles_read_back(make_fake_run):
    run = make_fake_run(n_images=6)
    records = open_store(run).read_records()
    inside = centre_block()
    patch_maps = np.stack([np.where(inside, 1.0, 0.0), np.where(inside, 0.0, 1.0)]).astype(np.float32)
    rgb = _rgb_half_textured()
    _keep_maps(run, 2, patch_maps, rgb)
    assert read_profiles(run, [2]) == {}  # no mask yet: nothing is computed here
    score = np.where(inside, 1.0, -1.0).astype(np.float32)
    mask_derived(run, 2, records[2]["id"], rgb).write(SubjectMask(2, score, inside))
    got = read_profiles(run, [2, 3])
    assert list(got) == [2]
    assert got[2].subject[0] > 0.92 and got[2].subject[1] < 0.08
    assert np.allclose(got[2].contributions, [-1, 1])
    assert np.array_equal(read_subject_mask(run, 2).mask, inside)
    _keep_maps(run, 2, patch_maps, 255 - rgb)  # new maps on another model input: the mask is stale
    assert read_subject_mask(run, 2) is None
