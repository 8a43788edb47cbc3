"""The real shared server (redis-server, two Celery workers, gunicorn) on loopback, driven over HTTP
the way Dash's renderer drives it.

* without credentials, every page, callback, asset and picture route answers 401;
* a job submitted through the app runs in a Celery worker and answers, with progress;
* the same request from two sessions at once is computed once (counted inside the workers);
* a Celery pool process killed with SIGKILL in the middle of a run, and then the whole server
  (Redis, workers, gunicorn) killed and restarted: the run finishes, the page that asked for it
  gets it, and no embedding chunk is computed twice;
* a data set's embedding split in shards is shared out between two workers (standing in for two
  machines on one Redis and one cache folder), each image embedded once.
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
import signal
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from app.jobs.celery_app import embed_in_shards, make_celery, unacked_tasks
from app.jobs.celery_app import EMBED_QUEUE, RUNS_QUEUE
from app.shared.stack import SharedStack
from app.state import ids
from app.jobs.panel import JobPanel
from pipeline.store.run_store import RunStore
from tests.fixtures_runs import make_dataset as make_small_dataset
from tests.integration.test_pipeline_tiny import make_dataset as make_kill_dataset

from .conftest import OTHER_PASSWORD, OTHER_USER, PASSWORD, USER, needs_redis, shared_config
from .dash_client import DashSession
from .probe_worker import read_records

ATTN_REQUEST = JobPanel.ids.request(ids.ATTN_JOB)
CONCEPTS_REQUEST = JobPanel.ids.request(ids.CONCEPTS_JOB)


@pytest.fixture(scope="module")
def stack(shared_run, users_file, tmp_path_factory):
    needs_redis()
    state = tmp_path_factory.mktemp("stack")
    probe = state / "probe.jsonl"
    # chunks of 16 images, one decoding thread: a run is slow enough to be killed half-way;
    # new runs may read the tests' temporary folders; wrong passwords are tried on every route
    # here, so the lockout (tested in test_access) starts late
    cfg = shared_config(shared_run["runs"], shared_run["cache"], "encoder.chunk_size=16",
                        "encoder.batch_size=8", "encoder.num_workers=0",
                        f"server.data_roots=[{tmp_path_factory.getbasetemp()}]",
                        "server.login_free_failures=1000")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FAXPLAINER_USERS_FILE", str(users_file))
        mp.delenv("FAXPLAINER_REDIS_URL", raising=False)
        s = SharedStack(cfg, run_id=shared_run["run_id"], state_dir=state / "state",
                        env={"FAXPLAINER_PROBE_FILE": str(probe)},
                        worker_target="tests.shared.probe_worker:celery")
        s.probe = probe
        try:
            s.start()
            yield s
        finally:
            s.stop()


def session(stack, login=(USER, PASSWORD)) -> DashSession:
    return DashSession(stack.url, login).open()


def probe_records(stack, kind: str) -> list[dict]:
    return [r for r in read_records(stack.probe) if r["kind"] == kind]


# -- access control ---------------------------------------------------------------------------------
def _basic(user, password):
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def test_every_route_needs_credentials(stack, shared_run):
    run = shared_run["run_id"]
    s = session(stack)
    page = s.get("/").body.decode()
    suites = sorted({p for p in __import__("re").findall(r'src="(/_dash-component-suites/[^"]+)"', page)})
    assets = sorted(p.name for p in (Path(__file__).resolve().parents[2] / "assets").iterdir()
                    if p.is_file())
    assert suites and assets
    routes = ["/", "/?run=" + run, "/_dash-layout", "/_dash-dependencies", suites[0],
              f"/assets/{assets[0]}", f"/files/thumb/{run}/0.jpg", f"/files/sprite/{run}/{'0' * 20}.jpg",
              f"/files/attn/{run}/0/image.jpg", f"/files/concept/{run}/0/0/0", f"/files/notes/{run}.csv",
              "/files//etc/passwd", "/no-such-page"]
    anonymous = DashSession(stack.url)
    wrong = DashSession(stack.url, (USER, "not-the-password"))
    stranger = DashSession(stack.url, ("mallory", PASSWORD))
    for client in (anonymous, wrong, stranger):
        for path in routes:
            r = client.get(path)
            assert r.status == 401, (path, r.status)
            assert "Basic" in r.headers.get("WWW-Authenticate", ""), path
            assert b"FaXplainer" not in r.body and b"_dash-config" not in r.body, path
        body = json.dumps(s.payload(s.callback("shell-status-div.children"),
                                    {"shell-run-store.data": run}, ["shell-run-store.data"])).encode()
        r = client.request("POST", "/_dash-update-component", body)
        assert r.status == 401 and b"encoder" not in r.body
    # the same routes with credentials
    for path in ["/", "/_dash-layout", "/_dash-dependencies", suites[0], f"/assets/{assets[0]}",
                 f"/files/thumb/{run}/0.jpg", f"/files/notes/{run}.csv"]:
        assert s.get(path).status == 200, path
    status = s.call("shell-status-div.children", {"shell-run-store.data": run}, ["shell-run-store.data"])
    assert "48 images" in json.dumps(status)


# -- jobs -------------------------------------------------------------------------------------------
def _cell_images(shared_run, count: int, skip: int = 0) -> tuple[int, list[int]]:
    """(cell, ``count`` of its images after the first ``skip``) of the largest cell."""
    records = RunStore(shared_run["runs"] / shared_run["run_id"]).read_records()
    cells = Counter(r["cell"] for r in records)
    cell = cells.most_common(1)[0][0]
    return cell, [i for i, r in enumerate(records) if r["cell"] == cell][skip:skip + count]


def _attention_request(s: DashSession, run: str, cell: int, indices: list[int]) -> dict:
    r = s.call("attention-content-div.children",
               {"shell-selection-store.data": {"ids": indices, "from": "graph"},
                "shell-run-store.data": run, "shell-cell-store.data": cell}, ["shell-selection-store.data"])
    return r[ATTN_REQUEST]["data"]


def test_a_job_through_the_app_runs_in_a_worker_with_progress(stack, shared_run):
    run = shared_run["run_id"]
    s = session(stack)
    cell, chosen = _cell_images(shared_run, 3)
    request = _attention_request(s, run, cell, chosen)
    assert request and request["indices"] == chosen
    result = s.call_background("attention-content-div.children",
                               {f"{ATTN_REQUEST}.data": request}, [f"{ATTN_REQUEST}.data"])
    labels = [p.get(f"{JobPanel.ids.progress_label(ids.ATTN_JOB)}.children") for p in result.progress]
    assert labels and all(isinstance(x, str) and ":" in x for x in labels), result.progress
    content = json.dumps(result.response["attention-content-div"]["children"])
    for i in chosen:
        assert f'"data-index": "{i}"' in content
    assert s.get(f"/files/attn/{run}/{chosen[1]}/aggregate.jpg").status == 200
    # computed by a worker process, not by the web server
    assert {r["index"] for r in probe_records(stack, "maps")} >= set(chosen)


def _together(n: int, fn):
    """Run ``fn(i)`` in ``n`` threads released at the same moment; returns the results in order."""
    barrier = threading.Barrier(n)
    out, errors = [None] * n, []

    def body(i):
        try:
            barrier.wait(30)
            out[i] = fn(i)
        except BaseException as e:  # re-raised below
            errors.append(e)

    threads = [threading.Thread(target=body, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    if errors:
        raise errors[0]
    return out


def test_same_request_from_two_sessions_is_computed_once(stack, shared_run):
    """Two analysts ask for the same concepts, then the same maps, at once: one computation, both
    answered. (Two requests of *one* analyst would replace each other: tests/shared/test_team.py.)"""
    run = shared_run["run_id"]
    sessions = [session(stack), session(stack, (OTHER_USER, OTHER_PASSWORD))]
    assert sessions[0].end_id != sessions[1].end_id  # two page loads

    # a cell's concepts
    cell = 2
    values = {"shell-view-store.data": "concepts", "shell-cell-store.data": cell,
              "shell-run-store.data": run}
    requests = [s.call("concepts-content-div.children", values, ["shell-view-store.data"])
                [CONCEPTS_REQUEST]["data"] for s in sessions]
    assert requests[0]["nonce"] != requests[1]["nonce"]  # Dash's memo cannot merge them
    before = len(probe_records(stack, "concepts"))
    answers = _together(2, lambda i: sessions[i].call_background(
        "concepts-content-div.children", {f"{CONCEPTS_REQUEST}.data": requests[i]},
        [f"{CONCEPTS_REQUEST}.data"]))
    for a in answers:
        assert f"concepts of cell {cell}" in json.dumps(a.response[JobPanel.ids.message(ids.CONCEPTS_JOB)])
        assert '"data-concept": "0"' in json.dumps(a.response["concepts-content-div"])
    assert len(probe_records(stack, "concepts")) - before == 1

    # the same images' relevance maps
    cell, chosen = _cell_images(shared_run, 4, skip=3)  # not the images of the test above
    requests = [_attention_request(s, run, cell, chosen) for s in sessions]
    answers = _together(2, lambda i: sessions[i].call_background(
        "attention-content-div.children", {f"{ATTN_REQUEST}.data": requests[i]},
        [f"{ATTN_REQUEST}.data"]))
    for a in answers:
        content = json.dumps(a.response["attention-content-div"]["children"])
        assert all(f'"data-index": "{i}"' in content for i in chosen)
    written = Counter(r["index"] for r in probe_records(stack, "maps"))
    assert all(written[i] == 1 for i in chosen), written
    assert max(written.values()) == 1, written  # no image's maps computed twice, ever

    # each worker process loaded the run's models once, however many jobs it ran
    loads = Counter((r["pid"], r["run"]) for r in probe_records(stack, "load_models"))
    assert loads and max(loads.values()) == 1, loads


# -- faults -----------------------------------------------------------------------------------------
def _chunk_keys(cache: Path) -> Counter:
    keys: Counter = Counter()
    for chunk in cache.glob("embeddings/*/chunk-*.npz"):
        with np.load(chunk) as z:
            keys.update(k.decode() for k in z["keys"].tolist())
    return keys


def _pool_processes(pid: int) -> list[int]:
    """Child processes of ``pid`` (a Celery worker's pool), from /proc."""
    children = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                children.append(int(entry))
    return children


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc")
def test_killed_worker_and_killed_server_mid_run_finish_the_run(stack, shared_run, tmp_path):
    """SIGKILL to the pool process running a new run (Celery requeues the task at once), later
    SIGKILL to every process of the server (Redis included) and a restart: the page that asked
    for the run gets it, and no finished embedding chunk is computed again."""
    data = make_kill_dataset(tmp_path / "kill-data", n_per_class=120, seed=7, salt=False)
    files = sorted(p for p in data.rglob("*.png"))
    wanted = {hashlib.sha256(p.read_bytes()).hexdigest() for p in files}
    assert len(files) == 240 and len(wanted) == 240
    cache = shared_run["cache"]

    def done_here() -> int:
        return sum(1 for k in _chunk_keys(cache) if k in wanted)

    s = session(stack)
    body, handles = s.start_background(
        "shell-newrun-message-div.children",
        {"shell-newrun-start-button.n_clicks": 1, "shell-newrun-path-input.value": str(data)},
        ["shell-newrun-start-button.n_clicks"])
    assert handles is not None
    result = s.poll_background(body, handles, poll=0.05, timeout=240,
                               on_poll=lambda r: done_here() >= 32)
    assert result.response is None, "the run finished before it could be killed; use more images"

    # 1. the pool process running the job dies
    pool = _pool_processes(stack.components["worker-runs"].proc.pid)
    assert len(pool) == 1
    os.kill(pool[0], signal.SIGKILL)
    first_kill = done_here()
    result = s.poll_background(body, handles, poll=0.05, timeout=240, result=result,
                               on_poll=lambda r: done_here() >= first_kill + 48)
    assert result.response is None, "the run finished before the second kill; use more images"

    # 2. the whole server dies
    for name in list(stack.components):
        stack.kill(name)
    killed_at = done_here()
    assert 80 <= killed_at < 240
    stack.start_redis()  # Redis comes back with its append-only file...
    pending = [t for t in unacked_tasks(make_celery(stack.redis_url)) if t["queue"] == RUNS_QUEUE]
    assert len(pending) == 1  # ...which still holds the run's task, delivered and never finished
    stack.start_web()
    stack.start_workers()  # requeues it
    seen_before = len(result.progress)

    result = s.poll_background(body, handles, poll=0.2, timeout=400, result=result)  # same page
    message = json.dumps(result.response["shell-newrun-message-div"]["children"])
    assert "is ready" in message, message
    # the resumed run's progress reaches the same page: a stage after the projection's (the rest of
    # the embedding can take under a poll on a fast CPU; the head's epochs and the grids cannot)
    labels = [str(p.get("shell-newrun-progress-label-div.children")) for p in result.progress[seen_before:]]
    assert any(x.startswith(("embed", "checks", "head", "cells", "grids")) for x in labels), labels

    keys = _chunk_keys(cache)
    assert {k for k in keys if k in wanted} == wanted  # every image embedded...
    assert all(keys[k] == 1 for k in wanted)  # ...and no finished chunk computed again
    run_id = json.dumps(result.response).split("Run ")[1].split(" is ready")[0]
    meta = RunStore(shared_run["runs"] / run_id).read_meta()
    assert meta["status"] == "complete" and meta["data"]["n_images"] == 240
    assert not [t for t in unacked_tasks(make_celery(stack.redis_url)) if t["queue"] == RUNS_QUEUE]


# -- several machines ---------------------------------------------------------------------------------
def test_embedding_shards_are_shared_out_between_workers(stack, shared_run, tmp_path):
    """A second worker on the embedding queue stands in for another machine (same Redis, same
    cache folder): the shards go to both, and every image is embedded exactly once."""
    import dataclasses

    data = make_small_dataset(tmp_path / "shard-data", seed=11)
    files = sorted(data.rglob("*.png"))
    wanted = {hashlib.sha256(p.read_bytes()).hexdigest() for p in files}
    stack.start_worker("embed2", queues=[EMBED_QUEUE])
    try:
        cfg = dataclasses.replace(stack.cfg, data=dataclasses.replace(stack.cfg.data, root=str(data)))
        summaries = embed_in_shards(make_celery(stack.redis_url), cfg, count=6, timeout=300)
    finally:
        stack.stop_component("worker-embed2")
    assert sorted(s["shard"] for s in summaries) == list(range(6))
    assert sum(s["images"] for s in summaries) == len(files) == 48
    assert sum(s["computed"] for s in summaries) == 48 and not any(s["failed"] for s in summaries)
    workers = {s["worker"].split("@")[0] for s in summaries}
    assert workers == {"runs", "embed2"}, summaries  # both "machines" took shards
    keys = _chunk_keys(shared_run["cache"])
    assert all(keys[k] == 1 for k in wanted)
    # again: everything is in the shared cache already
    again = embed_in_shards(make_celery(stack.redis_url), cfg, count=2, timeout=300)
    assert sum(s["computed"] for s in again) == 0 and sum(s["cached"] for s in again) == 48
