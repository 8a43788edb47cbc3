"""Embedding a data set in shards, so that several machines can share the work.

The embedding cache (``pipeline.model.embed``) is keyed by the encoder and each file's bytes and lives in
``<cache_dir>/embeddings/``. When several machines see the same data and the same cache folder
(a shared mount, at the same path), each can embed one shard of the images into it; a run started
afterwards anywhere finds every embedding in the cache and goes straight to the later stages.

A shard is the images whose path hashes to it (``stable_shard``), so the split does not depend on
listing order, and a shard that failed or was never run is simply embedded by the run itself.
``app.jobs.celery_app`` sends shards to Celery workers; here is only the work of one shard.
"""
from __future__ import annotations

import hashlib
import socket
import time
from typing import Callable

from pipeline.config import Config


def stable_shard(rel_path: str, count: int) -> int:
    """Shard (0..count-1) of an image, from its path relative to the data root."""
    return int.from_bytes(hashlib.sha1(rel_path.encode("utf-8")).digest()[:8], "big") % count


def embed_shard(cfg: Config, index: int, count: int,
                progress: Callable[[int, int], None] | None = None) -> dict:
    """Embed shard ``index`` of ``count`` of ``cfg.data`` into the cache of ``cfg.cache_path``.

    Returns
    -------
    dict with ``shard``, ``images`` (in the shard), ``computed`` (new embeddings), ``cached``
    (already there), ``failed`` (unreadable), ``host`` and ``seconds``.
    """
    if not 0 <= index < count:
        raise ValueError(f"shard {index} does not exist among {count}")
    from pipeline.data.scan import scan
    from pipeline.store.diskcheck import writable_folder
    from pipeline.model.embed import embed_paths_for
    from pipeline.model.encoders import shared_encoder

    t0 = time.perf_counter()
    writable_folder(cfg.cache_path, "cache folder (cache_dir)")
    scanned = scan(cfg.data)
    paths = [scanned.root / r.path for r in scanned.records if stable_shard(r.path, count) == index]
    encoder = shared_encoder(cfg.encoder, cfg.cache_path)
    # the run's settings, re-encoding included, so the run finds these embeddings where it looks
    result = embed_paths_for(cfg, encoder, paths, progress=progress)
    return {"shard": index, "images": len(paths), "computed": result.n_computed,
            "cached": result.n_cached, "failed": len(result.failures), "host": socket.gethostname(),
            "seconds": round(time.perf_counter() - t0, 2)}
