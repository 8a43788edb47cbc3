"""Access control without Redis: the users file, the ``python -m app.access.auth`` command, and the Flask
hook that guards every route of a shared-mode app (the live server is checked in test_stack)."""
from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

import pytest

from app.access import auth
from app.access.auth import AuthConfigError, UserList, parse_users
from pipeline.config import REPO_ROOT, from_dict

from .conftest import write_users


def _cli(tmp_path, *args, password=None):
    env = {k: v for k, v in os.environ.items() if k != "FAXPLAINER_PASSWORD"}
    if password is not None:
        env["FAXPLAINER_PASSWORD"] = password
    return subprocess.run([sys.executable, "-m", "app.access.auth", "--users-file", str(tmp_path / "users"),
                           *args], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60)


def test_add_user_writes_a_private_file_of_password_hashes(tmp_path):
    r = _cli(tmp_path, "add-user", "bob", password="correct horse battery")
    assert r.returncode == 0, r.stderr
    path = tmp_path / "users"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_text()
    assert "correct horse" not in text
    users = parse_users(text)
    assert set(users) == {"bob"} and users["bob"].hash.startswith("scrypt:")  # werkzeug's default
    assert users["bob"].role == "analyst"  # the default role
    assert UserList(path).verify("bob", "correct horse battery") == "bob"
    assert UserList(path).verify("bob", "correct horse") is None

    assert _cli(tmp_path, "add-user", "carol", password="another secret").returncode == 0
    assert _cli(tmp_path, "list").stdout.split() == ["bob", "analyst", "carol", "analyst"]
    assert _cli(tmp_path, "add-user", "dave", password="short").returncode != 0  # < 8 characters
    assert _cli(tmp_path, "add-user", "bad name!", password="long enough").returncode != 0
    assert _cli(tmp_path, "remove-user", "bob").returncode == 0
    assert set(parse_users(path.read_text())) == {"carol"}
    assert _cli(tmp_path, "remove-user", "bob").returncode == 1


def test_plain_passwords_and_empty_files_are_refused(tmp_path):
    with pytest.raises(AuthConfigError, match="line 2.*plain passwords are refused"):
        parse_users("# users\nalice:hunter22\n")
    (tmp_path / "empty").write_text("# nobody yet\n")
    with pytest.raises(AuthConfigError, match="lists no user"):
        UserList(tmp_path / "empty")
    with pytest.raises(AuthConfigError, match="add-user"):
        UserList(tmp_path / "missing")


def test_a_changed_users_file_applies_without_restart(tmp_path):
    path = write_users(tmp_path / "users", {"alice": "first-password"})
    users = UserList(path)
    assert users.verify("alice", "first-password") == "alice"  # now remembered as accepted
    write_users(path, {"alice": "second-password", "bob": "bobs-password"})
    os.utime(path, ns=(1, 1))  # a different stamp even within the same clock tick
    assert users.verify("alice", "first-password") is None  # the remembered answer is dropped
    assert users.verify("alice", "second-password") == "alice"
    assert users.verify("bob", "bobs-password") == "bob"


def _shared_cfg(tmp_path, users_path, **server):
    """Shared mode with an unreachable Redis (the login counters fall back to memory)."""
    return from_dict({"runs_dir": str(tmp_path / "runs"), "cache_dir": str(tmp_path / "cache"),
                      "server": {"mode": "shared", "users_file": str(users_path),
                                 "redis_url": "redis://127.0.0.1:1/0", **server}})


def test_shared_app_guards_every_route(tmp_path, make_fake_run, monkeypatch):
    """No Redis here: every request is refused before Dash or Celery is asked anything."""
    monkeypatch.delenv("FAXPLAINER_USERS_FILE", raising=False)
    from app.main import create_app

    make_fake_run(n_images=12, n_cells=2)
    users = write_users(tmp_path / "users", {"alice": "alice-password"})
    # every route is tried with a wrong password: the lockout (tested below) must not start
    server = create_app(_shared_cfg(tmp_path, users, login_free_failures=100), "fake-run").server
    client = server.test_client()
    import base64

    wrong = {"Authorization": "Basic " + base64.b64encode(b"alice:nope-nope").decode()}
    routes = ["/", "/_dash-layout", "/_dash-dependencies", "/_dash-component-suites/dash/dcc/x.js",
              "/assets/style.css", "/files/thumb/fake-run/0.jpg", "/files/notes/fake-run.csv",
              "/files//etc/passwd", "/anything"]
    for path in routes:
        for headers in ({}, wrong):
            r = client.get(path, headers=headers)
            assert r.status_code == 401, (path, r.status_code)
            assert r.headers["WWW-Authenticate"].startswith("Basic")
    r = client.post("/_dash-update-component", data=json.dumps({"output": "x.y"}),
                    content_type="application/json")
    assert r.status_code == 401
    # with credentials the picture route answers (no Redis needed for a file)
    good = {"Authorization": "Basic " + base64.b64encode(b"alice:alice-password").decode()}
    r = client.get("/files/thumb/fake-run/0.jpg", headers=good)
    assert r.status_code == 200 and r.mimetype == "image/jpeg"


