"""Roles of the shared server's users: who may start runs and delete other people's notes.

* ``analyst``: views runs, explains (maps, concepts), applies models and writes notes; deletes
  only notes without an author or their own (once notes record an ``author``).
* ``maintainer``: all of that, plus starting runs and managing (deleting any note).

The role is a field of the users file (:mod:`app.access.auth`); a line without one is an analyst (least
privilege: a users file written before roles existed grants nobody new powers; the server says at
start when nobody can start runs). Local mode has one user, who may do everything.

The rules are the pure functions :func:`may_start_runs` and :func:`may_delete_note`. The server
enforces them where the work is asked for: :func:`guard_maintainer_callbacks` answers 403 to an
analyst's request for the new-run job before it is queued (its body runs in a Celery worker,
which cannot know who asked), and the notes callback checks before deleting. The page hides what a
role may not do, but the server never relies on that.
"""
from __future__ import annotations

from app.state import ids

ANALYST, MAINTAINER = "analyst", "maintainer"
ROLES = (ANALYST, MAINTAINER)
DEFAULT_ROLE = ANALYST
# Outputs of callbacks only a maintainer may call: the jobs that start runs (a new run, a re-encoded
# re-run of a confounded one), start and polling alike.
MAINTAINER_OUTPUTS = (ids.NEWRUN_MESSAGE, ids.CONFOUND_MESSAGE)


def may_start_runs(role: str | None) -> bool:
    return role == MAINTAINER


def may_apply(role: str | None) -> bool:
    """Scoring new images with a run ("score a folder", ``pipeline.generalise.apply``): every role may; it
    writes only an applied set inside the run, never changes the run."""
    return role in ROLES


def may_delete_note(role: str | None, user: str | None, note: dict) -> bool:
    """A maintainer deletes any note; anybody else only notes without an author, or their own."""
    if role == MAINTAINER:
        return True
    author = note.get("author")
    return not author or (user is not None and author == user)


def start_runs_refusal(user: str | None) -> str:
    """Why ``user`` may not start a run, and what to do about it (the 403 and the page say it)."""
    who = f"{user} is" if user else "you are"
    return (f"Starting a run needs the maintainer role; {who} an analyst. A maintainer of this "
            f"server can change that: python -m app.access.auth set-role {user or 'NAME'} maintainer")


def current_identity(cfg) -> tuple[str | None, str]:
    """(user name, role) of the request being served.

    Local mode: (None, maintainer). Shared mode: the user the credentials check accepted and
    their role; outside a request (a Celery worker), or without an accepted user: an analyst.
    """
    if cfg.server.mode != "shared":
        return None, MAINTAINER
    from flask import current_app, g, has_request_context

    if not has_request_context():
        return None, ANALYST
    user = g.get("faxplainer_user")
    users = current_app.extensions.get("faxplainer_auth")
    role = users.role(user) if (user and users is not None) else None
    return user, role or ANALYST


def guard_maintainer_callbacks(server, cfg) -> None:
    """Answer 403 (with :func:`start_runs_refusal`) to a non-maintainer's request for a
    maintainer-only callback. Runs after the credentials check (:func:`app.access.auth.require_login`)."""
    from flask import Response, request

    def _maintainer_only():
        if request.method != "POST" or not request.path.endswith("/_dash-update-component"):
            return None
        body = request.get_json(silent=True)
        output = str(body.get("output", "")) if isinstance(body, dict) else ""
        if not any(cid in output for cid in MAINTAINER_OUTPUTS):
            return None
        user, role = current_identity(cfg)
        if may_start_runs(role):
            return None
        return Response(start_runs_refusal(user), status=403, mimetype="text/plain")

    funcs = server.before_request_funcs.setdefault(None, [])
    funcs.insert(1 if funcs else 0, _maintainer_only)  # right after the credentials check
