"""The findings sheet: a run's notes as one self-contained HTML page (the seed paper's Fig. 2,
"fake patterns that Ryan found").

Each note shows its tag, its text, when it was written and what it is attached to, with its
images as thumbnails (at most :data:`MAX_IMAGES_PER_NOTE`, the rest counted), each marked with
its label, the prediction and whether that was right. The page opens with what the figures rest
on: the run, its data, its encoder (and that it was the stand-in, if so) and its held-out
metrics. Thumbnails are embedded as data URIs, so the file can be mailed or archived as it is.
"""
from __future__ import annotations

import base64
import html
from pathlib import Path

from pipeline.report.notes import NotesStore
from pipeline.store.run_store import AppliedStore, open_store
from pipeline.represent.thumbnails import RunImages

MAX_IMAGES_PER_NOTE = 24
WORDS = {0: "real", 1: "fake", -1: "unlabelled"}  # -1: an applied set's image without a label

_STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; color: #1f2328; margin: 24px auto; max-width: 1000px; }
h1 { font-size: 20px; margin: 0 0 4px; } .muted { color: #6b7280; font-size: 12px; }
.note { border-top: 1px solid #d9dde3; padding: 12px 0; } .tag { background: #ddf4ff; color: #0550ae;
border-radius: 10px; padding: 0 8px; font-size: 12px; margin-right: 6px; }
.text { font-size: 15px; } .images { display: flex; flex-wrap: wrap; gap: 8px; margin-top: 8px; }
figure { margin: 0; width: 112px; font-size: 11px; } figure img { width: 112px; height: 112px;
border: 3px solid; box-sizing: border-box; display: block; } .right img { border-color: #2ca02c; }
.wrong img { border-color: #d62728; } .no-label img { border-color: #8c959f; }
.unlabelled { background: #8c959f; } .b { color: #fff; border-radius: 3px; padding: 0 4px; }
.real { background: #1f77b4; } .fake { background: #ff7f0e; } .notice { background: #fff8c5;
border: 1px solid #d4a72c; padding: 6px 10px; border-radius: 4px; margin: 8px 0; }
"""


def _data_uri(path: Path) -> str:
    return "data:image/jpeg;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _figure(records: list[dict], images: RunImages, i: int) -> str:
    r = records[i]
    label, pred = WORDS[int(r["label"])], WORDS[int(r["pred"])]
    known = int(r["label"]) >= 0
    right = int(r["label"]) == int(r["pred"])
    outcome = ("right" if right else "wrong") if known else "no label"
    name = html.escape(Path(r["path"]).name)
    return (f'<figure class="{outcome.replace(" ", "-")}"><img src="{_data_uri(images.thumbnail(i))}" '
            f'alt="{name}"><figcaption><span class="b {label}">{label}</span> predicted {pred} '
            f'({outcome}), p(fake) {float(r["prob_fake"]):.2f}<br>{name}'
            f'</figcaption></figure>')


def _note_images(note: dict, records: list[dict]) -> list[int]:
    if note.get("images"):
        return [int(i) for i in note["images"] if 0 <= int(i) < len(records)]
    if note.get("cell") is not None:
        return [i for i, r in enumerate(records) if r["cell"] == int(note["cell"])]
    return []


def findings_html(run_dir: str | Path, cache_root: str | Path) -> str:
    """The findings sheet of the run (or applied set) in ``run_dir`` (thumbnails from ``cache_root``)."""
    store = open_store(run_dir)
    meta, records = store.read_meta(), store.read_records()
    images = RunImages(run_dir, cache_root)
    data = meta.get("data") or {}
    if isinstance(store, AppliedStore):  # scored with its run's encoder; its metrics are flat
        enc, head = store.run.read_meta().get("encoder") or {}, meta.get("metrics") or {}
        what = f"applied set {store.name} of run {store.run.run_id}"
    else:
        enc, head = meta.get("encoder") or {}, (meta.get("metrics") or {}).get("head") or {}
        what = f"run {store.run_id}"
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>Findings · {html.escape(what)}"
             f"</title><style>{_STYLE}</style></head><body>",
             f"<h1>Findings · {html.escape(what)}</h1>",
             f"<div class='muted'>data {html.escape(str(data.get('root', '?')))} · {data.get('n_images', '?')} "
             f"images ({data.get('n_real', '?')} real, {data.get('n_fake', '?')} fake) · encoder "
             f"{html.escape(str(enc.get('name')))} {html.escape(str(enc.get('model')))} · held-out "
             f"accuracy {head.get('accuracy', float('nan')):.3f}, AUC {head.get('auc', float('nan')):.3f} "
             f"on {head.get('n', '?')} images</div>"]
    if enc.get("fallback_reason"):
        parts.append(f"<div class='notice'>CLIP was not used: the maps behind these findings describe the "
                     f"stand-in encoder {html.escape(str(enc.get('model')))} "
                     f"({html.escape(enc['fallback_reason'])}).</div>")
    notes = NotesStore(run_dir).list()
    if not notes:
        parts.append("<p class='muted'>No notes yet.</p>")
    for note in notes:
        chosen = _note_images(note, records)
        target = (f"cell {note['cell']}" if note.get("cell") is not None else "") + \
            (f"{' · ' if note.get('cell') is not None else ''}{len(note['images'])} selected images"
             if note.get("images") else "")
        author = f" · by {html.escape(note['author'])}" if note.get("author") else ""
        parts.append("<div class='note'>" +
                     (f"<span class='tag'>{html.escape(note['tag'])}</span>" if note.get("tag") else "") +
                     f"<span class='text'>{html.escape(note['text'])}</span>"
                     f"<div class='muted'>{html.escape(target)} · {html.escape(note.get('created', ''))}"
                     f"{author}</div><div class='images'>" +
                     "".join(_figure(records, images, i) for i in chosen[:MAX_IMAGES_PER_NOTE]) + "</div>" +
                     (f"<div class='muted'>and {len(chosen) - MAX_IMAGES_PER_NOTE} more images</div>"
                      if len(chosen) > MAX_IMAGES_PER_NOTE else "") + "</div>")
    parts.append("</body></html>")
    return "\n".join(parts)
