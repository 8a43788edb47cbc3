"""Bias probe with detectors whose behaviour is known: one that calls JPEG artefacts "real" shows
the asymmetric shift (bias), one that reads colour does not move (stable), one whose confidence
rests on fine detail loses it for both classes (robustness); a detector *trained* on a set whose
fakes are PNG and reals JPEG learns the compression, the same detector trained on a clean set does
not."""
from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image
from sklearn.linear_model import LogisticRegression

from pipeline.checks.bias_probe import DEFAULT_TRANSFORMS, Transform, bias_probe, verdict
from pipeline.data.scan import BadImageError


def _scene(rng, n=64, red=0.0) -> Image.Image:
    """A smooth random picture (blocky JPEG artefacts stand out on it); ``red`` tilts its colour."""
    low = rng.random((4, 4, 3))
    low[..., 0] = np.clip(low[..., 0] + red, 0, 1)
    low[..., 2] = np.clip(low[..., 2] - red, 0, 1)
    return Image.fromarray((low * 255).astype(np.uint8)).resize((n, n), Image.Resampling.BICUBIC)


def _jpeg(im: Image.Image, quality: int) -> Image.Image:
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=quality)
    buf.seek(0)
    return Image.open(buf).convert("RGB")


def blockiness(im: Image.Image) -> float:
    """Mean step across 8-pixel column boundaries over the mean step elsewhere (best grid offset)."""
    d = np.abs(np.diff(np.asarray(im.convert("L"), dtype=np.float64), axis=1)).mean(axis=0)
    ratios = [d[o::8].mean() / (np.delete(d, np.arange(o, len(d), 8)).mean() + 1e-6) for o in range(8)]
    return float(max(ratios))


def redness(im: Image.Image) -> float:
    a = np.asarray(im, dtype=np.float64) / 255
    return float((a[..., 0] - a[..., 2]).mean())


def _sigmoid(x):
    return 1 / (1 + np.exp(-np.asarray(x, dtype=np.float64)))


def jpeg_is_real(images):
    """Planted bias: p(fake) falls as JPEG block artefacts rise."""
    return _sigmoid(-8 * (np.array([blockiness(im) for im in images]) - 1.3))


def colour_reader(images):
    """Neutral: p(fake) from the colour tilt, which no transformation here changes."""
    return _sigmoid(12 * np.array([redness(im) for im in images]))


@pytest.fixture(scope="module")
def png_fakes_jpeg_reals():
    """20 reals saved as JPEG q40, 20 fakes kept lossless (PNG); same picture distribution."""
    rng = np.random.default_rng(0)
    images, labels = [], []
    for i in range(40):
        real = i % 2 == 0
        im = _scene(rng, red=-0.25 if real else 0.25)
        images.append(_jpeg(im, 40) if real else im)
        labels.append(0 if real else 1)
    return images, np.array(labels)


def _by_name(result):
    return {t["name"]: t for t in result["transforms"]}


def test_a_detector_that_learned_jpeg_shows_the_asymmetric_shift(png_fakes_jpeg_reals):
    images, labels = png_fakes_jpeg_reals
    result = bias_probe(lambda i: images[i], range(40), labels, jpeg_is_real)
    assert result["original"]["real"]["accuracy"] == 1.0 and result["original"]["fake"]["accuracy"] == 1.0
    t = _by_name(result)
    for name in ("jpeg75", "jpeg50"):
        assert t[name]["verdict"] == "bias", t[name]
        assert t[name]["reason"].startswith(f"JPEG quality {name[4:]}: fakes move towards real")
        assert t[name]["fake"]["mean_shift"] < -0.2 and abs(t[name]["real"]["mean_shift"]) < 0.1
    assert t["jpeg50"]["fake"]["flip_fraction"] >= 0.5 and t["jpeg50"]["real"]["flip_fraction"] == 0
    assert t["png"]["verdict"] == "stable" and t["png"]["fake"]["mean_shift"] == 0  # lossless
    assert {"jpeg75", "jpeg50"} <= set(result["bias"]) and "png" not in result["bias"]
    json.dumps(result)


