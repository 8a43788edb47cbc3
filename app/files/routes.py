"""File routes of the app (Flask), all under ``/files/``.

No route takes a path from the browser. Every URL names a run id (checked against the runs
folder) and integers or fixed words; the file is then found through the run's records
(``pipeline.represent.thumbnails.RunImages``, which refuses anything outside the data root) or inside the
app's cache for the run. Anything else under ``/files/`` is a 404, never the app's index page.
The URL shapes (rules) and their builders, used by the views, are :mod:`app.files.urls`.
Pictures are immutable for a given run, so they are sent with long-lived caching headers. Every
picture is checked against its own checksum (:mod:`pipeline.store.sealed`) before it is sent.
"""
from __future__ import annotations

import re

from flask import Blueprint, Response, abort, request, send_file

from pipeline.data.scan import BadImageError
from pipeline.report.findings import findings_html
from pipeline.report.findings_pdf import findings_pdf
from pipeline.report.notes import NotesStore
from pipeline.represent.originals import browser_file
from pipeline.store.sealed import is_intact
from pipeline.represent.thumbnails import PathRefused

from app.files import artifacts, urls, viewer_files
from app.state.context import AppContext

THUMB_MAX_AGE = 7 * 24 * 3600
IMMUTABLE_MAX_AGE = 365 * 24 * 3600  # sprite names are content hashes
SPRITE_KEY = re.compile(r"^[0-9a-f]{20}$")


def _send(path, mimetype=None, max_age=THUMB_MAX_AGE):
    response = send_file(path, mimetype=mimetype, max_age=max_age, conditional=True, etag=True)
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


def make_blueprint(ctx: AppContext) -> Blueprint:
    bp = Blueprint("faxplainer_files", __name__)

    def run_or_404(run_id):
        view = ctx.run(run_id)
        if view is None:
            abort(404, description="no such run")
        return view

    @bp.route(urls.THUMB_RULE)
    def thumbnail(run_id: str, index: int):
        view = run_or_404(run_id)
        try:
            path = view.images.thumbnail(index)
        except PathRefused as e:
            abort(403, description=str(e))
        return _send(path, "image/jpeg")

    @bp.route(urls.SPRITE_RULE)
    def sprite(run_id: str, key: str):
        view = run_or_404(run_id)
        if not SPRITE_KEY.match(key):
            abort(404)
        path = artifacts.sprite_path(ctx.app_cache(view), key)
        if not is_intact(path):  # missing or damaged (checksum): the image view draws it again
            abort(404)
        return _send(path, "image/jpeg", IMMUTABLE_MAX_AGE)

    @bp.route(urls.ATTENTION_RULE)
    def attention(run_id: str, index: int, name: str):
        view = run_or_404(run_id)
        if index >= view.n_images:
            abort(404)
        path = artifacts.attention_file(ctx.app_cache(view), index, name)
        if path is None:
            abort(404)
        return _send(path, "image/jpeg")

    @bp.route(urls.IMAGE_RULE)
    def original(run_id: str, index: int):
        """Image ``index`` at full resolution: the file itself when a browser shows it as the
        model read it, else its cached conversion (:func:`pipeline.represent.originals.browser_file`)."""
        view = run_or_404(run_id)
        if index >= view.n_images:
            abort(404, description=f"run {run_id} has no image {index}")
        try:
            found = browser_file(view.images, index, ctx.cache_path)
        except PathRefused as e:
            abort(403, description=str(e))
        except BadImageError as e:  # e.g. a decompression bomb: said in words, never decoded
            return Response(f"image {index} cannot be shown: {e.reason}", status=422,
                            mimetype="text/plain")
        return _send(found.path, found.mimetype)

    @bp.route(urls.LAYER_RULE)
    def layer(run_id: str, index: int, name: str):
        view = run_or_404(run_id)
        if index >= view.n_images:
            abort(404)
        path = viewer_files.subject_file(view, ctx.app_cache(view), index) if name == viewer_files.SUBJECT \
            else viewer_files.layer_file(ctx.app_cache(view), index, name)
        if path is None:
            abort(404)
        return _send(path, "image/png")

    @bp.route(urls.REGION_RULE)
    def source_region(run_id: str, index: int, name: str):
        """A demo image's source region or its difference to it, drawn on the first request."""
        view = run_or_404(run_id)
        if index >= view.n_images or name not in viewer_files.REGION_NAMES:
            abort(404)
        try:
            path = viewer_files.region_file(view, ctx.app_cache(view), index, name, ctx.cache_path)
        except PathRefused as e:
            abort(403, description=str(e))
        except (BadImageError, ValueError) as e:  # e.g. the photo changed since the set was built
            return Response(f"image {index}: no source region: {getattr(e, 'reason', None) or e}",
                            status=422, mimetype="text/plain")
        if path is None:
            abort(404, description=f"image {index}: its source photo is not on this machine")
        return _send(path, "image/png")

    @bp.route(urls.CONCEPT_RULE)
    def concept_patch(run_id: str, cell: int, k: int, j: int):
        view = run_or_404(run_id)
        path = artifacts.concept_patch(view, ctx.app_cache(view), cell, k, j)
        if path is None:
            abort(404)
        return _send(path)

    @bp.route(urls.NOTES_RULE)
    def notes_export(run_id: str, fmt: str):
        path = ctx.run_dir(run_id)
        if path is None or fmt not in urls.NOTES_FORMATS:
            abort(404)
        if fmt == "html":  # the findings sheet, opened in the browser (not downloaded)
            response = Response(findings_html(path, ctx.cache_path), mimetype="text/html")
            response.headers["Cache-Control"] = "no-store"
            return response
        store = NotesStore(path)
        body = store.export_csv() if fmt == "csv" else store.export_json()
        mimetype = "text/csv" if fmt == "csv" else "application/json"
        response = Response(body, mimetype=mimetype)
        response.headers["Content-Disposition"] = f'attachment; filename="{run_id}-notes.{fmt}"'
        response.headers["Cache-Control"] = "no-store"
        return response

    @bp.route(urls.FINDINGS_PDF_RULE)
    def findings_figure(run_id: str):
        """The findings sheet as a PDF figure, opened in the browser (not downloaded)."""
        path = ctx.run_dir(run_id)
        if path is None:
            abort(404)
        try:
            body = findings_pdf(path, ctx.cache_path)
        except FileNotFoundError as e:  # the fonts are missing on this server: said in words
            return Response(str(e), status=503, mimetype="text/plain")
        response = Response(body, mimetype="application/pdf")
        response.headers["Content-Disposition"] = f'inline; filename="{run_id}-findings.pdf"'
        response.headers["Cache-Control"] = "no-store"
        return response

    @bp.route(urls.PREFIX, defaults={"rest": ""})
    @bp.route(urls.PREFIX + "<path:rest>")
    def not_a_file(rest: str):
        abort(404, description="not a file of this app")

    return bp


def register(server, ctx: AppContext) -> None:
    """Attach the file routes to the Flask ``server`` of the Dash app."""
    bp = make_blueprint(ctx)
    server.register_blueprint(bp)

    @server.before_request
    def _files_only_from_the_blueprint():
        # e.g. "/files//etc/passwd" would otherwise reach Dash's catch-all page route
        if request.path.startswith(urls.PREFIX) and request.blueprint != bp.name:
            abort(404, description="not a file of this app")
