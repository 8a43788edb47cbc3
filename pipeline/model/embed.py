"""Embed image files with an encoder: parallel decoding, batching and a resumable cache.

``embed_paths`` decodes images in worker threads (``pipeline.data.scan.load_image_rgb`` + the encoder's
preprocessing) while the model runs on the previous batch, so decoding hides behind compute
(``bench/embed.py`` measures this against a one-image-at-a-time baseline and against forward-only
throughput; threads beat worker processes on 2 cores because Pillow and torch release the GIL and
no tensors have to cross process boundaries).

Cache: embeddings are keyed by (encoder fingerprint, sha256 of the file's bytes), so an unchanged
image is never embedded twice, even under another path. They live in
``<cache_dir>/embeddings/<fingerprint>/chunk-*.npz`` (``keys``: S64 hex digests, ``vectors``:
(n, D) float32; with an image transform such as controlled re-encoding the folder is
``<fingerprint>-<transform key>``, so those embeddings never mix with the plain ones), each written
atomically once ``chunk_size`` new embeddings have accumulated; a run killed half-way loses at most
the unflushed chunk. A damaged chunk is reported with a
:class:`EmbeddingCacheWarning`, deleted and its images recomputed.
"""
from __future__ import annotations

import hashlib
import io
import time
import uuid
import warnings
import zipfile
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from functools import partial
from typing import Callable, Iterator, Protocol, Sequence

import numpy as np
import torch
from PIL import Image

from pipeline.config import Config, DataConfig, EncoderConfig
from pipeline.data.scan import BadImageError, load_image_rgb
from pipeline.model.encoders.base import Encoder
from pipeline.model.prefetch import ahead
from pipeline.model.stopwatch import Stopwatch
from pipeline.store.run_store import atomic_write_bytes

DEFAULT_MAX_PIXELS = DataConfig.max_image_pixels
Progress = Callable[[int, int], None]


class EmbeddingCacheWarning(UserWarning):
    """A cache chunk was unreadable and has been discarded (its images are recomputed)."""


@dataclass
class EmbedResult:
    """Embeddings in input order; rows of failed images are NaN.

    ``failures`` holds (input index, reason); ``n_computed`` counts images that went through the
    model in this call (duplicates of the same bytes count once), ``n_cached`` rows taken from
    the cache; ``keys`` the sha256 hex digest of each input file's bytes ("" where the file could
    not be read), e.g. for finding exact duplicates (``pipeline.checks.duplicates``);
    ``forward_seconds`` the time spent in the encoder's forward, ``seconds`` the whole call's (their
    ratio says how well decoding, hashing and caching hide behind the model).
    """

    embeddings: np.ndarray
    failures: list[tuple[int, str]] = field(default_factory=list)
    n_computed: int = 0
    n_cached: int = 0
    keys: list[str] = field(default_factory=list)
    forward_seconds: float = 0.0
    seconds: float = 0.0


class ImageTransform(Protocol):
    """Applied to each decoded RGB image before the encoder's preprocessing (e.g.
    ``pipeline.reencode_spec.ReencodeSpec``); ``key`` names it in the cache, so its embeddings are
    cached apart from the plain ones."""

    key: str

    def __call__(self, im: Image.Image) -> Image.Image: ...


def cache_fingerprint(encoder_fingerprint: str, transform: ImageTransform | None = None) -> str:
    """Cache folder name: the encoder's fingerprint, plus the transform's key when there is one."""
    if transform is None:
        return encoder_fingerprint
    key = getattr(transform, "key", "")
    if not isinstance(key, str) or not key or "/" in key:
        raise ValueError(f"an image transform needs a non-empty cache key without '/' (got {key!r})")
    return f"{encoder_fingerprint}-{key}"