def test_a_neutral_detector_does_not_move(png_fakes_jpeg_reals):
    images, labels = png_fakes_jpeg_reals
    result = bias_probe(lambda i: images[i], range(40), labels, colour_reader)
    assert result["original"]["fake"]["accuracy"] == 1.0 and result["original"]["real"]["accuracy"] == 1.0
    assert result["bias"] == []
    for t in result["transforms"]:
        assert t["verdict"] == "stable", t
        assert t["real"]["flip_fraction"] == 0 and t["fake"]["flip_fraction"] == 0


def test_a_detector_that_needs_fine_detail_lacks_robustness():
    """Both classes carry the same fine noise; confidence (either way) scales with its energy, so
    whatever smooths the image pulls both classes towards 0.5."""
    rng = np.random.default_rng(1)
    images, labels = [], []
    for i in range(30):
        arr = np.asarray(_scene(rng, red=0.25 if i % 2 else -0.25), dtype=np.float64)
        arr += rng.normal(0, 12, arr.shape)
        images.append(Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)))
        labels.append(i % 2)

    def detail(im):
        g = np.asarray(im.convert("L"), dtype=np.float64)
        return np.abs(np.diff(g, axis=1)).mean() / 10

    def score(batch):
        return _sigmoid([np.sign(redness(im)) * 3 * detail(im) for im in batch])

    result = bias_probe(lambda i: images[i], range(30), np.array(labels), score)
    t = _by_name(result)
    for name in ("resize0.5", "jpeg50"):
        assert t[name]["verdict"] == "robustness", t[name]
        assert t[name]["real"]["mean_shift"] > 0.05 and t[name]["fake"]["mean_shift"] < -0.05
    assert t["png"]["verdict"] == "stable"


def _features(images):
    return np.array([[blockiness(im), redness(im)] for im in images])


def test_a_trained_detector_learns_the_compression_only_where_the_data_teaches_it():
    """The same logistic regression on (blockiness, colour), trained on two sets: fakes PNG and reals
    JPEG (the compression separates perfectly, the colour only partly), or every image JPEG. The
    probe shows the JPEG bias for the first and not for the second."""
    rng = np.random.default_rng(2)

    def data(n, fakes_png):
        images, labels = [], []
        for i in range(n):
            fake = i % 2 == 1
            im = _scene(rng, red=rng.normal(0.08 if fake else -0.08, 0.12))
            images.append(im if (fake and fakes_png) else _jpeg(im, 40))
            labels.append(int(fake))
        return images, np.array(labels)

    verdicts = {}
    for name, fakes_png in (("confounded", True), ("clean", False)):
        train_images, train_labels = data(120, fakes_png)
        model = LogisticRegression(C=10, max_iter=1000).fit(_features(train_images), train_labels)
        held, held_labels = data(40, fakes_png)
        result = bias_probe(lambda i: held[i], range(40), held_labels,
                            lambda batch: model.predict_proba(_features(batch))[:, 1])
        verdicts[name] = {t["name"]: t["verdict"] for t in result["transforms"]}
        verdicts[name + "_shift"] = _by_name(result)["jpeg50"]["fake"]["mean_shift"]
    assert verdicts["confounded"]["jpeg50"] == "bias" and verdicts["confounded_shift"] < -0.2
    assert verdicts["clean"]["jpeg50"] == "stable" and abs(verdicts["clean_shift"]) < 0.05


