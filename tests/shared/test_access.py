"""Who may read what, and how fast passwords can be guessed, on the real shared server
(redis-server, Celery workers, gunicorn with two processes) on loopback:

* a new run on a folder outside the data roots, or through a link inside a root that points
  outside, is refused with a message naming the roots, and nothing is scanned (scans are counted
  inside the workers); a run on a data set under a root is scanned and finishes;
* an analyst asking for a new run gets 403 and a message; a maintainer's run starts;
* 20 wrong passwords from one address: free ones first, then lockouts that double up to the cap
  (timed), holding for the right password too, while another user at the same address and the
  attacked user at another address log in at once;
* the counters are shared by processes through Redis (three processes guessing at once get the
  free failures once, not three times).
"""
from __future__ import annotations

import base64
import http.client
import json
import multiprocessing as mp
import os
import re
import statistics
import threading
import time

import pytest

from app.shared.stack import SharedStack

from .conftest import needs_redis, shared_config, write_users
from .dash_client import DashError, DashSession
from .probe_worker import read_records
from tests.fixtures_runs import make_dataset

USERS = {"alice": "alice-password-1", "bob": "bob-password-1", "carol": "carol-password-1"}
ROLES = {"alice": "maintainer", "bob": "analyst"}  # carol: an old line without a role (analyst)
FREE, LOCK_S, MAX_LOCK_S = 5, 0.25, 1.0
ATTACKER, ELSEWHERE = "203.0.113.66", "198.51.100.23"  # client addresses, through the "proxy"


@pytest.fixture(scope="module")
def access(shared_run, tmp_path_factory):
    needs_redis()
    state = tmp_path_factory.mktemp("access")
    outside = make_dataset(tmp_path_factory.mktemp("outside") / "private", seed=3, n_per_folder=2)
    root = shared_run["base"]  # holds the session's data set
    os.symlink(outside, root / "link-out")
    users = write_users(state / "users", USERS, roles=ROLES)
    probe = state / "probe.jsonl"
    # the same run settings as shared_run's, so that the maintainer's run reuses it
    cfg = shared_config(shared_run["runs"], shared_run["cache"], "concepts.k=3", "cells.n_cells=4",
                        f"server.data_roots=[{root}]", "server.trusted_proxies=1",
                        f"server.login_free_failures={FREE}", f"server.login_lock_s={LOCK_S}",
                        f"server.login_max_lock_s={MAX_LOCK_S}", "server.login_window_s=120")
    with pytest.MonkeyPatch.context() as m:
        m.setenv("FAXPLAINER_USERS_FILE", str(users))
        m.delenv("FAXPLAINER_REDIS_URL", raising=False)
        m.delenv("FAXPLAINER_DATA_ROOTS", raising=False)
        stack = SharedStack(cfg, run_id=shared_run["run_id"], state_dir=state / "state",
                            env={"FAXPLAINER_PROBE_FILE": str(probe)},
                            worker_target="tests.shared.probe_worker:celery")
        try:
            stack.start()
            yield {"stack": stack, "root": root, "outside": outside, "probe": probe,
                   "data": shared_run["data"]}
        finally:
            stack.stop()
            (root / "link-out").unlink(missing_ok=True)


def _scans(access) -> list[dict]:
    return [r for r in read_records(access["probe"]) if r["kind"] == "scan"]


def _start_run(access, user: str, path: str):
    s = DashSession(access["stack"].url, (user, USERS[user])).open()
    return s.call_background("shell-newrun-message-div.children",
                             {"shell-newrun-start-button.n_clicks": 1, "shell-newrun-path-input.value": path},
                             ["shell-newrun-start-button.n_clicks"], timeout=400)


def _message(result) -> str:
    return json.dumps(result.response["shell-newrun-message-div"]["children"])


