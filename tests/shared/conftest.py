"""Fixtures of the shared-server tests: a users file, a small real run, and the real stack
(redis-server, Celery workers, gunicorn) on free loopback ports.

Tests that need Redis are skipped, with the reason, when ``redis-server`` is not installed
(``apt-get install redis-server``; CI installs it). Every process a fixture starts runs in its own
process group and is killed with it at teardown.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from pipeline.config import REPO_ROOT, load_config
from tests.fixtures_runs import make_dataset, run_pipeline_cli

USER, PASSWORD = "alice", "alice-password-1"
OTHER_USER, OTHER_PASSWORD = "bob", "bob-password-1"  # a second analyst (one waiting job per analyst)
NO_REDIS = "redis-server is not installed (apt-get install redis-server); the shared server needs it"


def needs_redis():
    if shutil.which("redis-server") is None:
        pytest.skip(NO_REDIS)


def write_users(path: Path, users: dict[str, str], roles: dict[str, str] | None = None) -> Path:
    """A users file with cheap pbkdf2 hashes (the scrypt default is tested in test_auth);
    ``roles`` gives some users a role field (the others get the old ``name:hash`` line)."""
    from werkzeug.security import generate_password_hash

    roles = roles or {}
    path.write_text("".join(
        f"{u}:{roles[u] + ':' if u in roles else ''}"
        f"{generate_password_hash(p, method='pbkdf2:sha256:1000')}\n" for u, p in users.items()))
    return path


@pytest.fixture(scope="session")
def users_file(tmp_path_factory) -> Path:
    """alice, a maintainer (the stack tests start runs as alice), and bob, an analyst."""
    return write_users(tmp_path_factory.mktemp("auth") / "users", {USER: PASSWORD, OTHER_USER: OTHER_PASSWORD},
                       roles={USER: "maintainer", OTHER_USER: "analyst"})


@pytest.fixture(scope="session")
def shared_run(tmp_path_factory) -> dict:
    """A real run (tiny encoder, 48 generated images, 4 cells) made once for the session."""
    base = tmp_path_factory.mktemp("shared-run")
    data = make_dataset(base / "data")
    runs, cache = base / "runs", base / "cache"
    run_id = run_pipeline_cli(data, runs, cache)
    return {"base": base, "data": data, "runs": runs, "cache": cache, "run_id": run_id}


def shared_config(runs: Path, cache: Path, *extra: str):
    """configs/test.yaml in shared mode on free ports, folders ``runs`` and ``cache``."""
    from app.shared.stack import free_port

    return load_config(REPO_ROOT / "configs" / "test.yaml", [
        f"runs_dir={runs}", f"cache_dir={cache}", "server.mode=shared", "server.host=127.0.0.1",
        f"server.port={free_port()}", f"server.redis_url=redis://127.0.0.1:{free_port()}/0",
        "server.web_workers=2", "server.job_workers=2", *extra])
