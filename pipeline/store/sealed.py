"""Self-checking derived files: each carries the sha256 of its own content in a trailer.

Thumbnails, sprites, overlays, concept patches and the small JSON files that say "ready" are
cache files: a damaged one must be recomputed, never served. Run folders record their checksums in
``meta.json`` (:mod:`pipeline.store.run_store`), but these files are written one at a time by many jobs, so a
central list would be a point of contention. Instead each file ends with::

    \\n%FAXSEAL sha256=<64 hex digits>\\n

JPEG and PNG decoders (browsers, Pillow) stop at the end-of-image marker and ignore the trailer, so
sealed pictures are served as they are. A file with no trailer or a wrong digest is "damaged": the
readers here return None, and the callers compute it again.
"""
from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

from pipeline.store.run_store import json_default, atomic_write_bytes

log = logging.getLogger(__name__)

MARK = b"\n%FAXSEAL sha256="
TRAILER_LEN = len(MARK) + 64 + 1
_MEMO_SIZE = 200_000  # verified files remembered per process (path -> size, mtime)
_memo: OrderedDict[str, tuple[int, int]] = OrderedDict()
_memo_lock = threading.Lock()


def seal(data: bytes) -> bytes:
    return data + MARK + hashlib.sha256(data).hexdigest().encode() + b"\n"


def unseal(blob: bytes) -> bytes | None:
    """The content of a sealed blob, or None when it has no seal or the digest does not match."""
    if len(blob) < TRAILER_LEN or blob[-TRAILER_LEN:-65] != MARK or not blob.endswith(b"\n"):
        return None
    data, digest = blob[:-TRAILER_LEN], blob[-65:-1]
    return data if hashlib.sha256(data).hexdigest().encode() == digest else None


def write_sealed(path: str | Path, data: bytes) -> None:
    """Atomically write ``data`` with its seal (see :func:`pipeline.store.run_store.atomic_write_bytes`)."""
    atomic_write_bytes(path, seal(data))
    _forget(path)


def write_sealed_json(path: str | Path, obj: Any) -> None:
    write_sealed(path, json.dumps(obj, indent=1, sort_keys=True, default=json_default).encode())


def _forget(path: str | Path) -> None:
    with _memo_lock:
        _memo.pop(str(path), None)


def _stat_key(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns


def read_sealed(path: str | Path) -> bytes | None:
    """Content of the sealed file ``path``; None when it is missing or damaged (logged)."""
    path = Path(path)
    try:
        blob = path.read_bytes()
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return None
    data = unseal(blob)
    if data is None:
        why = ("is damaged (its checksum does not match)" if MARK in blob[-TRAILER_LEN:] else
               "has no checksum (written by an older version, or damaged)")
        log.warning("%s %s; it will be computed again", path, why)
    return data


def read_sealed_json(path: str | Path) -> Any | None:
    data = read_sealed(path)
    if data is None:
        return None
    try:
        return json.loads(data)
    except ValueError:  # sealed but not JSON: written by something else; treat as damaged
        log.warning("%s is not JSON; it will be computed again", path)
        return None


def is_intact(path: str | Path) -> bool:
    """True when ``path`` exists and its seal matches its content.

    A file checked once is remembered by size and mtime, so serving it again costs a ``stat``,
    not a hash; rewriting it (new mtime) checks it anew.
    """
    path = Path(path)
    key = _stat_key(path)
    if key is None:
        return False
    with _memo_lock:
        if _memo.get(str(path)) == key:
            _memo.move_to_end(str(path))
            return True
    if read_sealed(path) is None:
        return False
    with _memo_lock:
        _memo[str(path)] = key
        while len(_memo) > _MEMO_SIZE:
            _memo.popitem(last=False)
    return True


__all__ = ["MARK", "is_intact", "read_sealed", "read_sealed_json", "seal",
           "unseal", "write_sealed", "write_sealed_json"]
