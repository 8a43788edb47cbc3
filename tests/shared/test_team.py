"""A lab team on the real shared server (redis-server, Celery workers, gunicorn on loopback):

* a cell click answers while both heavy job processes are busy with someone's maps (the grid has
  a queue and a worker of its own), and a waiting heavy job says how many jobs are ahead of it;
* a second heavy request of the same analyst replaces their first one still waiting: the first
  answers "replaced" without computing anything, the second computes, the others' jobs are
  untouched and do not count the replaced one as ahead of them;
* a note written as alice shows alice as its author to bob (list, CSV, JSON, findings sheet);
* bob's bare URL opens the run bob last opened, not the newer run alice has just made; alice's
  run records her as its author, the run picker says so, and its grids were made with it.

The heavy job processes are kept busy for exactly as long as a test wants: the probe worker's
explain functions wait while a hold file exists (``tests.shared.probe_worker``).
"""
from __future__ import annotations

import json
import shutil
import time
from collections import Counter
from pathlib import Path

import pytest

from app.files import artifacts

from app.state import ids
from app.state.context import AppContext
from app.jobs.panel import JobPanel
from app.shared.stack import SharedStack
from pipeline.store.run_store import RunStore
from tests.fixtures_runs import make_dataset

from .conftest import needs_redis, shared_config, write_users
from .dash_client import DashSession
from .probe_worker import read_records

USERS = {"alice": "alice-password-1", "bob": "bob-password-1", "carol": "carol-password-1",
         "dave": "dave-password-1"}
ROLES = {"alice": "maintainer", "bob": "analyst", "carol": "analyst", "dave": "analyst"}
ATTN_REQUEST = JobPanel.ids.request(ids.ATTN_JOB)
CONCEPTS_REQUEST = JobPanel.ids.request(ids.CONCEPTS_JOB)
GRID_REQUEST = JobPanel.ids.request(ids.IMAGES_JOB)
ATTN_LABEL = f"{JobPanel.ids.progress_label(ids.ATTN_JOB)}.children"


@pytest.fixture(scope="module")
def team(shared_run, tmp_path_factory):
    """The shared server on a copy of the session's run (no derived file yet: every grid is
    cold), three users, no default run (a bare URL falls back to the newest run)."""
    needs_redis()
    base = tmp_path_factory.mktemp("team")
    runs, cache = base / "runs", base / "cache"
    run_id = shared_run["run_id"]
    shutil.copytree(shared_run["runs"] / run_id, runs / run_id,
                    ignore=shutil.ignore_patterns("relevance", "concepts", ".locks", "notes.json*"))
    (cache / "embeddings").parent.mkdir(parents=True, exist_ok=True)
    users = write_users(base / "users", USERS, roles=ROLES)
    probe, hold = base / "probe.jsonl", base / "hold"
    cfg = shared_config(runs, cache, f"server.data_roots=[{base}]", "server.login_free_failures=1000")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FAXPLAINER_USERS_FILE", str(users))
        mp.delenv("FAXPLAINER_REDIS_URL", raising=False)
        mp.delenv("FAXPLAINER_DATA_ROOTS", raising=False)
        stack = SharedStack(cfg, run_id=None, state_dir=base / "state",
                            env={"FAXPLAINER_PROBE_FILE": str(probe), "FAXPLAINER_PROBE_HOLD": str(hold)},
                            worker_target="tests.shared.probe_worker:celery")
        try:
            stack.start()
            yield {"stack": stack, "run": run_id, "runs": runs, "base": base, "probe": probe,
                   "hold": hold}
        finally:
            hold.unlink(missing_ok=True)
            stack.stop()


def page(team, user: str) -> DashSession:
    return DashSession(team["stack"].url, (user, USERS[user])).open()


def probe(team, kind: str) -> list[dict]:
    return [r for r in read_records(team["probe"]) if r["kind"] == kind]


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"{what}: not within {timeout:.0f} s")


def cells_of(team) -> dict[int, list[int]]:
    records = RunStore(team["runs"] / team["run"]).read_records()
    out: dict[int, list[int]] = {}
    for i, r in enumerate(records):
        out.setdefault(int(r["cell"]), []).append(i)
    return out


def start_maps(s: DashSession, run: str, cell: int, images: list[int]):
    """Ask for the maps of ``images`` (render callback, then start its job): (body, handles)."""
    out = s.call("attention-content-div.children",
                 {"shell-selection-store.data": {"ids": images, "from": "graph"},
                  "shell-run-store.data": run, "shell-cell-store.data": cell},
                 ["shell-selection-store.data"])
    request = out[ATTN_REQUEST]["data"]
    assert request and request["indices"] == images, out
    body, handles = s.start_background("attention-content-div.children",
                                       {f"{ATTN_REQUEST}.data": request}, [f"{ATTN_REQUEST}.data"])
    assert handles is not None
    return body, handles