# -- data roots ---------------------------------------------------------------------------------------
def test_runs_outside_the_data_roots_are_refused_before_any_scan(access):
    root, outside = access["root"], access["outside"]
    runs_before = sorted(p.name for p in access["stack"].cfg.runs_path.iterdir())
    for path, words in [(str(outside), "is outside the data folders"),
                        (str(root / "link-out"), f"through a link to {outside}"),
                        (str(root / "link-out" / "gan"), "outside the data folders"),
                        ("/", "outside the data folders")]:
        message = _message(_start_run(access, "alice", path))
        assert words in message and "fx-error" in message, (path, message)
        assert f"the data folders of this server are {root}" in message, message
    assert _scans(access) == []  # the workers scanned nothing
    assert sorted(p.name for p in access["stack"].cfg.runs_path.iterdir()) == runs_before

    # the same job on a data set under the root scans it and finishes (the counter works)
    message = _message(_start_run(access, "alice", str(access["data"])))
    assert "is ready" in message, message
    assert [r["root"] for r in _scans(access)] == [str(access["data"].resolve())]


def test_the_picker_lists_the_data_sets_under_the_roots_only(access):
    s = DashSession(access["stack"].url, ("alice", USERS["alice"])).open()
    layout = s.get("/_dash-layout").json()
    text = json.dumps(layout)
    assert json.dumps(str(access["data"].resolve())) in text
    assert str(access["outside"]) not in text and "link-out" not in text


# -- roles ----------------------------------------------------------------------------------------------
def test_an_analyst_cannot_start_a_run_and_a_maintainer_can(access):
    for analyst in ("bob", "carol"):  # carol's line has no role: an analyst
        with pytest.raises(DashError) as refused:
            _start_run(access, analyst, str(access["data"]))
        assert refused.value.status == 403
        assert f"needs the maintainer role; {analyst} is an analyst" in str(refused.value)
    s = DashSession(access["stack"].url, ("bob", USERS["bob"])).open()
    assert "bob is an analyst" in json.dumps(s.get("/_dash-layout").json())  # the page says so
    assert "is ready" in _message(_start_run(access, "alice", str(access["data"])))


# -- failed-login throttling ----------------------------------------------------------------------------
def _get(url: str, user: str, password: str, address: str, path: str = "/_dash-dependencies"):
    """One request on a new connection (so gunicorn may hand it to any of its processes),
    as the trusted proxy would forward it from ``address``; returns (status, seconds)."""
    host, port = url.split("//")[1].split(":")
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    t0 = time.perf_counter()
    try:
        conn.request("GET", path, headers={"Authorization": f"Basic {token}",
                                           "X-Forwarded-For": address})
        r = conn.getresponse()
        r.read()
        return r.status, time.perf_counter() - t0
    finally:
        conn.close()


def _expected_lock(n: int) -> float:
    return 0.0 if n < FREE else min(MAX_LOCK_S, LOCK_S * 2 ** (n - FREE))


