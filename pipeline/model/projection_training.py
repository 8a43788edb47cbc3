"""Train the vision-only projection on a data set's own images and measure that it works.

Images are split in two: the projection is trained on one part (random words from a training vocabulary), and measured
on the other with a fixed vocabulary of evaluation words that training never drew:

* ``cosine_before`` / ``cosine_after``: mean cosine similarity between an image and the same image
  with a word drawn on it, in raw embedding space and after the projection, each space centred on
  its mean training image (should rise);
* ``word_probe_before`` / ``word_probe_after``: accuracy of a logistic-regression probe that reads
  which evaluation word was drawn, trained and tested on different images (should fall towards
  ``word_probe_chance``).
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from threadpoolctl import threadpool_limits

from pipeline.config import ProjectionConfig
from pipeline.data.scan import BadImageError, load_image_rgb
from pipeline.model.prefetch import ahead
from pipeline.model.projection import VisionOnlyProjection
from pipeline.model.words import draw_word, random_words, word_alone

N_EVAL_WORDS = 10
TRAIN_VOCAB = 128
VERSION = 3  # bump when training changes, so cached projections are retrained (3: the isometry gap's own gradient)


def _cos(a: np.ndarray, b: np.ndarray, center: np.ndarray) -> float:
    """Mean cosine of row pairs after removing the space's mean image: raw embeddings share a large
    common component (every cosine near 1), which would make spaces incomparable."""
    a, b = a - center, b - center
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return float(np.mean(np.sum(a * b, axis=1)))


def _probe_accuracy(x: np.ndarray, word_ids: np.ndarray, image_ids: np.ndarray,
                    blas_threads: int | None = None) -> float:
    """Train on the words drawn on the first half of the images, test on the other half
    (``blas_threads``: a cap while it fits beside other work)."""
    images = np.unique(image_ids)
    test_images = set(images[len(images) // 2:].tolist())
    test = np.array([i in test_images for i in image_ids])
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    x = (x - x[~test].mean(0)) / (x[~test].std(0) + 1e-6)
    with threadpool_limits(blas_threads, "blas"):
        probe = LogisticRegression(max_iter=2000, C=1.0).fit(x[~test], word_ids[~test])
        return float(probe.score(x[test], word_ids[test]))


@dataclass
class WordTuples:
    """The embedded training tuples and evaluation pairs of one image set: what the projection is
    fitted and measured on. They depend on the images, the seed, ``max_train_images`` and
    ``words_per_image``, not on the projection's width or schedule, so one rendering serves every
    width (``bench/fidelity.py`` keeps them)."""

    clean_rows: np.ndarray  # row of clean_embeddings each training tuple shows
    with_word: np.ndarray  # (T, D) the image with a word drawn on it
    alone: np.ndarray  # (T, D) the word alone on white
    text: np.ndarray | None  # (T, D) the word as text (encoders with a text tower)
    train_rows: np.ndarray  # rows of clean_embeddings drawn for training (their mean centres cosines)
    eval_with_word: np.ndarray  # (E, D) unseen images with unseen evaluation words
    eval_clean_rows: np.ndarray  # row of clean_embeddings each evaluation pair shows
    eval_word_ids: np.ndarray  # which evaluation word was drawn
    eval_image_ids: np.ndarray  # which image it was drawn on


def _draw_sample(rng: np.random.Generator, n: int, cfg: ProjectionConfig) -> tuple[np.ndarray, np.ndarray]:
    """(evaluation rows, training rows) of ``n`` images, drawn from ``rng`` (seeded with ``cfg.seed``)."""
    order = rng.permutation(n)
    n_eval, n_train = _sample_sizes(n, cfg)
    return order[:n_eval], order[n_eval:n_eval + n_train]


def _sample_sizes(n: int, cfg: ProjectionConfig) -> tuple[int, int]:
    """(evaluation images, training images) drawn from ``n``."""
    n_eval = min(max(8, n // 5), 120)
    return n_eval, max(0, min(cfg.max_train_images, n - n_eval))


def sample_rows(n: int, cfg: ProjectionConfig) -> np.ndarray:
    """The rows of ``n`` images that :func:`render_word_tuples` reads (sorted): only these need a
    clean embedding before the projection can be trained."""
    eval_idx, train_idx = _draw_sample(np.random.default_rng(cfg.seed), n, cfg)
    return np.sort(np.concatenate([eval_idx, train_idx]))


def render_steps(n: int, cfg: ProjectionConfig) -> int:
    """The progress steps of :func:`render_word_tuples` on ``n`` images: images rendered plus images
    embedded (train: 2 per word, eval: 2 per image), so a caller can count it into a larger stage."""
    n_eval, n_train = _sample_sizes(n, cfg)
    return n_train * (1 + cfg.words_per_image) + TRAIN_VOCAB + n_eval * 3 + 2


def render_word_tuples(encoder, paths: Sequence, cfg: ProjectionConfig, embed_images: Callable,
                       max_pixels: int, progress: Callable[[int, int], None] | None = None,
                       transform: Callable | None = None) -> WordTuples:
    """Draw words on ``paths`` and embed them (the costly part of training: about
    ``max_train_images * (1 + words_per_image)`` images through the encoder).

    ``embed_images(list[PIL.Image]) -> np.ndarray`` embeds in-memory images with ``encoder``;
    ``transform`` (controlled re-encoding) is applied to each image as it is loaded, as the clean
    embeddings were made.
    """
    def load(path):
        if transform is None:
            return load_image_rgb(path, max_pixels, min_side=encoder.decode_min_side)
        return transform(load_image_rgb(path, max_pixels))

    rng = np.random.default_rng(cfg.seed)
    n = len(paths)
    eval_idx, train_idx = _draw_sample(rng, n, cfg)
    if len(train_idx) < 8:
        raise ValueError(f"the projection needs at least {len(eval_idx) + 8} images; the data set has {n}")
    eval_words = random_words(np.random.default_rng(cfg.seed + 10_000), N_EVAL_WORDS)
    steps = render_steps(n, cfg)
    done = 0

    def tick(k=1):
        nonlocal done
        done += k
        if progress:
            progress(done, steps)

    # words come from a training vocabulary, so each word is rendered alone (and embedded) once
    vocab = random_words(rng, TRAIN_VOCAB)

    def load_or_none(path):
        try:
            return load(path)
        except BadImageError:
            return None

    def rendered():
        """(kind, source row, [(image, word id), ...]) in the order, and with the random draws, of
        a plain loop: each training image with its words, the vocabulary alone, each evaluation
        image with two evaluation words. Runs in a thread ahead of the encoder (``ahead``)."""
        for i in train_idx:
            image = load_or_none(paths[i])
            if image is None:
                yield "train", i, []
                continue
            words = rng.integers(0, len(vocab), cfg.words_per_image)
            yield "train", i, [(draw_word(image, vocab[w], rng), int(w)) for w in words]
        yield "alone", -1, [(word_alone(w, rng), k) for k, w in enumerate(vocab)]
        for i in eval_idx:
            image = load_or_none(paths[i])
            if image is None:
                yield "eval", i, []
                continue
            words = rng.choice(N_EVAL_WORDS, size=2, replace=False)
            yield "eval", i, [(draw_word(image, eval_words[w], rng), int(w)) for w in words]

    chunk = 256  # images per encoder call: each call's first batch waits for its preprocessing
    embedded = {"train": [], "alone": [], "eval": []}
    waiting = {"train": [], "alone": [], "eval": []}
    word_ids, clean_rows, ev_word_ids, ev_image_ids = [], [], [], []

    def flush(kind, everything=False):
        while len(waiting[kind]) >= chunk or (everything and waiting[kind]):
            part, waiting[kind] = waiting[kind][:chunk], waiting[kind][chunk:]
            embedded[kind].append(embed_images(part))
            tick(len(part))

    for kind, i, drawn in ahead(rendered()):
        if kind == "alone":
            flush("train", everything=True)
        waiting[kind] += [image for image, _ in drawn]
        if kind == "train":
            word_ids += [w for _, w in drawn]
            clean_rows += [i] * len(drawn)
        elif kind == "eval":
            ev_word_ids += [w for _, w in drawn]
            ev_image_ids += [int(i)] * len(drawn)
        if kind != "alone" and drawn:  # a source image rendered (an unreadable one is skipped)
            tick()
        flush(kind)
    flush("train", everything=True)
    flush("alone", everything=True)
    with_word = np.concatenate(embedded["train"])
    alone = np.concatenate(embedded["alone"])[word_ids]
    text = None
    if encoder.has_text_tower:
        with torch.inference_mode():
            text = encoder.encode_text(vocab).float().cpu().numpy()[word_ids]
    tick()
    flush("eval", everything=True)
    ev_ww = np.concatenate(embedded["eval"])
    tick()
    loaded = list(dict.fromkeys(clean_rows))  # the training rows that could be read, in drawn order
    return WordTuples(np.array(clean_rows, int), with_word, alone, text, np.asarray(loaded, int),
                      ev_ww, np.array(ev_image_ids, int), np.array(ev_word_ids, int),
                      np.array(ev_image_ids, int))


def fit_projection(tuples: WordTuples, clean_embeddings: np.ndarray,
                   cfg: ProjectionConfig) -> tuple[VisionOnlyProjection, dict]:
    """Fit the projection on ``tuples`` and measure it on their evaluation pairs: seconds, once the
    tuples are rendered."""
    projection = VisionOnlyProjection.from_config(cfg)
    t = tuples
    ev_clean = clean_embeddings[t.eval_clean_rows]
    train_clean = clean_embeddings[t.train_rows]
    # the raw space's word probe does not need the projection: it runs on the second core while
    # the projection fits on one torch thread
    with ThreadPoolExecutor(max_workers=1) as pool:
        probe_before = pool.submit(_probe_accuracy, t.eval_with_word, t.eval_word_ids, t.eval_image_ids, 1)
        projection.fit(clean_embeddings[t.clean_rows], t.with_word, t.alone, t.text)
        word_probe_before = probe_before.result()
    metrics = {
        "dim": int(projection.module_.linear.out_features),
        "n_train_pairs": len(t.clean_rows),
        "n_eval_pairs": len(t.eval_word_ids),
        "text_terms": t.text is not None,
        "cosine_before": _cos(ev_clean, t.eval_with_word, train_clean.mean(0)),
        "cosine_after": _cos(projection.transform(ev_clean), projection.transform(t.eval_with_word),
                             projection.transform(train_clean).mean(0)),
        "word_probe_before": word_probe_before,
        "word_probe_after": _probe_accuracy(projection.transform(t.eval_with_word), t.eval_word_ids,
                                            t.eval_image_ids),
        "word_probe_chance": 1.0 / N_EVAL_WORDS,
        "final_loss": projection.loss_history_[-1],
    }
    return projection, metrics
