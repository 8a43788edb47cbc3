"""The Dash app: ``create_app(cfg)`` builds it; ``server`` is the WSGI entry point for gunicorn.

``gunicorn 'app.main:server'`` reads the config named by ``$FAXPLAINER_CONFIG`` (default
``configs/default.yaml``) and the run by ``$FAXPLAINER_RUN``; ``python -m app`` is the same with
command-line options.
"""
from __future__ import annotations

import functools
import os

import dash

from pipeline.config import REPO_ROOT, Config, load_config

from app import layout

from app.files import routes
from app.state.context import AppContext
from app.jobs.managers import make_managers
from app.views import (applied, atlas, attention, checks, concepts, finder, images, matrix, notes, representation,
                    shell, viewer)


def create_app(cfg: Config, run_id: str | None = None, *, serve_http: bool = True) -> dash.Dash:
    """Build the app over the runs in ``cfg.runs_path``, opening ``run_id`` by default.

    ``serve_http=False`` is for a Celery worker, which only runs the app's jobs: it needs no
    users file, since it answers no HTTP request.
    """
    ctx = AppContext(cfg, run_id)
    managers = make_managers(cfg)
    app = dash.Dash(__name__, title="FaXplainer", assets_folder=str(REPO_ROOT / "assets"),
                    suppress_callback_exceptions=True, update_title=None)
    app.layout = lambda: layout.build(ctx)
    shell.register(app, ctx, managers)
    representation.register(app, ctx)
    images.register(app, ctx, managers)
    attention.register(app, ctx, managers)
    atlas.register(app, ctx, managers)
    concepts.register(app, ctx, managers)
    notes.register(app, ctx)
    checks.register(app, ctx, managers)
    viewer.register(app, ctx, managers)
    finder.register(app, ctx)
    applied.register(app, ctx, managers)
    matrix.register(app, ctx, managers)
    routes.register(app.server, ctx)
    if cfg.server.mode == "shared" and serve_http:  # every route, callback and file needs credentials
        from app.access.auth import require_login

        require_login(app.server, cfg)
    return app


@functools.lru_cache(maxsize=1)
def _server_from_environment():
    path = os.environ.get("FAXPLAINER_CONFIG", str(REPO_ROOT / "configs" / "default.yaml"))
    cfg = load_config(path if os.path.exists(path) else None)
    return create_app(cfg, os.environ.get("FAXPLAINER_RUN") or None).server


def __getattr__(name: str):
    # ``app.main.server`` is built on first access (gunicorn), not at import, once per process.
    if name == "server":
        return _server_from_environment()
    raise AttributeError(name)