def test_shared_mode_refuses_to_start_without_users(tmp_path, monkeypatch):
    monkeypatch.delenv("FAXPLAINER_USERS_FILE", raising=False)
    from app.main import create_app

    with pytest.raises(AuthConfigError, match="add-user"):
        create_app(_shared_cfg(tmp_path, tmp_path / "no-users"))


def test_users_file_location_comes_from_the_environment(tmp_path, monkeypatch):
    cfg = _shared_cfg(tmp_path, tmp_path / "from-config")
    monkeypatch.setenv("FAXPLAINER_USERS_FILE", str(tmp_path / "from-env"))
    assert auth.users_file(cfg) == tmp_path / "from-env"
    monkeypatch.delenv("FAXPLAINER_USERS_FILE")
    assert auth.users_file(cfg) == tmp_path / "from-config"


@pytest.mark.skipif(not (REPO_ROOT / ".git").exists(), reason="needs the git checkout")
def test_a_users_file_git_would_track_is_refused(tmp_path):
    inside = REPO_ROOT / "tests" / "shared" / f"users-{os.getpid()}.txt"
    try:
        write_users(inside, {"alice": "alice-password"})
        with pytest.raises(AuthConfigError, match="inside the repository"):
            UserList(inside)
    finally:
        inside.unlink(missing_ok=True)


# -- roles ------------------------------------------------------------------------------------------
def test_roles_live_in_the_users_file_and_old_lines_are_analysts(tmp_path):
    path = tmp_path / "users"
    write_users(path, {"old": "old-password"})  # a line written before roles existed: name:hash
    assert parse_users(path.read_text())["old"].role == "analyst"
    assert UserList(path).verify("old", "old-password") == "old"  # still logs in
    assert _cli(tmp_path, "add-user", "mia", "--role", "maintainer", password="mia-password").returncode == 0
    assert _cli(tmp_path, "add-user", "ann", password="ann-password").returncode == 0
    assert _cli(tmp_path, "list").stdout.split() == ["ann", "analyst", "mia", "maintainer", "old", "analyst"]
    assert _cli(tmp_path, "set-role", "ann", "maintainer").returncode == 0
    assert _cli(tmp_path, "add-user", "ann", password="new-ann-password").returncode == 0  # keeps role
    assert _cli(tmp_path, "set-role", "mia", "analyst").returncode == 0
    assert _cli(tmp_path, "set-role", "nobody", "analyst").returncode == 1
    assert _cli(tmp_path, "set-role", "ann", "admin").returncode != 0  # not a role
    users = UserList(path)
    assert (users.role("ann"), users.role("mia"), users.role("old"), users.role("x")) == \
        ("maintainer", "analyst", "analyst", None)
    assert users.verify("old", "old-password") == "old"  # the rewrite kept the old user's hash
    assert "old:analyst:pbkdf2:" in path.read_text()
    with pytest.raises(AuthConfigError, match="line 1: unknown role 'admin'"):
        parse_users("bob:admin:" + parse_users(path.read_text())["ann"].hash)


def _basic_header(user, password):
    import base64

    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def _roles_app(tmp_path, make_fake_run, monkeypatch, **server):
    monkeypatch.delenv("FAXPLAINER_USERS_FILE", raising=False)
    monkeypatch.delenv("FAXPLAINER_DATA_ROOTS", raising=False)
    from app.main import create_app

    make_fake_run(n_images=12, n_cells=2)
    root = tmp_path / "lab-data"
    for label in ("0_real", "1_fake"):
        (root / "faces" / label).mkdir(parents=True)
    users = write_users(tmp_path / "users", {"mia": "mia-password", "ann": "ann-password"},
                        roles={"mia": "maintainer"})
    cfg = _shared_cfg(tmp_path, users, data_roots=[str(root)], **server)
    return create_app(cfg, "fake-run").server.test_client(), root


def test_an_analyst_is_refused_the_new_run_job_and_sees_why(tmp_path, make_fake_run, monkeypatch):
    """No Redis: the refusal comes before the job would be queued."""
    client, root = _roles_app(tmp_path, make_fake_run, monkeypatch)
    start = {"output": "..shell-url-location.search@0123...shell-newrun-message-div.children...."
                       "shell-run-dropdown.options..", "outputs": [], "inputs": [], "state": [],
             "changedPropIds": ["shell-newrun-start-button.n_clicks"]}
    r = client.post("/_dash-update-component", data=json.dumps(start), content_type="application/json",
                    headers=_basic_header("ann", "ann-password"))
    assert r.status_code == 403
    assert "maintainer role; ann is an analyst" in r.get_data(as_text=True)
    assert "set-role ann maintainer" in r.get_data(as_text=True)
    # the page says it too, and offers no form
    layout = client.get("/_dash-layout", headers=_basic_header("ann", "ann-password")).get_json()
    assert "ann is an analyst" in json.dumps(_component(layout, "shell-newrun-collapse"))
    assert _component(layout, "shell-newrun-start-button") is None
    # a maintainer's page offers the data sets under the roots in a list, not a free path
    layout = client.get("/_dash-layout", headers=_basic_header("mia", "mia-password")).get_json()
    picker = _component(layout, "shell-newrun-path-input")
    assert picker["type"] == "Dropdown" and _component(layout, "shell-newrun-start-button")
    assert [o["value"] for o in picker["props"]["options"]] == ["", str(root), str(root / "faces")]
    assert str(root) in json.dumps(_component(layout, "shell-newrun-collapse"))  # the roots named