def start_concepts(s: DashSession, run: str, cell: int):
    out = s.call("concepts-content-div.children", {"shell-view-store.data": "concepts",
                                                    "shell-cell-store.data": cell,
                                                    "shell-run-store.data": run},
                 ["shell-view-store.data"])
    request = out[CONCEPTS_REQUEST]["data"]
    assert request, out
    return s.start_background("concepts-content-div.children", {f"{CONCEPTS_REQUEST}.data": request},
                              [f"{CONCEPTS_REQUEST}.data"])


def first_label(s: DashSession, started, label_key: str = ATTN_LABEL) -> str:
    """Poll a waiting job until its progress line says something; return that line."""
    body, handles = started
    result = s.poll_background(body, handles, poll=0.2, timeout=60,
                               on_poll=lambda r: any(p.get(label_key) for p in r.progress))
    assert result.response is None, "the job answered; it was meant to be waiting"
    return next(p[label_key] for p in result.progress if p.get(label_key))


def busy_heavy_workers(team, cell: int, images: list[int]) -> list:
    """Hold the heavy jobs, start two maps jobs (bob's and dave's: one per heavy process) and wait
    until both run; returns [(page, job), ...]."""
    team["hold"].write_text("held")
    before = len(probe(team, "maps_started"))
    jobs = []
    for user, i in zip(("bob", "dave"), images[:2]):
        s = page(team, user)
        jobs.append((s, start_maps(s, team["run"], cell, [i])))
    started = wait_for(lambda: (r := probe(team, "maps_started")[before:]) and len(r) >= 2 and r,
                       180, "two heavy jobs running")
    assert len({r["pid"] for r in started}) == 2, started  # both processes of the views worker
    return jobs


def test_a_cell_click_answers_while_both_heavy_workers_are_busy(team):
    cells = cells_of(team)
    (busy_cell, busy_images), (other_cell, _), *_ = sorted(cells.items(), key=lambda c: -len(c[1]))
    carol, alice = page(team, "carol"), page(team, "alice")
    busy = busy_heavy_workers(team, busy_cell, busy_images)
    try:
        # a third heavy job waits: nothing is free
        carols = start_concepts(carol, team["run"], busy_cell)
        assert first_label(carol, carols, f"{JobPanel.ids.progress_label(ids.CONCEPTS_JOB)}.children") \
            == "queued: yours is next (every job worker is busy)"
        # alice opens a cell nobody has opened: its grid is made now, by the grids worker
        t0 = time.perf_counter()
        out = alice.call("images-grid-graph.figure",
                         {"shell-cell-store.data": other_cell, "shell-run-store.data": team["run"]},
                         ["shell-cell-store.data"])
        request = out[GRID_REQUEST]["data"]
        assert request and request["cell"] == other_cell, "the grid was meant to be cold"
        grid = alice.call_background("images-grid-graph.figure", {f"{GRID_REQUEST}.data": request},
                                     [f"{GRID_REQUEST}.data"], timeout=60)
        seconds = time.perf_counter() - t0
        figure = json.dumps(grid.response["images-grid-graph"]["figure"])
        assert f"/files/sprite/{team['run']}/" in figure
        shown = {int(c) for trace in json.loads(figure)["data"] for c in trace.get("customdata") or []}
        assert shown == set(cells[other_cell])
        # ...while the heavy jobs were still held: none of their maps was written
        assert not {r["index"] for r in probe(team, "maps")} & set(busy_images[:2])
        assert len(probe(team, "maps_started")) >= 2 and team["hold"].exists()
        # a heavy job of alice's waits behind carol's, and says so
        alices = start_maps(alice, team["run"], busy_cell, [busy_images[2]])
        assert first_label(alice, alices) == "queued: 1 job ahead of yours"
        print(f"\ncold cell click ({len(cells[other_cell])} images) with both heavy processes busy: "
              f"{seconds:.2f} s")
    finally:
        team["hold"].unlink(missing_ok=True)
    for s, job in busy + [(alice, alices)]:
        result = s.poll_background(*job, timeout=240)
        assert "fx-error" not in json.dumps(result.response)
    result = carol.poll_background(*carols, timeout=240)
    assert '"data-concept": "0"' in json.dumps(result.response["concepts-content-div"])


