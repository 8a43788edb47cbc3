"""Notes panel: attach a short note and a tag to the open cell or to the selected images.

Notes live in ``<run>/notes.json`` (:class:`pipeline.report.notes.NotesStore`), so they survive restarts
and are shared by every worker; on the shared server each note records who wrote it (the login),
shown in the list, the exports and the findings sheet; the list jumps back to a note's cell and images (the jump buttons
are handled by the shell's router) and exports as CSV or JSON with the image paths. A note may name
the dimensions it is about (the findings sheet shows their maps): the picker is pre-filled with the
first columns of the attention view of the selection, when its maps are drawn.
"""
from __future__ import annotations

from dash import ALL, Input, Output, State, dcc, html, no_update

from pipeline.report.notes import N_DIMS, NotesStore

from app.files import artifacts, urls
from app.state import ids, imagesets
from app.state.context import AppContext
from app.state.roles import current_identity, may_delete_note
from app.views.attention import MAX_IMAGES, column_order

NOTES_DIMS = "notes-dims-dropdown"  # the dimensions picker (kept here: only this panel uses it)
PREFILLED_DIMS = 3  # the attention view's first columns offered for a note


def layout() -> html.Div:
    return html.Div(className="fx-panel", children=[
        html.Div(className="fx-panel-head", children=[html.Span("Notes", className="fx-panel-title"),
                                                      html.Span(id=ids.NOTES_EXPORT)]),
        html.Div(className="fx-notes-form", children=[
            dcc.Textarea(id=ids.NOTES_TEXT, placeholder="e.g. bird in yellow grass, fools the model",
                         maxLength=2000),
            dcc.Input(id=ids.NOTES_TAG, type="text", placeholder="tag (optional)", maxLength=40),
            dcc.Dropdown(id=NOTES_DIMS, options=[{"label": f"dimension {k}", "value": k} for k in range(N_DIMS)],
                         multi=True, value=[], placeholder="dimensions shown in this note (optional)",
                         className="fx-notes-dims"),
            html.Div(className="fx-notes-buttons", children=[
                html.Button("Note on cell", id=ids.NOTES_ADD_CELL, n_clicks=0),
                html.Button("Note on selected images", id=ids.NOTES_ADD_IMAGES, n_clicks=0),
            ]),
            html.Div(id=ids.NOTES_MESSAGE, className="fx-message"),
        ]),
        html.Div(id=ids.NOTES_LIST, className="fx-notes-list"),
        dcc.Store(id=ids.NOTES_VERSION, data=0),
    ])


def export_links(run_id: str) -> list:
    return [html.A("findings sheet", href=urls.notes_export(run_id, "html"), target="_blank",
                   title="the notes with their images and maps on one page, to share or archive"), " · ",
            html.A("PDF", href=urls.findings_pdf(run_id), target="_blank",
                   title="the findings sheet as a PDF figure"), " · export: ",
            html.A("CSV", href=urls.notes_export(run_id, "csv"), download=f"{run_id}-notes.csv"), " · ",
            html.A("JSON", href=urls.notes_export(run_id, "json"), download=f"{run_id}-notes.json")]


def note_item(note: dict, deletable: bool = True) -> html.Div:
    target = []
    if note.get("cell") is not None:
        target.append(f"cell {note['cell']}")
    if note.get("images"):
        target.append(f"{len(note['images'])} image(s)")
    if note.get("dims"):
        target.append(f"dimensions {', '.join(map(str, note['dims']))}")
    by = f" · by {note['author']}" if note.get("author") else ""
    return html.Div(className="fx-note", **{"data-note": note["id"]}, children=[
        html.Span(note["tag"], className="fx-note-tag") if note.get("tag") else None,
        html.Span(note["text"]),
        html.Div(className="fx-muted", children=f"{' · '.join(target)} · {note.get('created', '')}{by}"),
        html.Div(className="fx-note-actions", children=[
            html.Button("show", id=ids.note_jump(note["id"]), n_clicks=0,
                        title="open this note's cell and images"),
            html.Button("delete", id=ids.note_delete(note["id"]), n_clicks=0) if deletable else None,
        ]),
    ])


def list_notes(ctx: AppContext, run_id):
    """Callback body: (list children, export links)."""
    path = ctx.run_dir(run_id)
    if path is None:
        return [], ""
    try:
        notes = NotesStore(path).list()
    except Exception as e:  # a corrupted notes file is shown, never overwritten
        return [html.Div(str(e), className="fx-error")], ""
    user, role = current_identity(ctx.cfg)
    items = [note_item(n, may_delete_note(role, user, n)) for n in reversed(notes)]  # newest first
    return items or [html.Div("No notes yet.", className="fx-muted")], export_links(run_id)


