"""Access control without Redis: the users file, the ``python -m app.auth`` command, and the Flask
hook that guards every route of a shared-mode app (the live server is checked in test_stack)."""
from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

import pytest

from app import auth
from app.auth import AuthConfigError, UserList, parse_users
from pipeline.config import REPO_ROOT, from_dict

from .conftest import write_users


def _cli(tmp_path, *args, password=None):
    env = {k: v for k, v in os.environ.items() if k != "FAXPLAINER_PASSWORD"}
    if password is not None:
        env["FAXPLAINER_PASSWORD"] = password
    return subprocess.run([sys.executable, "-m", "app.auth", "--users-file", str(tmp_path / "users"),
                           *args], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60)


def test_add_user_writes_a_private_file_of_password_hashes(tmp_path):
    r = _cli(tmp_path, "add-user", "bob", password="correct horse battery")
    assert r.returncode == 0, r.stderr
    path = tmp_path / "users"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_text()
    assert "correct horse" not in text
    users = parse_users(text)
    assert set(users) == {"bob"} and users["bob"].startswith("scrypt:")  # werkzeug's default
    assert UserList(path).verify("bob", "correct horse battery") == "bob"
    assert UserList(path).verify("bob", "correct horse") is None

    assert _cli(tmp_path, "add-user", "carol", password="another secret").returncode == 0
    assert _cli(tmp_path, "list").stdout.split() == ["bob", "carol"]
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


def _shared_cfg(tmp_path, users_path):
    return from_dict({"runs_dir": str(tmp_path / "runs"), "cache_dir": str(tmp_path / "cache"),
                      "server": {"mode": "shared", "users_file": str(users_path),
                                 "redis_url": "redis://127.0.0.1:1/0"}})


def test_shared_app_guards_every_route(tmp_path, make_fake_run, monkeypatch):
    """No Redis here: every request is refused before Dash or Celery is asked anything."""
    monkeypatch.delenv("FAXPLAINER_USERS_FILE", raising=False)
    from app.main import create_app

    make_fake_run(n_images=12, n_cells=2)
    users = write_users(tmp_path / "users", {"alice": "alice-password"})
    server = create_app(_shared_cfg(tmp_path, users), "fake-run").server
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
