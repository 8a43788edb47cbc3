"""Access control of the shared server: HTTP Basic authentication on every route, roles, and
failed-login throttling.

In shared mode nothing of the app is served without credentials: pages, Dash's own routes
(``/_dash-layout``, ``/_dash-update-component``, component bundles), ``/assets/`` and the picture
routes under ``/files/``. One ``before_request`` hook, placed first, checks every request with
`Flask-HTTPAuth <https://flask-httpauth.readthedocs.io>`_; passwords are checked against werkzeug
password hashes (scrypt).

The users file (``$FAXPLAINER_USERS_FILE``, else ``server.users_file``, else
``~/.config/faxplainer/users``) holds one ``name:role:hash`` line per user, ``#`` comments
allowed; ``role`` is ``analyst`` or ``maintainer`` (:mod:`app.state.roles`), and a ``name:hash`` line
(written before roles existed) is an analyst::

    alice:maintainer:scrypt:32768:8:1$mGq0...$5c1e...
    bob:scrypt:32768:8:1$Jr3b...$90af...

Write it with ``python -m app.access.auth add-user NAME [--role maintainer]`` (asks for the password, or
reads ``$FAXPLAINER_PASSWORD`` in scripts); ``set-role NAME ROLE``, ``remove-user NAME`` and
``list`` manage it. It is re-read when it changes, so adding a user needs no restart. It must not
live in the repository (a file git would track is refused). Basic authentication sends the
password with every request: beyond loopback, serve through a TLS reverse proxy.

A scrypt check costs about 0.2 s of CPU, far too much for every polling request, so a process
remembers, for a few minutes, the salted digests of credentials it has already accepted. Wrong
passwords are counted per (client address, user name) across all web processes, and a pair with
too many is locked out for a while (:mod:`app.access.login_throttle`); the lockout is checked before
that memory, so that it holds for a right password too.
"""
from __future__ import annotations

import argparse
import getpass
import hashlib
import hmac
import logging
import math
import os
import re
import secrets
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import NamedTuple

from pipeline.config import REPO_ROOT, Config, load_config, resolve_path
from pipeline.store.run_store import atomic_write_bytes

from app.access.login_throttle import RIGHT, UNKNOWN, WRONG, LoginLocked, LoginThrottle, SingleFlight, \
    ThrottlePolicy, client_address, redis_store
from app.state.roles import DEFAULT_ROLE, MAINTAINER, ROLES, guard_maintainer_callbacks

USER_NAME = re.compile(r"^[A-Za-z0-9_.@+-]{1,64}$")
HASH_METHODS = ("scrypt:", "pbkdf2:")
MIN_PASSWORD_LENGTH = 8
ACCEPTED_TTL_S = 300
ACCEPTED_MAX = 1024
REALM = "FaXplainer"
log = logging.getLogger("faxplainer.auth")


class AuthConfigError(RuntimeError):
    """No usable users file: shared mode refuses to start."""


class Account(NamedTuple):
    hash: str  # werkzeug password hash
    role: str  # app.state.roles.ANALYST or MAINTAINER


def users_file(cfg: Config) -> Path:
    """Where the users file is: ``$FAXPLAINER_USERS_FILE``, ``server.users_file``, or the default."""
    env = os.environ.get("FAXPLAINER_USERS_FILE")
    if env:
        return resolve_path(env)
    if cfg.server.users_file:
        return resolve_path(cfg.server.users_file)
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "faxplainer" / "users"