def test_unreadable_images_and_failing_transforms_are_reported_and_the_probe_goes_on(png_fakes_jpeg_reals):
    images, labels = png_fakes_jpeg_reals

    def load(i):
        if i == 3:
            raise BadImageError(f"img{i}.png", "truncated image file")
        if i == 4:
            raise OSError("disk gone")
        return images[i]

    def picky(im):
        if im.getpixel((0, 0)) == images[6].getpixel((0, 0)):
            raise ValueError("cannot handle this one")
        return im

    calls = []
    transforms = DEFAULT_TRANSFORMS[:1] + (Transform("picky", "a picky transform", picky),)
    result = bias_probe(load, range(12), labels[:12], colour_reader, transforms, batch_size=5,
                        progress=lambda d, t: calls.append((d, t)))
    assert result["bad"] == [{"index": 3, "reason": "truncated image file", "transform": None},
                             {"index": 4, "reason": "OSError: disk gone", "transform": None},
                             {"index": 6, "reason": "ValueError: cannot handle this one", "transform": "picky"}]
    t = _by_name(result)
    assert t["jpeg95"]["real"]["n"] + t["jpeg95"]["fake"]["n"] == 10
    assert t["picky"]["real"]["n"] + t["picky"]["fake"]["n"] == 9
    assert calls[-1] == (36, 36) and [d for d, _ in calls] == sorted(d for d, _ in calls)


def test_verdict_rules():
    def stats(shift, flip=0.0):
        return {"n": 10, "mean_shift": shift, "flip_fraction": flip}

    assert verdict(stats(0.01), stats(-0.02))[0] == "stable"
    assert verdict(stats(0.0), stats(-0.4))[0] == "bias"
    assert verdict(stats(-0.2), stats(-0.4))[1].startswith("fakes move towards real")  # reals move away
    assert verdict(stats(0.3), stats(-0.25))[0] == "robustness"
    assert verdict(stats(0.3), stats(0.0))[1].startswith("reals move towards fake")
    assert verdict({"n": 0}, stats(-0.4))[0] == "not scored"


# -- the transformation that equalises a flagged size (issue 23.7) -----------------------------------

def test_to_size_brings_both_classes_to_one_square():
    from pipeline.checks.bias_probe import to_size

    t = to_size(256)
    fake = Image.new("RGB", (559, 559), (200, 30, 30))
    real = Image.new("RGB", (300, 400), (30, 30, 200))
    assert t(fake).size == (256, 256) and t(real).size == (256, 256)
    assert t(real).getpixel((128, 128)) == (30, 30, 200)  # resized, not blanked
    assert t.name == "size256" and t.words == "both classes to 256x256"
    with pytest.raises(ValueError, match="at least 8 pixels"):
        to_size(4)


def test_the_probe_adds_the_equalising_transformations_of_the_flagged_groups():
    from pipeline.checks.confound import ConfoundFix, equalising_transforms

    size = equalising_transforms(ConfoundFix("jpeg:90:256", ("size",), "x"))
    assert [t.name for t in size] == ["size256"]
    both = equalising_transforms(ConfoundFix("jpeg:85:48", ("size", "compression"), "x"))
    assert [t.name for t in both] == ["size48", "jpeg85"]
    # a quality among the default JPEG qualities is not probed twice
    assert equalising_transforms(ConfoundFix("jpeg:75", ("format",), "x")) == ()
    assert equalising_transforms(None) == ()


def test_a_size_shortcut_moves_the_fakes_under_to_size():
    """A detector that calls every 559x559 image fake: to_size(256) makes fakes 'real', reals stay."""
    from pipeline.checks.bias_probe import to_size

    images = [Image.new("RGB", (559, 559)) for _ in range(6)] + [Image.new("RGB", (300, 400)) for _ in range(6)]
    labels = [1] * 6 + [0] * 6
    probe = bias_probe(lambda i: images[i], range(12), labels,
                       lambda ims: np.array([0.95 if im.size == (559, 559) else 0.05 for im in ims]),
                       transforms=(to_size(256),))
    t = probe["transforms"][0]
    assert t["verdict"] == "bias" and probe["bias"] == ["size256"]
    assert t["fake"]["mean_shift"] == pytest.approx(-0.9) and t["fake"]["flip_fraction"] == 1.0
    assert t["real"]["mean_shift"] == 0 and t["real"]["flip_fraction"] == 0
