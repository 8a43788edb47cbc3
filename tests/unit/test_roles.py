"""Roles (app.state.roles): who may start runs and delete notes, and the notes callback's check."""
from __future__ import annotations

import json
from types import SimpleNamespace

import flask
import pytest

from app.state.context import AppContext
from app.state.roles import (ANALYST, MAINTAINER, current_identity, may_delete_note, may_start_runs,
                       start_runs_refusal)
from app.views import notes as notes_view
from pipeline.config import from_dict
from pipeline.report.notes import NotesStore


def test_only_maintainers_start_runs():
    assert may_start_runs(MAINTAINER)
    assert not may_start_runs(ANALYST) and not may_start_runs(None) and not may_start_runs("admin")
    assert "set-role ann maintainer" in start_runs_refusal("ann")


@pytest.mark.parametrize("role,user,author,allowed", [
    (MAINTAINER, "mia", "ann", True),
    (MAINTAINER, "mia", None, True),
    (ANALYST, "ann", None, True),  # notes written before authors were recorded
    (ANALYST, "ann", "", True),
    (ANALYST, "ann", "ann", True),
    (ANALYST, "ann", "bob", False),
    (ANALYST, None, "bob", False),
])
def test_who_may_delete_a_note(role, user, author, allowed):
    note = {"id": "x", "text": "t"} if author is None else {"id": "x", "text": "t", "author": author}
    assert may_delete_note(role, user, note) is allowed


def test_identity_outside_shared_mode_and_outside_a_request():
    assert current_identity(from_dict({})) == (None, MAINTAINER)  # local: the one user
    assert current_identity(from_dict({"server": {"mode": "shared"}})) == (None, ANALYST)  # a worker


def test_the_notes_callback_checks_the_role_before_deleting(tmp_path, make_fake_run):
    run = make_fake_run(n_images=12, n_cells=2)
    store = NotesStore(run)
    own, other, anonymous = (store.add("mine", cell=0), store.add("bob's", cell=0),
                             store.add("old note", cell=1))
    data = json.loads(store.path.read_text())  # authors as the notes issue will write them
    for n in data["notes"]:
        n["author"] = {own["id"]: "ann", other["id"]: "bob"}.get(n["id"])
    store.path.write_text(json.dumps(data))
    cfg = from_dict({"runs_dir": str(tmp_path / "runs"), "cache_dir": str(tmp_path / "cache"),
                     "server": {"mode": "shared"}})
    ctx = AppContext(cfg)
    server = flask.Flask("t")
    server.extensions["faxplainer_auth"] = SimpleNamespace(role={"ann": ANALYST, "mia": MAINTAINER}.get)

    def as_user(name, fn, *args):
        with server.test_request_context():
            flask.g.faxplainer_user = name
            return fn(*args)

    deleted, message = as_user("ann", notes_view.delete_note, ctx, "fake-run", other["id"])
    assert not deleted and "Only a maintainer or the note's author" in json.dumps(message.to_plotly_json(),
                                                                                  default=str)
    items, _ = as_user("ann", notes_view.list_notes, ctx, "fake-run")
    buttons = {n["id"]: "delete" in json.dumps(i.to_plotly_json(), default=str)
               for n, i in zip(reversed(store.list()), items)}
    assert buttons == {own["id"]: True, other["id"]: False, anonymous["id"]: True}
    assert as_user("ann", notes_view.delete_note, ctx, "fake-run", own["id"]) == (True, "Note deleted.")
    assert as_user("ann", notes_view.delete_note, ctx, "fake-run", anonymous["id"])[0]
    assert as_user("mia", notes_view.delete_note, ctx, "fake-run", other["id"])[0]  # a maintainer
    assert store.list() == []
    assert as_user("mia", notes_view.delete_note, ctx, "fake-run", other["id"]) == \
        (False, "That note no longer exists.")