def test_a_newer_heavy_request_of_the_same_analyst_replaces_the_older_waiting_one(team):
    cells = cells_of(team)
    cell, images = max(cells.items(), key=lambda c: len(c[1]))
    computed = {r["index"] for r in probe(team, "maps")}
    fresh = [i for i in images if i not in computed]
    assert len(fresh) >= 5, "the run's largest cell needs five images without maps"
    alice_tab1, alice_tab2, carol = (page(team, u) for u in ("alice", "alice", "carol"))
    busy = busy_heavy_workers(team, cell, fresh[:2])
    try:
        first = start_maps(alice_tab1, team["run"], cell, [fresh[2]])
        assert first_label(alice_tab1, first) == "queued: yours is next (every job worker is busy)"
        second = start_maps(alice_tab2, team["run"], cell, [fresh[3]])  # another tab, same analyst
        assert first_label(alice_tab2, second) == "queued: yours is next (every job worker is busy)"
        carols = start_maps(carol, team["run"], cell, [fresh[4]])
        assert first_label(carol, carols) == "queued: 1 job ahead of yours"  # not 2: one is replaced
    finally:
        team["hold"].unlink(missing_ok=True)
    replaced = alice_tab1.poll_background(*first, timeout=240).response
    message = json.dumps(replaced[JobPanel.ids.message(ids.ATTN_JOB)]["children"])
    assert "Replaced by your newer request" in message, replaced
    newer = alice_tab2.poll_background(*second, timeout=240).response
    assert f'"data-index": "{fresh[3]}"' in json.dumps(newer["attention-content-div"])
    theirs = carol.poll_background(*carols, timeout=240).response
    assert f'"data-index": "{fresh[4]}"' in json.dumps(theirs["attention-content-div"])
    for s, job in busy:
        assert "fx-error" not in json.dumps(s.poll_background(*job, timeout=240).response)
    # the replaced request computed nothing: its image was never explained
    assert all(fresh[2] not in r["what"] for r in probe(team, "maps_started"))
    written = Counter(r["index"] for r in probe(team, "maps"))
    assert fresh[2] not in written and written[fresh[3]] == 1 and written[fresh[4]] == 1


def test_a_note_written_as_alice_shows_alice_as_its_author_to_bob(team):
    run, cell = team["run"], next(iter(cells_of(team)))
    alice, bob = page(team, "alice"), page(team, "bob")
    out = alice.call("notes-version-store.data",
                     {"notes-add-cell-button.n_clicks": 1, "shell-run-store.data": run,
                      "shell-cell-store.data": cell, "notes-text-textarea.value": "grass texture fools it",
                      "notes-tag-input.value": "grass", "notes-version-store.data": 0},
                     ["notes-add-cell-button.n_clicks"])
    assert "Note saved" in json.dumps(out)
    listed = json.dumps(bob.call("notes-list-div.children", {"shell-run-store.data": run,
                                                             "notes-version-store.data": 1},
                                 ["shell-run-store.data"]), ensure_ascii=False)
    assert "grass texture fools it" in listed and "· by alice" in listed
    assert '"children": "delete"' not in listed  # bob, an analyst, may not delete alice's note
    csv_rows = bob.get(f"/files/notes/{run}.csv").body.decode().splitlines()
    header = csv_rows[0].split(",")
    assert csv_rows[1:] and all(row.split(",")[header.index("author")] == "alice" for row in csv_rows[1:])
    notes = json.loads(bob.get(f"/files/notes/{run}.json").body)["notes"]
    assert [n["author"] for n in notes] == ["alice"]
    assert "· by alice" in bob.get(f"/files/notes/{run}.html").body.decode()


def _route_bare(s: DashSession, search: str = "") -> str | None:
    out = s.call("shell-run-store.data", {"shell-url-location.search": search},
                 ["shell-url-location.search"])
    return (out.get("shell-run-store") or {}).get("data")


def test_bobs_bare_url_is_not_moved_by_alices_new_run(team):
    first = team["run"]
    bob = page(team, "bob")
    assert _route_bare(bob, f"?run={first}") == first  # bob opens the run by its link
    data = make_dataset(team["base"] / "alices-data", seed=5, n_per_folder=6)
    alice = page(team, "alice")
    result = alice.call_background("shell-newrun-message-div.children",
                                   {"shell-newrun-start-button.n_clicks": 1,
                                    "shell-newrun-path-input.value": str(data)},
                                   ["shell-newrun-start-button.n_clicks"], timeout=600)
    message = json.dumps(result.response["shell-newrun-message-div"]["children"])
    assert "is ready" in message, message
    newer = message.split("Run ")[1].split(" is ready")[0]
    assert newer != first
    assert RunStore(team["runs"] / newer).read_meta()["started_by"] == "alice"
    ctx = AppContext(team["stack"].cfg)  # its grids were made with it: a cell click reads a file
    view = ctx.run(newer)
    assert view.cell_ids() and all(artifacts.read_grid(ctx.app_cache(view), c) for c in view.cell_ids())
    # the newest run is alice's: a user who never opened a run gets it...
    assert _route_bare(page(team, "carol")) == newer
    # ...but bob's bare URL still opens the run bob last opened
    bob_again = page(team, "bob")
    assert _route_bare(bob_again) == first
    picker = json.dumps(bob_again.get("/_dash-layout").json(), ensure_ascii=False)
    assert f"{newer} · 48 images · tiny" in picker and "· by alice" in picker
    # and once bob opens alice's run, that becomes his bare URL's run
    assert _route_bare(bob_again, f"?run={newer}") == newer
    assert _route_bare(page(team, "bob")) == newer
