"""Access control of the shared server: HTTP Basic authentication on every route.

In shared mode nothing of the app is served without credentials: pages, Dash's own routes
(``/_dash-layout``, ``/_dash-update-component``, component bundles), ``/assets/`` and the picture
routes under ``/files/``. One ``before_request`` hook, placed first, checks every request with
`Flask-HTTPAuth <https://flask-httpauth.readthedocs.io>`_; passwords are checked against werkzeug
password hashes (scrypt).

The users file (``$FAXPLAINER_USERS_FILE``, else ``server.users_file``, else
``~/.config/faxplainer/users``) holds one ``name:hash`` line per user, ``#`` comments allowed::

    alice:scrypt:32768:8:1$mGq0...$5c1e...

Write it with ``python -m app.auth add-user NAME`` (asks for the password, or reads
``$FAXPLAINER_PASSWORD`` in scripts); ``remove-user NAME`` and ``list`` manage it. It is re-read
when it changes, so adding a user needs no restart. It must not live in the repository (a file
git would track is refused). Basic authentication sends the password with every request: beyond
loopback, serve through a TLS reverse proxy.

A scrypt check costs about 0.2 s of CPU, far too much for every polling request, so a process
remembers, for a few minutes, the salted digests of credentials it has already accepted.
"""
from __future__ import annotations

import argparse
import getpass
import hashlib
import hmac
import os
import re
import secrets
import subprocess
import sys
import threading
import time
from pathlib import Path

from pipeline.config import REPO_ROOT, Config, load_config, resolve_path
from pipeline.store import atomic_write_bytes

USER_NAME = re.compile(r"^[A-Za-z0-9_.@+-]{1,64}$")
HASH_METHODS = ("scrypt:", "pbkdf2:")
MIN_PASSWORD_LENGTH = 8
ACCEPTED_TTL_S = 300
ACCEPTED_MAX = 1024
REALM = "FaXplainer"


class AuthConfigError(RuntimeError):
    """No usable users file: shared mode refuses to start."""


def users_file(cfg: Config) -> Path:
    """Where the users file is: ``$FAXPLAINER_USERS_FILE``, ``server.users_file``, or the default."""
    env = os.environ.get("FAXPLAINER_USERS_FILE")
    if env:
        return resolve_path(env)
    if cfg.server.users_file:
        return resolve_path(cfg.server.users_file)
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "faxplainer" / "users"


def parse_users(text: str, where: str = "users file") -> dict[str, str]:
    """``{name: hash}`` from the lines of a users file.

    Raises
    ------
    AuthConfigError
        A line is not ``name:hash`` with a werkzeug scrypt/pbkdf2 hash (e.g. a plain password).
    """
    users: dict[str, str] = {}
    for n, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, hashed = line.partition(":")
        if not sep or not USER_NAME.match(name) or not hashed.startswith(HASH_METHODS):
            raise AuthConfigError(f"{where} line {n}: expected 'name:hash' with a password hash made by "
                                  f"`python -m app.auth add-user NAME` (plain passwords are refused)")
        users[name] = hashed
    return users


