"""embed_paths / embed_pil with the tiny encoder on generated images: order, cache, resume, errors."""
from __future__ import annotations

import hashlib
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from pipeline.data.scan import load_image_rgb
from pipeline.model.embed import EmbeddingCacheWarning, embed_paths, embed_pil
from pipeline.model.encoders import TinyEncoder
from pipeline.model.encoders.base import Encoder

N_IMAGES = 30


class CountingEncoder(Encoder):
    """Delegates to a real encoder and counts the images that reach the model."""

    def __init__(self, inner: Encoder):
        self.inner = inner
        self.info, self.preprocess, self.device, self.family = (
            inner.info, inner.preprocess, inner.device, inner.family)
        self.images = 0

    def embed(self, batch):
        self.images += len(batch)
        return self.inner.embed(batch)

    @property
    def visual(self):
        return self.inner.visual

    @property
    def blocks(self):
        return self.inner.blocks


@pytest.fixture()
def counting(tiny):
    return CountingEncoder(tiny)


@pytest.fixture(scope="module")
def image_paths(tmp_path_factory):
    """Distinct random images of varied sizes, lossless PNG (and a few JPEG)."""
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    paths = []
    for i in range(N_IMAGES):
        h, w = int(rng.integers(40, 120)), int(rng.integers(40, 120))
        arr = (rng.random((h, w, 3)) * 255).astype(np.uint8)
        path = root / f"img{i:02d}.{'jpg' if i % 7 == 3 else 'png'}"
        Image.fromarray(arr).save(path)
        paths.append(path)
    return paths


def sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest().encode()


def cached_keys(cache_dir):
    keys = set()
    for chunk in (cache_dir / "embeddings").rglob("chunk-*.npz"):
        with np.load(chunk) as z:
            keys |= set(z["keys"].tolist())
    return keys


def test_order_matches_in_memory_embedding(tiny, image_paths, tmp_path):
    result = embed_paths(tiny, image_paths, tmp_path, batch_size=8, num_workers=2)
    assert result.failures == [] and result.embeddings.shape == (N_IMAGES, 32)
    expected = embed_pil(tiny, [load_image_rgb(p, 10**8) for p in image_paths], batch_size=5)
    np.testing.assert_allclose(result.embeddings, expected, atol=1e-5, rtol=0)
    # images are distinct, so a permutation of rows would be caught
    dists = np.linalg.norm(expected[:, None] - expected[None], axis=-1)
    assert dists[~np.eye(N_IMAGES, dtype=bool)].min() > 1e-3
    reversed_result = embed_paths(tiny, image_paths[::-1], None, batch_size=8, num_workers=2)
    np.testing.assert_allclose(reversed_result.embeddings, expected[::-1], atol=1e-5, rtol=0)


def test_threads_and_inline_decoding_agree(tiny, image_paths):
    a = embed_paths(tiny, image_paths, None, batch_size=7, num_workers=0).embeddings
    b = embed_paths(tiny, image_paths, None, batch_size=7, num_workers=2).embeddings
    np.testing.assert_array_equal(a, b)


def test_second_call_is_served_from_cache(counting, image_paths, tmp_path):
    calls = []
    first = embed_paths(counting, image_paths, tmp_path, batch_size=8, chunk_size=8)
    assert counting.images == N_IMAGES and first.n_computed == N_IMAGES
    counting.images = 0
    second = embed_paths(counting, image_paths, tmp_path, batch_size=8, chunk_size=8,
                         progress=lambda d, t: calls.append((d, t)))
    assert counting.images == 0 and second.n_cached == N_IMAGES
    np.testing.assert_array_equal(first.embeddings, second.embeddings)
    assert calls[0] == (N_IMAGES, N_IMAGES)  # cached images count at once


def test_same_bytes_at_another_path_are_embedded_once(counting, image_paths, tmp_path):
    copy = tmp_path / "copy_of_img00.png"
    shutil.copy(image_paths[0], copy)
    result = embed_paths(counting, [image_paths[0], image_paths[1], copy], tmp_path / "c")
    assert counting.images == 2 and result.n_computed == 2
    np.testing.assert_array_equal(result.embeddings[0], result.embeddings[2])
    counting.images = 0
    embed_paths(counting, [copy], tmp_path / "c")  # a new path, the same bytes: a cache hit
    assert counting.images == 0


