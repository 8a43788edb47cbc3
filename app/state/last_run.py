"""The run each user of the shared server last opened, so that a bare URL opens it again.

Without this, a page opened without ``?run=`` shows the newest run, and on a shared server the
newest run is whatever a colleague made last: their new run would move everyone's bare URL. So
each user's last opened run is kept, server side, in ``<cache>/users/last-runs.json``
(``{"version": 1, "users": {name: {"run": id, "at": time}}}``): read on a bare URL, written by
the router when a user's open run changes. Every write re-reads the file and replaces it
atomically (``pipeline.store.run_store.atomic_write_json``: temporary file, fsync, rename) under a lock
file, so the web processes writing at once lose no entry and a crash never leaves a half file.
A file found damaged anyway (a disk fault) is moved aside, reported in the log, and started
afresh; nobody's page fails because of it.

Local mode has one user and keeps the old rule (the configured run, else the newest).
"""
from __future__ import annotations

import json
import logging
import time
from datetime import datetime, timezone
from pathlib import Path

from filelock import FileLock

from pipeline.store.run_store import atomic_write_json

from app.state.context import AppContext
from app.state.roles import current_identity

log = logging.getLogger("faxplainer.app")

FILE_NAME = "last-runs.json"


class LastRuns:
    """Each user's last opened run, in ``folder / last-runs.json``."""

    def __init__(self, folder: str | Path, lock_timeout: float = 10.0):
        self.path = Path(folder) / FILE_NAME
        self._lock = FileLock(str(Path(folder) / f".{FILE_NAME}.lock"), timeout=lock_timeout)

    def _read(self) -> dict[str, dict]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as e:
            raise DamagedFile(f"{self.path} cannot be read ({e})") from e
        users = data.get("users") if isinstance(data, dict) else None
        if not isinstance(users, dict):
            raise DamagedFile(f"{self.path} has no 'users' table")
        return users

    def get(self, user: str) -> str | None:
        """``user``'s last opened run id, or None."""
        try:
            entry = self._read().get(user)
        except DamagedFile as e:
            log.warning("%s; opening the default run", e)
            return None
        return entry.get("run") if isinstance(entry, dict) else None

    def set(self, user: str, run_id: str) -> None:
        """Remember ``run_id`` as ``user``'s last opened run."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock:
            try:
                users = self._read()
            except DamagedFile as e:
                aside = self.path.with_name(f"{FILE_NAME}.damaged-{int(time.time())}")
                self.path.replace(aside)
                log.warning("%s; moved it to %s and started a new one", e, aside)
                users = {}
            if (users.get(user) or {}).get("run") == run_id:
                return
            users[user] = {"run": run_id,
                           "at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
            atomic_write_json(self.path, {"version": 1, "users": users})


class DamagedFile(ValueError):
    """The last-runs file exists but is not what this module writes."""


def _store(ctx: AppContext) -> LastRuns:
    return LastRuns(ctx.cache_path / "users")


def _user(ctx: AppContext) -> str | None:
    return current_identity(ctx.cfg)[0] if ctx.cfg.server.mode == "shared" else None


def default_run(ctx: AppContext) -> str | None:
    """The run a bare URL opens: the user's last opened run while it exists; else (and in local
    mode) the configured run, else the newest complete one (:meth:`AppContext.initial_run`)."""
    user = _user(ctx)
    if user:
        run = _store(ctx).get(user)
        if run and ctx.run_dir(run) is not None:
            return run
    return ctx.initial_run()


def remember(ctx: AppContext, run_id: str | None) -> None:
    """Record ``run_id`` as the current user's last opened run (shared mode; an existing run)."""
    user = _user(ctx)
    if user and run_id and ctx.run_dir(run_id) is not None:
        try:
            _store(ctx).set(user, run_id)
        except Exception as e:  # the page works without it; the next change tries again
            log.warning("could not remember %s's last run: %s", user, e)
