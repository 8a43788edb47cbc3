"""What the image view can open: a cell (an int), or an image set named by a key ``"set:<hash>"``.

A cell is one of the run's cells (``cells.json``). An *image set* is any list of the run's images
that is not a cell, e.g. the held-out images one head of the cross-generator matrix gets wrong
(:mod:`app.views.matrix`). Its ids and its title are kept in a small sealed file of the app's
cache for the run, ``<cache>/app/<run key>/sets/<hash>.json`` (:mod:`pipeline.store.sealed`), and only
its key travels through ``ids.STORE_CELL`` and the URL (``?cell=set:<hash>``), as a cell id does.
The key is a hash of the ids and the title, so the same set always gets the same key (and the
same prepared grid), and a key from the browser can only name a file of that fixed form.

:class:`app.state.runs.RunView` reads sets through :func:`read_set` (``cell_info``, ``cell_members``),
so the grid job, the title, the filters and the attention view's "selection inside the open
cell" check treat a set as they treat a cell. Concepts are found per cell; a set has none.

Nothing here imports Dash.
"""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Iterable

from pipeline.store.sealed import read_sealed_json, write_sealed_json

SET_PREFIX = "set:"
SET_KEY = re.compile(r"^set:[0-9a-f]{16}$")

CellKey = int | str  # a cell id, or an image set's key


def is_set(key) -> bool:
    """True when ``key`` is an image set's key (``"set:"`` and 16 hex digits)."""
    return isinstance(key, str) and bool(SET_KEY.match(key))


def cell_key(value) -> CellKey | None:
    """``value`` (from a store, a URL or a request) as a cell id or a set key; None otherwise."""
    if is_set(value):
        return value
    if isinstance(value, bool):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def slug(key: CellKey) -> str:
    """A file-name part for ``key``: ``"cell-3"`` or ``"set-<hash>"``."""
    return f"set-{key[len(SET_PREFIX):]}" if is_set(key) else f"cell-{int(key)}"


def set_path(cache_dir: Path, key: str) -> Path:
    if not is_set(key):
        raise ValueError(f"not an image set key: {key!r}")
    return Path(cache_dir) / "sets" / f"{key[len(SET_PREFIX):]}.json"


def save_set(cache_dir: Path, ids: Iterable[int], title: str, about: dict | None = None) -> str:
    """Keep the image set ``ids`` (image indices of the run) with its ``title``; returns its key.

    ``about`` (JSON-able) says where the set comes from, e.g. the matrix pair.
    """
    chosen = sorted({int(i) for i in ids})
    digest = hashlib.sha1(json.dumps([chosen, title]).encode()).hexdigest()[:16]
    key = f"{SET_PREFIX}{digest}"
    path = set_path(cache_dir, key)
    if read_set(cache_dir, key) is None:
        write_sealed_json(path, {"ids": chosen, "title": str(title), "about": about or {}})
    return key


def read_set(cache_dir: Path, key) -> dict | None:
    """``{"ids", "title", "about"}`` of the set ``key``, or None (not a set key, not kept, damaged)."""
    if not is_set(key):
        return None
    data = read_sealed_json(set_path(cache_dir, key))
    if not isinstance(data, dict) or not isinstance(data.get("ids"), list):
        return None
    return data