def test_killed_run_resumes_from_finished_chunks(counting, tiny, image_paths, tmp_path):
    reference = embed_paths(tiny, image_paths, None, batch_size=4).embeddings

    class Killed(Exception):
        pass

    def kill_after_ten(done, total):
        if done >= 10:  # reached at done=12: chunk 1 (images 0-7) is on disk, 8-11 are not
            raise Killed

    with pytest.raises(Killed):
        embed_paths(counting, image_paths, tmp_path, batch_size=4, chunk_size=8,
                    progress=kill_after_ten)
    assert cached_keys(tmp_path) == {sha(p) for p in image_paths[:8]}

    counting.images = 0
    resumed = embed_paths(counting, image_paths, tmp_path, batch_size=4, chunk_size=8)
    assert counting.images == N_IMAGES - 8 and resumed.n_cached == 8
    np.testing.assert_allclose(resumed.embeddings, reference, atol=1e-5, rtol=0)
    assert cached_keys(tmp_path) == {sha(p) for p in image_paths}


def test_progress_counts_every_image_once(tiny, image_paths, tmp_path):
    calls = []
    embed_paths(tiny, image_paths, tmp_path, batch_size=8, progress=lambda d, t: calls.append((d, t)))
    done = [d for d, _ in calls]
    assert done == sorted(done) and calls[0] == (0, N_IMAGES) and calls[-1] == (N_IMAGES, N_IMAGES)
    assert {t for _, t in calls} == {N_IMAGES}


def test_broken_files_are_reported_and_the_rest_embedded(tiny, image_paths, tmp_path):
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    text = tmp_path / "notes.png"
    text.write_text("this is not an image")
    missing = tmp_path / "gone.png"
    paths = [image_paths[0], empty, image_paths[1], text, missing, image_paths[2]]
    result = embed_paths(tiny, paths, tmp_path / "cache", batch_size=2)
    reasons = dict(result.failures)
    assert sorted(reasons) == [1, 3, 4]
    assert "zero-byte" in reasons[1]
    assert "not a readable image" in reasons[3]
    assert "does not exist" in reasons[4]
    assert np.isnan(result.embeddings[[1, 3, 4]]).all()
    good = embed_paths(tiny, [image_paths[0], image_paths[1], image_paths[2]], None).embeddings
    np.testing.assert_allclose(result.embeddings[[0, 2, 5]], good, atol=1e-5, rtol=0)
    # failures are not cached: only the three good images are
    assert cached_keys(tmp_path / "cache") == {sha(p) for p in image_paths[:3]}


@pytest.mark.parametrize("damage", ["garbage", "truncated", "wrong_shape"])
def test_damaged_cache_chunk_is_ignored_and_recomputed(counting, image_paths, tmp_path, damage):
    first = embed_paths(counting, image_paths[:12], tmp_path, batch_size=4, chunk_size=4)
    chunks = sorted((tmp_path / "embeddings").rglob("chunk-*.npz"))
    assert len(chunks) == 3
    victim = chunks[1]
    if damage == "garbage":
        victim.write_bytes(b"not a zip at all")
    elif damage == "truncated":
        victim.write_bytes(victim.read_bytes()[:200])
    else:
        with np.load(victim) as z:
            keys = z["keys"]
        np.savez(victim.with_suffix(""), keys=keys, vectors=np.zeros((len(keys), 33), np.float32))
    counting.images = 0
    with pytest.warns(EmbeddingCacheWarning, match=victim.name):
        again = embed_paths(counting, image_paths[:12], tmp_path, batch_size=4, chunk_size=4)
    assert counting.images == 4 and again.n_cached == 8
    np.testing.assert_allclose(again.embeddings, first.embeddings, atol=1e-5, rtol=0)
    assert not victim.exists()


def test_cache_is_per_encoder_fingerprint(image_paths, tmp_path):
    a, b = TinyEncoder(seed=0), CountingEncoder(TinyEncoder(seed=1))
    embed_paths(a, image_paths[:4], tmp_path)
    result = embed_paths(b, image_paths[:4], tmp_path)
    assert b.images == 4 and result.n_cached == 0


def test_embed_pil(tiny):
    images = [Image.new("RGB", (50, 40), (i * 20, 0, 0)) for i in range(5)] + [Image.new("L", (30, 30))]
    out = embed_pil(tiny, images, batch_size=4)
    assert out.shape == (6, 32) and out.dtype == np.float32
    with torch.inference_mode():
        one = tiny.embed(tiny.preprocess(images[2])[None]).numpy()
    np.testing.assert_allclose(out[2], one[0], atol=1e-5, rtol=0)
    assert embed_pil(tiny, [], batch_size=4).shape == (0, 32)


def test_empty_input(tiny, tmp_path):
    result = embed_paths(tiny, [], tmp_path)
    assert result.embeddings.shape == (0, 32) and result.failures == []