def parse_users(text: str, where: str = "users file") -> dict[str, Account]:
    """``{name: Account(hash, role)}`` from the lines of a users file.

    A line is ``name:role:hash`` or ``name:hash`` (an analyst).

    Raises
    ------
    AuthConfigError
        A line is neither, has an unknown role, or holds no werkzeug scrypt/pbkdf2 hash (e.g. a
        plain password).
    """
    users: dict[str, Account] = {}
    for n, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, rest = line.partition(":")
        role, _, hashed = rest.partition(":")
        if role not in ROLES:
            if role and not rest.startswith(HASH_METHODS) and hashed.startswith(HASH_METHODS):
                raise AuthConfigError(f"{where} line {n}: unknown role {role!r} (one of "
                                      f"{', '.join(ROLES)})")
            role, hashed = DEFAULT_ROLE, rest
        if not sep or not USER_NAME.match(name) or not hashed.startswith(HASH_METHODS):
            raise AuthConfigError(f"{where} line {n}: expected 'name:role:hash' with a password hash "
                                  f"made by `python -m app.access.auth add-user NAME` (plain passwords are "
                                  f"refused)")
        users[name] = Account(hashed, role)
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
        self._users: dict[str, Account] = {}
        self._accepted: dict[bytes, float] = {}  # salted digest of accepted credentials -> expiry
        self._salt = secrets.token_bytes(16)  # per process: the digests mean nothing elsewhere
        self.reload()

    def reload(self) -> dict[str, Account]:
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
                                  f"it with `python -m app.access.auth add-user NAME --users-file {self.path}`"
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
                                  f"`python -m app.access.auth add-user NAME --users-file {self.path}`")
        with self._lock:
            self._users, self._stamp, self._accepted = users, stamp, {}
        return users

    def role(self, name: str | None) -> str | None:
        """The role of user ``name``, or None (no such user, or an unreadable file)."""
        try:
            account = self.reload().get(name or "")
        except AuthConfigError:
            return None
        return account.role if account else None

    def _digest(self, name: str, password: str, hashed: str) -> bytes:
        return hmac.new(self._salt, f"{name}\0{password}\0{hashed}".encode(), hashlib.sha256).digest()

    def credential_key(self, name: str, password: str) -> bytes:
        """A salted digest of the credentials (equal for equal credentials in this process)."""
        return hmac.new(self._salt, f"{name}\0{password}".encode(), hashlib.sha256).digest()

    def accepted(self, name: str, password: str) -> bool:
        """True when this process accepted these very credentials a moment ago (no hash check)."""
        try:
            account = self.reload().get(name)
        except AuthConfigError:
            return False
        if account is None:
            return False
        with self._lock:
            return self._accepted.get(self._digest(name, password, account.hash), 0.0) > time.monotonic()

    def check(self, name: str, password: str) -> str:
        """Check the password against its hash: ``RIGHT``, ``WRONG`` (or no such user), or
        ``UNKNOWN`` when the users file cannot be used (which shuts everybody out rather than
        letting anybody in, and is no wrong password of the user's)."""
        try:
            account = self.reload().get(name)
        except AuthConfigError:
            return UNKNOWN
        if account is None:
            return WRONG
        from werkzeug.security import check_password_hash

        if not check_password_hash(account.hash, password):
            return WRONG
        now = time.monotonic()
        with self._lock:
            if len(self._accepted) >= ACCEPTED_MAX:
                self._accepted = {k: t for k, t in self._accepted.items() if t > now}
                if len(self._accepted) >= ACCEPTED_MAX:
                    self._accepted.clear()
            self._accepted[self._digest(name, password, account.hash)] = now + ACCEPTED_TTL_S
        return RIGHT

    def verify(self, name: str | None, password: str | None) -> str | None:
        """``name`` when the credentials are right, else None (no throttling: see
        :func:`require_login`)."""
        if not name or password is None:
            return None
        if self.accepted(name, password) or self.check(name, password) == RIGHT:
            return name
        return None