def _component(node, cid):
    """The component with id ``cid`` in a ``/_dash-layout`` tree, or None."""
    if isinstance(node, list):
        return next((c for c in (_component(n, cid) for n in node) if c is not None), None)
    if not isinstance(node, dict):
        return None
    props = node.get("props") or {}
    if props.get("id") == cid:
        return node
    return _component(props.get("children"), cid)


# -- failed-login throttling -----------------------------------------------------------------------
def test_wrong_passwords_lock_out_one_name_at_one_address(tmp_path, make_fake_run, monkeypatch):
    """Memory counters (no Redis here); the real stack with Redis is timed in test_access."""
    import time

    client, _ = _roles_app(tmp_path, make_fake_run, monkeypatch, login_free_failures=3,
                           login_lock_s=0.5, login_max_lock_s=4)
    wrong, right = _basic_header("ann", "wrong-password"), _basic_header("ann", "ann-password")
    spoofed = {**wrong, "X-Forwarded-For": "198.51.100.7"}  # ignored: no trusted proxy configured
    assert [client.get("/_dash-dependencies", headers=h).status_code
            for h in (wrong, spoofed, wrong)] == [401, 401, 401]
    locked = client.get("/_dash-dependencies", headers=right)  # the right password is refused too
    assert locked.status_code == 429 and int(locked.headers["Retry-After"]) >= 1
    assert "Too many wrong passwords" in locked.get_data(as_text=True)
    assert client.get("/_dash-dependencies", headers=spoofed).status_code == 429
    # another user at the same address, and the same user at another address, are not slowed
    assert client.get("/_dash-dependencies", headers=_basic_header("mia", "mia-password")).status_code == 200
    assert client.get("/_dash-dependencies", headers=right,
                      environ_base={"REMOTE_ADDR": "192.0.2.44"}).status_code == 200
    time.sleep(0.6)  # the first lockout ends...
    assert client.get("/_dash-dependencies", headers=right).status_code == 200
    # ...and a right password clears the count: three typos are free again
    assert [client.get("/_dash-dependencies", headers=wrong).status_code for _ in range(3)] == [401] * 3
    assert client.get("/_dash-dependencies", headers=wrong).status_code == 429


def test_forwarded_for_names_the_client_only_behind_a_trusted_proxy(tmp_path, make_fake_run,
                                                                   monkeypatch):
    client, _ = _roles_app(tmp_path, make_fake_run, monkeypatch, login_free_failures=2,
                           login_lock_s=30, trusted_proxies=1)
    wrong = _basic_header("ann", "wrong-password")
    via = lambda client_ip: {"X-Forwarded-For": f"10.9.9.9, {client_ip}"}  # noqa: E731 (spoofed, proxy's)
    for _ in range(2):
        assert client.get("/", headers={**wrong, **via("203.0.113.5")}).status_code == 401
    assert client.get("/", headers={**wrong, **via("203.0.113.5")}).status_code == 429
    # the proxy's own entry counts, not what the client wrote before it
    right = _basic_header("ann", "ann-password")
    proxied = {**right, "X-Forwarded-For": "203.0.113.5, 203.0.113.6"}
    assert client.get("/", headers=proxied).status_code == 200
    assert client.get("/", headers={**right, **via("203.0.113.5")}).status_code == 429


def test_parallel_requests_with_the_same_password_are_one_login(tmp_path, make_fake_run, monkeypatch):
    """A page's first requests (or a team sharing an account) arrive at once with the same
    credentials: one password check, nobody refused, even with a single free failure."""
    import threading

    import werkzeug.security

    client, _ = _roles_app(tmp_path, make_fake_run, monkeypatch, login_free_failures=1, login_lock_s=60)
    checks = []
    real_check = werkzeug.security.check_password_hash

    def slow_counted_check(hashed, password):
        checks.append(password)
        threading.Event().wait(0.3)  # a slow hash: the others arrive while it runs
        return real_check(hashed, password)

    monkeypatch.setattr(werkzeug.security, "check_password_hash", slow_counted_check)
    barrier, statuses = threading.Barrier(12), []

    def page_request():
        barrier.wait()
        statuses.append(client.get("/_dash-dependencies", headers=_basic_header("ann", "ann-password"))
                        .status_code)

    threads = [threading.Thread(target=page_request) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert statuses == [200] * 12 and checks == ["ann-password"]