# ---------------------------------------------------------------------------------------------
# Cache
# ---------------------------------------------------------------------------------------------
class EmbeddingCache:
    """Chunked on-disk map sha256(file bytes) -> embedding, for one encoder fingerprint."""

    def __init__(self, cache_dir: Path, fingerprint: str, dim: int):
        self.dir = Path(cache_dir) / "embeddings" / fingerprint
        self.dim = dim

    def load(self) -> dict[bytes, np.ndarray]:
        """Every readable chunk's entries; damaged chunks are warned about and deleted."""
        table: dict[bytes, np.ndarray] = {}
        if not self.dir.is_dir():
            return table
        for path in sorted(self.dir.glob("chunk-*.npz")):
            try:
                keys, vectors = self._read_chunk(path)
            except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
                warnings.warn(f"embedding cache chunk {path} is damaged ({type(e).__name__}: {e});"
                              " it is discarded and its images will be recomputed",
                              EmbeddingCacheWarning, stacklevel=3)
                path.unlink(missing_ok=True)
                continue
            for k, v in zip(keys.tolist(), vectors):
                table[k] = v
        return table

    def _read_chunk(self, path: Path) -> tuple[np.ndarray, np.ndarray]:
        with np.load(path, allow_pickle=False) as z:
            keys, vectors = z["keys"], z["vectors"]
        if keys.dtype != np.dtype("S64") or keys.ndim != 1:
            raise ValueError(f"keys have dtype {keys.dtype} and shape {keys.shape}, expected S64 (n,)")
        if vectors.dtype != np.float32 or vectors.shape != (len(keys), self.dim):
            raise ValueError(f"vectors have dtype {vectors.dtype} and shape {vectors.shape}, "
                             f"expected float32 ({len(keys)}, {self.dim})")
        if not np.isfinite(vectors).all():
            raise ValueError("vectors contain NaN or infinity")
        return keys, vectors

    def write(self, keys: Sequence[bytes], vectors: np.ndarray) -> Path:
        """Write one chunk atomically under a unique name (concurrent runs never clash)."""
        buf = io.BytesIO()
        np.savez(buf, keys=np.asarray(keys, dtype="S64"), vectors=np.asarray(vectors, np.float32))
        path = self.dir / f"chunk-{time.time_ns()}-{uuid.uuid4().hex[:8]}.npz"
        atomic_write_bytes(path, buf.getvalue())
        return path