def test_wrong_passwords_are_throttled_while_other_logins_stay_fast(access):
    url = access["stack"].url
    baseline = [_get(url, "bob", USERS["bob"], ATTACKER) for _ in range(20)]
    assert {s for s, _ in baseline} == {200}

    others: dict[str, list] = {"bob": [], "carol": []}
    stop = threading.Event()

    def keep_logging_in(user, address):  # bob beside the attacker; carol herself from elsewhere
        while not stop.is_set():
            others[user].append(_get(url, user, USERS[user], address))
            time.sleep(0.05)

    threads = [threading.Thread(target=keep_logging_in, args=a)
               for a in (("bob", ATTACKER), ("carol", ELSEWHERE))]
    for t in threads:
        t.start()
    checked_at, refused, right_while_locked = [], [], None
    t_start = time.perf_counter()
    try:
        while len(checked_at) < 20 and time.perf_counter() - t_start < 120:
            status, seconds = _get(url, "carol", "a-wrong-guess", ATTACKER)
            if status == 401:  # the password was checked (and was wrong)
                checked_at.append(time.perf_counter())
                if len(checked_at) == 12 and right_while_locked is None:
                    # the right password inside a lockout is refused like any other
                    right_while_locked = _get(url, "carol", USERS["carol"], ATTACKER)[0]
            else:
                assert status == 429, status
                refused.append(seconds)
                time.sleep(0.01)
    finally:
        stop.set()
        for t in threads:
            t.join(60)
    total = time.perf_counter() - t_start
    gaps = [b - a for a, b in zip(checked_at, checked_at[1:])]  # wait before guess 2, 3, ...
    bob = [s for _, s in others["bob"]]
    print(f"\n20 wrong passwords in {total:.2f} s ({len(refused)} refused 429s, median "
          f"{1000 * statistics.median(refused):.1f} ms); wait before each checked guess (s): "
          + " ".join(f"{g:.2f}" for g in gaps)
          + f"\nbob beside the attacker: {len(bob)} logins, p50 {1000 * statistics.median(bob):.0f} ms,"
          f" max {1000 * max(bob):.0f} ms (before the attack: p50 "
          f"{1000 * statistics.median(s for _, s in baseline):.0f} ms); carol elsewhere: "
          f"{len(others['carol'])} logins; load average {os.getloadavg()[0]:.2f}")

    assert len(checked_at) == 20
    assert right_while_locked == 429
    # the free failures come at once; then each guess waits the lockout of the count before it
    for n, gap in enumerate(gaps, start=1):  # gaps[n-1]: after the n-th wrong password
        expected = _expected_lock(n)
        assert gap >= expected - 0.02, (n, gap, expected)  # refused until the lockout ends
        assert gap <= expected + 1.5, (n, gap, expected)  # and let in soon after (loaded machine)
    assert gaps[FREE - 1] < gaps[FREE] < gaps[FREE + 1]  # 0.25 s, 0.5 s, 1 s: it grows
    assert total >= sum(_expected_lock(n) for n in range(1, 20)) - 0.1
    # nobody else was refused or slowed to the attacker's pace
    for user in ("bob", "carol"):
        assert others[user] and {s for s, _ in others[user]} == {200}, (user, others[user][:5])
    assert statistics.median(bob) < 0.5  # not paced by the lockouts (>= 0.25 s each) either

    # logged with the address and the user name, one count for all web processes
    log = (access["stack"].logs / "web.log").read_text()
    lines = re.findall(r"faxplainer\.auth\[(\d+)\]: failed login for user 'carol' from "
                       rf"{re.escape(ATTACKER)} \((\d+) wrong", log)
    assert [int(n) for _, n in lines] == list(range(1, 21)), lines
    assert f"from {ATTACKER} (6 wrong password(s) in a row); locked out for 0.5 s" in log
    print(f"web processes that counted carol's wrong passwords: {sorted({p for p, _ in lines})}")


def _guess_in_process(url: str, key_address: str, n: int, out) -> None:
    from app.access.login_throttle import WRONG, LoginLocked, LoginThrottle, RedisStore, ThrottlePolicy
    import redis

    throttle = LoginThrottle(ThrottlePolicy(free_failures=FREE, lock_s=60, max_lock_s=60, window_s=60),
                             RedisStore(redis.Redis.from_url(url)))
    checked = 0
    for _ in range(n):
        try:
            throttle.attempt(key_address, "dave", lambda: (time.sleep(0.01), WRONG)[1])
            checked += 1
        except LoginLocked:
            pass
    out.put(checked)


def test_the_counters_are_shared_by_processes_through_redis(access):
    url = access["stack"].redis_url
    out = mp.get_context("spawn").Queue()
    procs = [mp.get_context("spawn").Process(target=_guess_in_process, args=(url, "192.0.2.200", 10, out))
             for _ in range(3)]
    for p in procs:
        p.start()
    counts = [out.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(60)
    assert sum(counts) == FREE, counts  # not FREE per process
