"""The 16-d head and the vision-only projection learn what they should on data with a known answer."""
from __future__ import annotations

import dataclasses
import warnings

import numpy as np
from sklearn.linear_model import LogisticRegression

from pipeline.config import HeadConfig, ProjectionConfig
from pipeline.model.head import DistilledHead, orthogonality_report, sigmoid
from pipeline.model.projection import VisionOnlyProjection
from pipeline.model.projection_training import _probe_accuracy


def _two_classes(n=600, d=64, shift=1.2, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    direction = rng.normal(size=d)
    direction /= np.linalg.norm(direction)
    x = rng.normal(size=(n, d)) + np.outer(y * 2 - 1, direction) * shift
    return x.astype(np.float32), y


def test_head_reaches_bayes_accuracy_and_stops_early():
    x, y = _two_classes(n=1200)
    x, y, xt, yt = x[:600], y[:600], x[600:], y[600:]
    head = DistilledHead(dim=16, max_epochs=300, patience=10).fit(x[:500], y[:500], x[500:], y[500:])
    acc = ((head.predict_proba(xt) > 0.5) == yt).mean()
    # shift 1.2 along one axis: the Bayes accuracy is Phi(1.2) = 0.885; with 500 training rows in
    # 64 dimensions a well-fitted logistic regression gets 0.843 on this draw: the head must match it
    reference = LogisticRegression().fit(x, y).score(xt, yt)
    assert 0.8 < reference and abs(acc - reference) < 0.02
    assert head.epochs_ < 300
    z, logit = head.transform(xt)
    assert z.shape == (600, 16) and np.allclose(1 / (1 + np.exp(-logit)), head.predict_proba(xt), atol=1e-6)
    restored = DistilledHead.from_state(head.state())
    assert np.allclose(restored.transform(xt)[1], logit)


def test_head_and_projection_take_their_settings_from_the_config():
    """Each setting is the config's: the defaults are the config's defaults, ``from_config`` copies
    every setting the estimator takes (and only those), and ``get_params`` rebuilds it."""
    for estimator, config in ((DistilledHead, HeadConfig), (VisionOnlyProjection, ProjectionConfig)):
        fields = {f.name for f in dataclasses.fields(config)}
        assert set(estimator.param_names()) <= fields
        assert estimator().get_params() == {n: getattr(config(), n) for n in estimator.param_names()}
        # all differ (projection.dim's default is None: the width per encoder)
        changed = {n: ((getattr(config(), n) or 0) + 1) * 3 for n in estimator.param_names()}
        built = estimator.from_config(config(**changed))
        assert built.get_params() == changed
        assert estimator(**built.get_params()).get_params() == changed
    assert DistilledHead.from_config(HeadConfig(), seed=7).seed == 7  # overrides win
    assert "holdout_fraction" not in DistilledHead.param_names()


def test_sigmoid_is_the_logistic_function_in_float64():
    logit = np.array([-800.0, -2.0, 0.0, 2.0, 800.0], dtype=np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow warning at the extremes
        prob = sigmoid(logit)
    assert prob.dtype == np.float64
    assert np.array_equal(prob[[0, 2, 4]], [0.0, 0.5, 1.0])
    assert np.allclose(prob[[1, 3]], [1 / (1 + np.exp(2.0)), 1 / (1 + np.exp(-2.0))], rtol=0, atol=1e-15)
    assert sigmoid(3.0) == 1 / (1 + np.exp(-3.0))


def test_orthogonality_penalty_makes_dimensions_nearly_orthogonal():
    x, y = _two_classes(d=256)
    kw = dict(dim=16, max_epochs=60, patience=100, lr=3e-3)
    with_pen = DistilledHead(ortho_weight=1.0, **kw).fit(x[:500], y[:500], x[500:], y[500:])
    without = DistilledHead(ortho_weight=0.0, **kw).fit(x[:500], y[:500], x[500:], y[500:])
    r_with = orthogonality_report(with_pen.module_.to16.weight.detach().numpy())
    r_without = orthogonality_report(without.module_.to16.weight.detach().numpy())
    assert r_with["max_abs_cosine"] < 0.1
    assert r_with["mean_abs_cosine"] < r_without["mean_abs_cosine"]


def test_projection_forgets_a_written_word_and_keeps_the_image():
    """Synthetic 'forget to spell': an image with a word = the image + a word-specific direction in a
    word subspace. After the projection the word must be harder to read and the pair closer."""
    rng = np.random.default_rng(0)
    d, n, n_words = 96, 800, 10
    word_space = np.linalg.qr(rng.normal(size=(d, 8)))[0].T  # 8 directions carry writing
    word_vecs = rng.normal(size=(n_words, 8)) @ word_space * 4.0
    clean = rng.normal(size=(n, d))
    clean -= (clean @ word_space.T) @ word_space * 0.9  # images barely use the word subspace
    words = rng.integers(0, n_words, n)
    with_word = clean + word_vecs[words]
    alone = word_vecs[words] + rng.normal(size=(n, d)) * 0.1
    proj = VisionOnlyProjection(dim=48, epochs=40, seed=0).fit(clean[:600], with_word[:600], alone[:600])

    def cos(a, b):
        a = a / np.linalg.norm(a, axis=1, keepdims=True)
        b = b / np.linalg.norm(b, axis=1, keepdims=True)
        return (a * b).sum(1).mean()

    before = cos(clean[600:], with_word[600:])
    after = cos(proj.transform(clean[600:]), proj.transform(with_word[600:]))
    assert after > before + 0.1
    image_ids = np.arange(600, 800)
    probe_before = _probe_accuracy(with_word[600:], words[600:], image_ids)
    probe_after = _probe_accuracy(proj.transform(with_word[600:]), words[600:], image_ids)
    assert probe_before > 0.8 and probe_after < probe_before - 0.2
    restored = VisionOnlyProjection.from_state(proj.state())
    assert np.allclose(restored.transform(clean[:5]), proj.transform(clean[:5]))
