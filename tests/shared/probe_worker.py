"""Celery worker entry for the shared-server tests: ``app.shared.worker``'s worker, plus a record of
what its jobs actually compute.

With ``$FAXPLAINER_PROBE_FILE`` set, each worker process appends one JSON line per relevance map
written (``{"kind": "maps", "index": i}``), per concept extraction (``"concepts"``), per model
load (``"load_models"``) and per data scan (``"scan"``, with the folder or manifest), with its pid.
With ``$FAXPLAINER_PROBE_HOLD`` naming a file, a job asking for relevance maps or concepts also
records that it started (``"maps_started"`` with the images, ``"concepts_started"``) and then waits
while that file exists: a test keeps the heavy workers busy for exactly as long as it wants.
The explain counters are installed in the pool process when its first job asks for the explain
functions, so the worker's main process still imports no torch; the scan counter at import
(``pipeline.data.scan`` is light), before the runner picks up ``scan``.
Start with ``celery -A tests.shared.probe_worker:celery worker ...``.
"""
from __future__ import annotations

import json
import os

from app.jobs import celery_app as _celery_app
from app.jobs import work as _work
from app.shared import worker as _worker

_explain_functions = _work.explain_functions


def record(kind: str, **fields) -> None:
    path = os.environ.get("FAXPLAINER_PROBE_FILE")
    if path:
        with open(path, "a") as fh:  # one short O_APPEND write per line: lines never interleave
            fh.write(json.dumps({"kind": kind, "pid": os.getpid(), **fields}) + "\n")


def _install_counters() -> None:
    from pipeline.explain import cache as explain_cache
    from pipeline.model import run_models as models

    if getattr(explain_cache, "_probe_installed", False):
        return
    dump_maps, extract, load = explain_cache._dump_maps, explain_cache.extract_concepts, \
        models.read_models

    def counted_dump_maps(maps, key):  # once per image's maps kept (pipeline.store.derived)
        record("maps", index=int(maps.index))
        return dump_maps(maps, key)

    def counted_extract(*args, **kwargs):
        record("concepts")
        return extract(*args, **kwargs)

    def counted_load(run_dir, *args, **kwargs):
        record("load_models", run=str(run_dir))
        return load(run_dir, *args, **kwargs)

    explain_cache._dump_maps = counted_dump_maps
    explain_cache.extract_concepts = counted_extract
    models.read_models = counted_load
    explain_cache._probe_installed = True


def _held(kind: str, fn):
    """``fn`` that first records its start, then waits while the hold file exists."""
    hold = os.environ.get("FAXPLAINER_PROBE_HOLD")
    if not hold:
        return fn

    def held(run_dir, what, *args, **kwargs):
        import time

        record(f"{kind}_started", what=[int(i) for i in what] if kind == "maps" else int(what))
        while os.path.exists(hold):
            time.sleep(0.05)
        return fn(run_dir, what, *args, **kwargs)

    return held


def probed_explain_functions(*args, **kwargs):
    _install_counters()
    get_maps, get_concepts, get_faithfulness = _explain_functions(*args, **kwargs)
    return _held("maps", get_maps), _held("concepts", get_concepts), get_faithfulness


_work.explain_functions = probed_explain_functions


def _count_scans() -> None:
    import sys

    from pipeline.data import scan as data

    # the runner binds ``scan`` when it is imported: it must not have been yet, or scans would
    # go uncounted and "nothing was scanned" would prove nothing
    assert "pipeline.runner" not in sys.modules, "probe installed after the runner was imported"
    scan = data.scan

    def counted_scan(cfg, *args, **kwargs):
        record("scan", root=str(cfg.root or ""), manifest=str(cfg.manifest or ""))
        return scan(cfg, *args, **kwargs)

    data.scan = counted_scan


if os.environ.get("FAXPLAINER_PROBE_FILE"):  # a worker of the tests (not pytest reading records)
    _count_scans()


def __getattr__(name: str):
    if name == "celery":
        return _worker.worker_app(_celery_app.config_from_environment())
    raise AttributeError(name)


def read_records(path) -> list[dict]:
    try:
        with open(path) as fh:
            return [json.loads(line) for line in fh if line.strip()]
    except FileNotFoundError:
        return []