def require_login(server, cfg: Config) -> UserList:
    """Make every route of the Flask ``server`` answer 401 without valid credentials, 429 while
    the client's address is locked out for the user name it gives, and 403 to an analyst asking
    for a maintainer's callback (:func:`app.state.roles.guard_maintainer_callbacks`).

    Idempotent. Returns the :class:`UserList` in use.

    Raises
    ------
    AuthConfigError
        No usable users file (shared mode must not start without one).
    """
    existing = server.extensions.get("faxplainer_auth")
    if existing is not None:
        return existing
    from flask import g, request
    from flask_httpauth import HTTPBasicAuth
    from werkzeug.exceptions import TooManyRequests

    from app.jobs.celery_app import redis_url

    _log_to_stderr()
    users = UserList(users_file(cfg))
    if not any(a.role == MAINTAINER for a in users.reload().values()):
        log.warning("users file %s names no maintainer: nobody can start runs (python -m app.access.auth "
                    "set-role NAME maintainer)", users.path)
    throttle = LoginThrottle(ThrottlePolicy.from_server(cfg.server), redis_store(redis_url(cfg)))
    trusted_proxies = int(cfg.server.trusted_proxies)
    flights = SingleFlight()
    basic = HTTPBasicAuth(realm=REALM)

    @basic.verify_password
    def _verify(name, password):
        if not name or password is None:
            return None  # no credentials yet (a browser's first request): not a failure
        address = client_address(request.remote_addr, request.headers.get("X-Forwarded-For"),
                                 trusted_proxies)
        try:
            # the same credentials arriving at once (a page's parallel requests) are one login
            if flights.run((address, users.credential_key(name, password)), lambda: throttle.login(
                    address, name, lambda: users.accepted(name, password),
                    lambda: users.check(name, password))):
                g.faxplainer_user = name
                return name
        except LoginLocked as e:
            raise TooManyRequests(f"Too many wrong passwords for this user from your address; try "
                                  f"again in {math.ceil(e.wait_s)} s.",
                                  retry_after=max(1, math.ceil(e.wait_s))) from None
        return None

    @basic.error_handler
    def _refused(status):
        return ("credentials required" if status == 401 else "forbidden"), status

    allowed = basic.login_required(lambda: None)

    def _check_credentials():
        return allowed()  # None lets the request through; a 401 response stops it

    # First in line: before the app's own hooks, so that not even a 404 leaks without credentials.
    server.before_request_funcs.setdefault(None, []).insert(0, _check_credentials)
    guard_maintainer_callbacks(server, cfg)
    server.extensions["faxplainer_auth"] = users
    return users


def _log_to_stderr() -> None:
    """Failed logins must reach the web server's log (gunicorn leaves app loggers unset)."""
    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(
            "%(asctime)s %(levelname)s %(name)s[%(process)d]: %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False


# -- command line ----------------------------------------------------------------------------------
def _read_users(path: Path) -> dict[str, Account]:
    return parse_users(path.read_text(encoding="utf-8"), str(path)) if path.exists() else {}


def _write_users(path: Path, users: dict[str, Account]) -> None:
    body = "# FaXplainer users: name:role:password-hash (python -m app.access.auth add-user NAME)\n" + \
        "".join(f"{n}:{a.role}:{a.hash}\n" for n, a in sorted(users.items()))
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
    parser = argparse.ArgumentParser(prog="python -m app.access.auth", description="shared-server users")
    parser.add_argument("--config", default=None, help="YAML config (for server.users_file)")
    parser.add_argument("--users-file", default=None, help="users file (default: see the config)")
    sub = parser.add_subparsers(dest="command", required=True)
    add = sub.add_parser("add-user", help="add a user or change a password ($FAXPLAINER_PASSWORD "
                                          "or asked)")
    add.add_argument("name")
    add.add_argument("--role", choices=ROLES, default=None,
                     help=f"new users: {DEFAULT_ROLE} unless given; existing users keep theirs")
    role = sub.add_parser("set-role", help="change a user's role")
    role.add_argument("name")
    role.add_argument("role", choices=ROLES)
    rm = sub.add_parser("remove-user", help="remove a user")
    rm.add_argument("name")
    sub.add_parser("list", help="list the users and their roles")
    args = parser.parse_args(argv)

    path = resolve_path(args.users_file) if args.users_file else users_file(load_config(args.config))
    if _tracked_by_git(path):
        parser.error(f"{path} is inside the repository and not ignored by git; keep secrets outside")
    users = _read_users(path)
    if args.command == "list":
        print("\n".join(f"{n} {a.role}" for n, a in sorted(users.items())) if users
              else f"no users in {path}")
        return 0
    if not USER_NAME.match(args.name):
        parser.error("a user name has 1-64 letters, digits or _ . @ + -")
    if args.command == "add-user":
        from werkzeug.security import generate_password_hash

        existed = users.get(args.name)
        new_role = args.role or (existed.role if existed else DEFAULT_ROLE)
        users[args.name] = Account(generate_password_hash(_new_password(args.name)), new_role)
        _write_users(path, users)
        print(f"{'changed the password of' if existed else 'added'} {args.name} ({new_role}) in "
              f"{path}", file=sys.stderr)
        return 0
    if args.name not in users:
        print(f"no user {args.name} in {path}", file=sys.stderr)
        return 1
    if args.command == "set-role":
        users[args.name] = users[args.name]._replace(role=args.role)
        _write_users(path, users)
        print(f"{args.name} is now {args.role} in {path}", file=sys.stderr)
        return 0
    del users[args.name]
    _write_users(path, users)
    print(f"removed {args.name} from {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