def _tracked_by_git(path: Path) -> bool:
    """True when ``path`` lies in the repository and git would not ignore it."""
    try:
        path.resolve().relative_to(REPO_ROOT.resolve())
    except ValueError:
        return False
    if not (REPO_ROOT / ".git").exists():
        return False
    try:
        ignored = subprocess.run(["git", "check-ignore", "-q", str(path)], cwd=REPO_ROOT,
                                 capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False
    return not ignored


class UserList:
    """The users of a users file; re-read when the file changes; checks credentials.

    Parameters
    ----------
    path : the users file.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._users: dict[str, str] = {}
        self._accepted: dict[bytes, float] = {}  # salted digest of accepted credentials -> expiry
        self._salt = secrets.token_bytes(16)  # per process: the digests mean nothing elsewhere
        self.reload()

    def reload(self) -> dict[str, str]:
        """Read the file again if it changed; returns the users.

        Raises
        ------
        AuthConfigError
            The file is missing, in the repository, malformed, or lists nobody.
        """
        try:
            st = self.path.stat()
        except OSError as e:
            raise AuthConfigError(f"users file {self.path} cannot be read ({e.strerror or e}); create "
                                  f"it with `python -m app.auth add-user NAME --users-file {self.path}`"
                                  ) from e
        stamp = (st.st_mtime_ns, st.st_size)
        with self._lock:
            if stamp == self._stamp:
                return self._users
        if _tracked_by_git(self.path):
            raise AuthConfigError(f"users file {self.path} is inside the repository and not ignored by "
                                  f"git; keep secrets outside the repository")
        users = parse_users(self.path.read_text(encoding="utf-8"), str(self.path))
        if not users:
            raise AuthConfigError(f"users file {self.path} lists no user; add one with "
                                  f"`python -m app.auth add-user NAME --users-file {self.path}`")
        with self._lock:
            self._users, self._stamp, self._accepted = users, stamp, {}
        return users

    def verify(self, name: str | None, password: str | None) -> str | None:
        """``name`` when the credentials are right, else None."""
        if not name or password is None:
            return None
        try:
            users = self.reload()
        except AuthConfigError:
            return None  # a broken file shuts everybody out rather than letting anybody in
        hashed = users.get(name)
        if hashed is None:
            return None
        digest = hmac.new(self._salt, f"{name}\0{password}\0{hashed}".encode(), hashlib.sha256).digest()
        now = time.monotonic()
        with self._lock:
            if self._accepted.get(digest, 0.0) > now:
                return name
        from werkzeug.security import check_password_hash

        if not check_password_hash(hashed, password):
            return None
        with self._lock:
            if len(self._accepted) >= ACCEPTED_MAX:
                self._accepted = {k: t for k, t in self._accepted.items() if t > now}
                if len(self._accepted) >= ACCEPTED_MAX:
                    self._accepted.clear()
            self._accepted[digest] = now + ACCEPTED_TTL_S
        return name


def require_login(server, cfg: Config) -> UserList:
    """Make every route of the Flask ``server`` answer 401 without valid credentials.

    Idempotent. Returns the :class:`UserList` in use.

    Raises
    ------
    AuthConfigError
        No usable users file (shared mode must not start without one).
    """
    existing = server.extensions.get("faxplainer_auth")
    if existing is not None:
        return existing
    from flask_httpauth import HTTPBasicAuth

    users = UserList(users_file(cfg))
    basic = HTTPBasicAuth(realm=REALM)
    basic.verify_password(users.verify)

    @basic.error_handler
    def _refused(status):
        return ("credentials required" if status == 401 else "forbidden"), status

    allowed = basic.login_required(lambda: None)

    def _check_credentials():
        return allowed()  # None lets the request through; a 401 response stops it

    # First in line: before the app's own hooks, so that not even a 404 leaks without credentials.
    server.before_request_funcs.setdefault(None, []).insert(0, _check_credentials)
    server.extensions["faxplainer_auth"] = users
    return users


# -- command line ----------------------------------------------------------------------------------
def _read_users(path: Path) -> dict[str, str]:
    return parse_users(path.read_text(encoding="utf-8"), str(path)) if path.exists() else {}


def _write_users(path: Path, users: dict[str, str]) -> None:
    body = "# FaXplainer users: name:password-hash (python -m app.auth add-user NAME)\n" + \
        "".join(f"{n}:{h}\n" for n, h in sorted(users.items()))
    atomic_write_bytes(path, body.encode("utf-8"))  # created 0600 by mkstemp
    os.chmod(path, 0o600)


def _new_password(name: str) -> str:
    password = os.environ.get("FAXPLAINER_PASSWORD")
    if password is None:
        password = getpass.getpass(f"password for {name}: ")
        if getpass.getpass("again: ") != password:
            raise SystemExit("the passwords differ; nothing changed")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise SystemExit(f"the password must have at least {MIN_PASSWORD_LENGTH} characters")
    return password


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app.auth", description="shared-server users")
    parser.add_argument("--config", default=None, help="YAML config (for server.users_file)")
    parser.add_argument("--users-file", default=None, help="users file (default: see the config)")
    sub = parser.add_subparsers(dest="command", required=True)
    add = sub.add_parser("add-user", help="add a user or change a password ($FAXPLAINER_PASSWORD "
                                          "or asked)")
    add.add_argument("name")
    rm = sub.add_parser("remove-user", help="remove a user")
    rm.add_argument("name")
    sub.add_parser("list", help="list the users")
    args = parser.parse_args(argv)

    path = resolve_path(args.users_file) if args.users_file else users_file(load_config(args.config))
    if _tracked_by_git(path):
        parser.error(f"{path} is inside the repository and not ignored by git; keep secrets outside")
    users = _read_users(path)
    if args.command == "list":
        print("\n".join(sorted(users)) if users else f"no users in {path}")
        return 0
    if not USER_NAME.match(args.name):
        parser.error("a user name has 1-64 letters, digits or _ . @ + -")
    if args.command == "add-user":
        from werkzeug.security import generate_password_hash

        existed = args.name in users
        users[args.name] = generate_password_hash(_new_password(args.name))
        _write_users(path, users)
        print(f"{'changed the password of' if existed else 'added'} {args.name} in {path}",
              file=sys.stderr)
        return 0
    if args.name not in users:
        print(f"no user {args.name} in {path}", file=sys.stderr)
        return 1
    del users[args.name]
    _write_users(path, users)
    print(f"removed {args.name} from {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