def attention_dims(ctx: AppContext, run_id, sel) -> list[int]:
    """The dimensions the attention view shows first for the selection (its first
    :data:`PREFILLED_DIMS` columns), or none while its maps are not drawn."""
    view = ctx.run(run_id) if run_id else None
    chosen = [int(i) for i in (sel or {}).get("ids") or [] if view is not None and 0 <= int(i) < view.n_images]
    if not chosen:
        return []
    cache = ctx.app_cache(view)
    metas = [artifacts.read_attention(cache, i) for i in chosen[:MAX_IMAGES]]
    contributions = [m["contributions"] for m in metas if m and not m.get("error") and m.get("contributions")]
    return column_order(contributions)[:PREFILLED_DIMS] if contributions else []


def add_note(ctx: AppContext, run_id, cell, sel, text, tag, on_images: bool, dims=None):
    """Callback body: store a note (naming ``dims``, the dimensions picked); returns (message, clear text?)."""
    path = ctx.run_dir(run_id)
    if path is None:
        return html.Span("Open a run first.", className="fx-error"), False
    images = (sel or {}).get("ids") or [] if on_images else []
    if on_images and not images:
        return html.Span("Select some images first (box or lasso in the image view).",
                         className="fx-error"), False
    if not on_images and cell is None:
        return html.Span("Open a cell first (click one in the representation view).",
                         className="fx-error"), False
    author, _role = current_identity(ctx.cfg)  # the login on the shared server; None locally
    what = None
    if not on_images and imagesets.is_set(cell):  # an image set is no cell: the note holds its images
        view = ctx.run(run_id)
        info = view.cell_info(cell) if view is not None else None
        if info is None:
            return html.Span("The open image set is gone; open it again.", className="fx-error"), False
        cell, images, what = None, view.cell_members(cell).tolist(), f"the images of {info['title']}"
    try:
        note = NotesStore(path).add(text or "", tag or "", cell=cell, images=images, author=author,
                                    dims=dims or ())
    except ValueError as e:
        return html.Span(str(e), className="fx-error"), False
    what = what or (f"{len(note['images'])} image(s)" if on_images else f"cell {cell}")
    return f"Note saved on {what}.", True


def delete_note(ctx: AppContext, run_id, note_id: str) -> tuple[bool, object]:
    """Callback body: delete a note if the user's role allows it; returns (deleted?, message)."""
    path = ctx.run_dir(run_id)
    store = NotesStore(path) if path is not None else None
    note = store.get(note_id) if store is not None else None
    if note is None:
        return False, "That note no longer exists."
    user, role = current_identity(ctx.cfg)
    if not may_delete_note(role, user, note):  # checked here, on the server, whatever the page shows
        return False, html.Span("Only a maintainer or the note's author may delete this note.",
                                className="fx-error")
    if not store.delete(note_id):
        return False, "That note no longer exists."
    return True, "Note deleted."


def register(app, ctx: AppContext) -> None:
    @app.callback(Output(ids.NOTES_LIST, "children"), Output(ids.NOTES_EXPORT, "children"),
                  Input(ids.STORE_RUN, "data"), Input(ids.NOTES_VERSION, "data"))
    def _list(run_id, _version):
        return list_notes(ctx, run_id)

    @app.callback(Output(ids.NOTES_VERSION, "data"), Output(ids.NOTES_MESSAGE, "children"),
                  Output(ids.NOTES_TEXT, "value"), Output(ids.NOTES_TAG, "value"),
                  Input(ids.NOTES_ADD_CELL, "n_clicks"), Input(ids.NOTES_ADD_IMAGES, "n_clicks"),
                  Input(ids.note_delete(ALL), "n_clicks"), Input(ids.STORE_RUN, "data"),
                  State(ids.STORE_CELL, "data"),
                  State(ids.STORE_SEL, "data"), State(ids.NOTES_TEXT, "value"),
                  State(ids.NOTES_TAG, "value"), State(ids.NOTES_VERSION, "data"), State(NOTES_DIMS, "value"),
                  prevent_initial_call=True)
    def _change(_cell_clicks, _image_clicks, _deletes, run_id, cell, sel, text, tag, version, dims):
        from dash import ctx as dash_ctx

        trigger = dash_ctx.triggered_id
        if trigger == ids.STORE_RUN:  # another run: the last message spoke of the old one
            return no_update, "", no_update, no_update
        if not dash_ctx.triggered or not dash_ctx.triggered[0].get("value"):
            return no_update, no_update, no_update, no_update  # a button was (re)created, not clicked
        if isinstance(trigger, dict) and trigger.get("type") == ids.note_delete("")["type"]:
            deleted, message = delete_note(ctx, run_id, trigger["index"])
            return ((version or 0) + 1 if deleted else no_update), message, no_update, no_update
        message, saved = add_note(ctx, run_id, cell, sel, text, tag, trigger == ids.NOTES_ADD_IMAGES, dims)
        cleared = "" if saved else no_update  # a saved note's text and tag: ready for the next one
        return ((version or 0) + 1 if saved else no_update), message, cleared, cleared

    @app.callback(Output(NOTES_DIMS, "value"), Input(ids.STORE_SEL, "data"), Input(ids.ATTN_READY, "data"),
                  State(ids.STORE_RUN, "data"), prevent_initial_call=True)
    def _prefill_dims(sel, _ready, run_id):
        return attention_dims(ctx, run_id, sel)