def file_key(path: Path) -> bytes:
    """sha256 hex digest of the file's bytes (the cache key), as ASCII bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest().encode("ascii")


def _key_or_reason(path: Path) -> tuple[bytes | None, str | None]:
    try:
        return file_key(path), None
    except FileNotFoundError:
        return None, "file does not exist"
    except IsADirectoryError:
        return None, "not a regular file"
    except OSError as e:
        return None, f"cannot read file ({type(e).__name__}: {e})"


# ---------------------------------------------------------------------------------------------
# Decoding
# ---------------------------------------------------------------------------------------------
def _load_transformed(path: Path, load: Callable, transform: ImageTransform) -> Image.Image:
    image = load(path)
    try:
        return transform(image)
    except Exception as e:
        raise BadImageError(path, f"cannot apply {transform.key} ({type(e).__name__}: {e})") from e


def _decode(path: Path, preprocess: Callable, load: Callable) -> tuple[torch.Tensor | None, str | None]:
    try:
        return preprocess(load(path)), None
    except BadImageError as e:
        return None, e.reason
    except Exception as e:  # a preprocessing failure must not end the run either
        return None, f"cannot preprocess ({type(e).__name__}: {e})"


def _decoded_batches(items: list[tuple[bytes, Path]], preprocess: Callable, load: Callable,
                     batch_size: int, num_workers: int, pin: bool = False
                     ) -> Iterator[tuple[list[bytes], torch.Tensor | None, list[tuple[bytes, str]]]]:
    """Yield (keys, stacked tensors, failures) per batch of ``items``, in order.

    ``num_workers`` threads decode up to two batches ahead of the consumer, so the model's forward
    on one batch overlaps the decoding of the next ones. ``pin`` pins batches for fast copies to
    a GPU.
    """
    def batch_of(results):
        keys, tensors, failed = [], [], []
        for key, (tensor, reason) in results:
            if tensor is None:
                failed.append((key, reason))
            else:
                keys.append(key)
                tensors.append(tensor)
        if not tensors:
            return keys, None, failed
        stacked = torch.stack(tensors)
        return keys, (stacked.pin_memory() if pin else stacked), failed

    if num_workers <= 0:
        for start in range(0, len(items), batch_size):
            chunk = items[start:start + batch_size]
            yield batch_of((k, _decode(p, preprocess, load)) for k, p in chunk)
        return

    window = 2 * batch_size
    with ThreadPoolExecutor(max_workers=num_workers, thread_name_prefix="decode") as pool:
        pending: deque = deque()
        it = iter(items)
        try:
            for key, path in it:
                pending.append((key, pool.submit(_decode, path, preprocess, load)))
                if len(pending) >= window:
                    break
            while pending:
                take = [pending.popleft() for _ in range(min(batch_size, len(pending)))]
                for key, path in it:  # refill the window before blocking on this batch
                    pending.append((key, pool.submit(_decode, path, preprocess, load)))
                    if len(pending) >= window:
                        break
                yield batch_of((k, f.result()) for k, f in take)
        finally:
            for _, f in pending:  # consumer stopped early (error or abort): drop queued work
                f.cancel()


# ---------------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------------
def embed_paths_for(cfg: Config, encoder: Encoder, paths: Sequence[str | Path],
                    progress: Progress | None = None) -> EmbedResult:
    """:func:`embed_paths` as a run embeds: cached under ``cfg.cache_path``, with ``cfg.encoder``'s
    batch size, decoding threads and chunk size and ``cfg.data``'s pixel limit and controlled
    re-encoding (``cfg.data.reencode_spec``). The one place those settings meet the embedding."""
    return embed_paths(encoder, paths, cfg.cache_path, batch_size=cfg.encoder.batch_size,
                       num_workers=cfg.encoder.num_workers, chunk_size=cfg.encoder.chunk_size,
                       max_pixels=cfg.data.max_image_pixels, progress=progress,
                       transform=cfg.data.reencode_spec)


def embed_paths(encoder: Encoder, paths: Sequence[str | Path], cache_dir: Path | None, *,
                batch_size: int = EncoderConfig.batch_size, num_workers: int = EncoderConfig.num_workers,
                chunk_size: int = EncoderConfig.chunk_size, max_pixels: int = DataConfig.max_image_pixels,
                progress: Progress | None = None, transform: ImageTransform | None = None) -> EmbedResult:
    """Embed image files, reusing and extending the on-disk cache (with a run's settings:
    :func:`embed_paths_for`; the defaults here are the config's).

    Parameters
    ----------
    encoder : the frozen encoder (its ``info.fingerprint`` keys the cache).
    paths : image files; the result rows follow this order.
    cache_dir : cache root (``<cache_dir>/embeddings/<fingerprint>/``); None disables caching.
    batch_size : images per forward pass.
    num_workers : decoding threads (0 = decode in the calling thread, no overlap).
    chunk_size : new embeddings per cache chunk; a killed run keeps every finished chunk.
    max_pixels : decompression-bomb limit passed to ``load_image_rgb``.
    progress : ``progress(done, total)`` in images; cached and failed images count at once.
    transform : applied to every decoded image before preprocessing (controlled re-encoding);
        its ``key`` joins the cache fingerprint. Images are then decoded at full size (no JPEG
        draft scaling, which would treat JPEG and PNG files differently).

    Returns
    -------
    EmbedResult
        ``embeddings`` (N, D) float32 (NaN rows for failures) and ``failures`` (index, reason).
    """
    started = time.perf_counter()
    paths = [Path(p) for p in paths]
    n, dim = len(paths), encoder.info.embed_dim
    out = np.full((n, dim), np.nan, dtype=np.float32)
    failures: list[tuple[int, str]] = []

    with ThreadPoolExecutor(max_workers=max(1, num_workers)) as pool:  # hashing releases the GIL
        keyed = list(pool.map(_key_or_reason, paths))
    cache = EmbeddingCache(cache_dir, cache_fingerprint(encoder.info.fingerprint, transform), dim) \
        if cache_dir else None
    known = cache.load() if cache else {}

    rows_of: dict[bytes, list[int]] = {}  # key -> input rows still to fill, first-seen order
    n_cached = 0
    for i, (key, reason) in enumerate(keyed):
        if key is None:
            failures.append((i, reason))
        elif key in known:
            out[i] = known[key]
            n_cached += 1
        else:
            rows_of.setdefault(key, []).append(i)
    done = n - sum(len(rows) for rows in rows_of.values())
    if progress:
        progress(done, n)

    todo = [(key, paths[rows[0]]) for key, rows in rows_of.items()]
    if not todo:  # all cached (or failed): the model is not touched, so a lazily loaded one never loads
        failures.sort()
        return EmbedResult(out, failures, n_computed=0, n_cached=n_cached,
                           seconds=time.perf_counter() - started)
    pending_keys: list[bytes] = []
    pending_vecs: list[np.ndarray] = []
    n_computed, forward_seconds = 0, 0.0
    load = partial(load_image_rgb, max_pixels=max_pixels,
                   min_side=None if transform is not None else encoder.decode_min_side)
    if transform is not None:
        load = partial(_load_transformed, load=load, transform=transform)
    with torch.inference_mode():
        for keys, batch, failed in _decoded_batches(todo, encoder.preprocess, load, batch_size,
                                                    num_workers, pin=encoder.device.type == "cuda"):
            for key, reason in failed:
                for i in rows_of[key]:
                    failures.append((i, reason))
                done += len(rows_of[key])
            if batch is not None:
                t0 = time.perf_counter()
                vectors = encoder.embed(batch).float().cpu().numpy()
                forward_seconds += time.perf_counter() - t0
                n_computed += len(keys)
                for key, vec in zip(keys, vectors):
                    out[rows_of[key]] = vec
                    done += len(rows_of[key])
                pending_keys += keys
                pending_vecs += list(vectors)
                while cache and len(pending_keys) >= chunk_size:
                    cache.write(pending_keys[:chunk_size], np.stack(pending_vecs[:chunk_size]))
                    del pending_keys[:chunk_size], pending_vecs[:chunk_size]
            if progress:
                progress(done, n)
    if cache and pending_keys:
        cache.write(pending_keys, np.stack(pending_vecs))
    failures.sort()
    return EmbedResult(out, failures, n_computed=n_computed, n_cached=n_cached,
                       keys=[key.decode("ascii") if key else "" for key, _ in keyed],
                       forward_seconds=forward_seconds, seconds=time.perf_counter() - started)


def embed_pil(encoder: Encoder, images: Sequence[Image.Image],
              batch_size: int = EncoderConfig.batch_size, forward_watch: Stopwatch | None = None) -> np.ndarray:
    """Embed in-memory RGB images -> (N, D) float32 (no cache; for generated training images).

    The next batch is preprocessed in a thread while the model runs on this one (Pillow and torch
    release the GIL; ``pipeline.model.prefetch.ahead``), as :func:`embed_paths` does with decoding; ``forward_watch`` times the
    forward calls and counts the images."""
    starts = range(0, len(images), batch_size)
    if not starts:
        return np.zeros((0, encoder.info.embed_dim), dtype=np.float32)

    def prepare(start: int) -> torch.Tensor:
        return torch.stack([encoder.preprocess(im.convert("RGB") if im.mode != "RGB" else im)
                            for im in images[start:start + batch_size]])

    watch = forward_watch or Stopwatch()
    rows = []
    with torch.inference_mode():
        for batch in ahead((prepare(start) for start in starts), depth=1):
            with watch:
                rows.append(encoder.embed(batch).float().cpu().numpy())
            watch.items += len(batch)
    return np.concatenate(rows).astype(np.float32, copy=False)
