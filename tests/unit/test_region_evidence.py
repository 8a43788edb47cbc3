"""The blur test (issue 25: where a dimension's evidence is) on a model whose answer is known.

The "encoder" measures three things of a 32 x 32 input: the fine detail (high-pass energy) of the
left half, the fine detail of the right half, and the mean brightness; the head passes them on as
z0, z1, z2, with logit z0 - z1. With the left half as the subject, blurring the subject can only
move z0 and blurring the background only z1, while z2 (brightness survives a blur) moves under
neither: the test must say "subject", "background" and "none".
"""
from __future__ import annotations

import dataclasses
import threading

import numpy as np
import torch
import torchvision.transforms as T

from pipeline.explain.profiles import ImageProfile, evidence_count_sentence, summarise
from pipeline.explain.region_evidence import RegionEvidence, blur_test, evidence_derived

SIZE = 32


class DetailEncoder:
    """z = (left half's fine detail, right half's fine detail, brightness) of the de-normalised input."""
    preprocess = T.Compose([T.ToTensor(), T.Normalize([0.5, 0.4, 0.3], [0.2, 0.25, 0.3])])
    device = torch.device("cpu")
    lock = threading.Lock()

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        rgb = x * torch.tensor([0.2, 0.25, 0.3]).view(1, 3, 1, 1) + torch.tensor([0.5, 0.4, 0.3]).view(1, 3, 1, 1)
        grey = rgb.mean(1)
        detail = (grey[:, :, 1:] - grey[:, :, :-1]).abs()  # column j: pixels j and j + 1
        half = SIZE // 2  # pairs within the left half, and within the right half (the seam's pair left out)
        return torch.stack([detail[:, :, :half - 1].mean((1, 2)), detail[:, :, half:].mean((1, 2)),
                            rgb.mean((1, 2, 3))], 1)


class Models:
    encoder = DetailEncoder()
    lock = encoder.lock
    device = encoder.device
    projection = torch.nn.Identity()

    @staticmethod
    def head(f):
        return f, f[:, 0] - f[:, 1]


def images(n: int, seed: int = 0) -> np.ndarray:
    """(n, 32, 32, 3) uint8: a smooth brightness ramp plus fine noise everywhere."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0.3, 0.7, SIZE)[None, :, None, None] * np.ones((n, SIZE, SIZE, 3))
    return ((ramp + rng.normal(0, 0.08, ramp.shape)).clip(0, 1) * 255).astype(np.uint8)


def left_half(n: int) -> np.ndarray:
    mask = np.zeros((n, SIZE, SIZE), bool)
    mask[:, :, :SIZE // 2] = True
    return mask


def test_each_blur_moves_only_what_reads_its_region():
    rgb = images(6)
    tests = blur_test(Models(), rgb, left_half(6), list(range(10, 16)), sigma=1.5)
    assert [t.index for t in tests] == list(range(10, 16))
    s = np.stack([t.subject for t in tests])
    b = np.stack([t.background for t in tests])
    assert (s[:, 0] > 0.02).all() and (b[:, 1] > 0.02).all()  # fine detail is gone where blurred...
    assert s[:, 1].max() == 0 and b[:, 0].max() == 0  # ...and untouched elsewhere
    assert max(s[:, 2].max(), b[:, 2].max()) < 0.01  # brightness survives a blur
    logit = np.array([[t.logit_subject, t.logit_background] for t in tests])
    np.testing.assert_allclose(logit, np.stack([s[:, 0], b[:, 1]], 1), rtol=1e-5)  # logit = z0 - z1


def test_the_summary_says_where_each_dimension_reads_its_evidence():
    rgb = images(6, seed=1)
    tests = blur_test(Models(), rgb, left_half(6), list(range(6)), sigma=1.5)
    z = DetailEncoder().embed(Models.encoder.preprocess.transforms[1](torch.from_numpy(rgb).permute(0, 3, 1, 2) / 255)).numpy()
    z[:, 2] += np.linspace(-1, 1, 6)  # brightness varies over the images: its moves are tiny against that
    profiles = [ImageProfile(i, np.full(3, 0.5), np.zeros(3), np.zeros(3), np.zeros(3), np.zeros(3), z[i].astype(np.float64),
                             0.5, 0.4, 0.5, t.subject.astype(np.float64), t.background.astype(np.float64))
                for i, t in enumerate(tests)]
    summaries = summarise(profiles)
    assert [s.evidence_verdict for s in summaries] == ["subject", "background", "none"]
    assert summaries[0].evidence_share > 0.9 and summaries[1].evidence_share < 0.1
    assert [s.verdict for s in summaries] == ["mixed"] * 3  # the maps (flat here) say nothing of it
    line = evidence_count_sentence(summaries, "6 images")
    assert line == ("blur test on 6 images: 1 dimensions read their evidence mostly in the background's fine "
                    "detail: d1; 1 in the subject's: d0; 0 in both; 1 in neither: d2")
    untested = dataclasses.replace(profiles[0], evidence_subject=None, evidence_background=None)
    assert evidence_count_sentence(summarise([untested, *profiles[1:]]), "x") is None  # all tested, or no line


def test_kept_blur_tests_are_read_back_and_keyed_by_input_and_mask(tmp_path, monkeypatch):
    import pipeline.store.derived as derived

    monkeypatch.setattr(derived, "model_fingerprint", lambda run: "m1")
    rgb, mask = images(1)[0], left_half(1)[0]
    kept = evidence_derived(tmp_path, 3, "img/3", rgb, mask)
    value = RegionEvidence(3, np.array([0.5, 0.0], np.float32), np.array([0.1, 0.2], np.float32), 0.4, 0.3)
    kept.write(value)
    back = evidence_derived(tmp_path, 3, "img/3", rgb, mask).read()
    np.testing.assert_array_equal(back.subject, value.subject)
    assert (back.logit_subject, back.logit_background) == (0.4, 0.3)
    assert evidence_derived(tmp_path, 3, "img/3", rgb, ~mask).read() is None  # another mask: not this test
    monkeypatch.setattr(derived, "model_fingerprint", lambda run: "m2")
    assert evidence_derived(tmp_path, 3, "img/3", rgb, mask).read() is None  # another head: not this test


def test_no_image_no_forward():
    assert blur_test(Models(), np.zeros((0, SIZE, SIZE, 3), np.uint8), np.zeros((0, SIZE, SIZE), bool), []) == []
