"""Analyst notes attached to cells or images of a run, kept in ``<run>/notes.json``.

A note is a short text and an optional tag ("bird in yellow grass, fools the model" / "grass")
attached to a cell, to a set of images (by index), or to both, with the name of the analyst who
wrote it (``author``; none in the single-user app) and, optionally, the dimensions of the 16-d
representation it is about (``dims``, shown with their maps on the findings sheet; a note written
before they existed has none). Every change re-reads the file,
edits it and replaces it atomically, under a lock file, so two app workers (or two browser tabs)
writing at the same time never lose a note and a crash never leaves a half-written file.
Export as CSV (one row per note and image) or JSON, with the image paths.
"""
from __future__ import annotations

import csv
import io
import json
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable

from filelock import FileLock

from pipeline.data.scan import PathRefused
from pipeline.store.run_store import ArtifactError, RunStore, atomic_write_json

NOTES_FILE = "notes.json"
MAX_TEXT = 2000
MAX_TAG = 40
EXPORT_FIELDS = ["note_id", "created", "author", "tag", "text", "cell", "dims", "scope", "image_index",
                 "image_id", "image_path", "abs_path", "label", "pred"]
MAX_AUTHOR = 64
N_DIMS = 16  # dimensions of the distilled representation a note may name


class NotesStore:
    """Notes of the run in ``run_dir``.

    Parameters
    ----------
    run_dir : str or Path
        The run folder.
    lock_timeout : float
        Seconds to wait for another writer before giving up with ``filelock.Timeout``.
    """

    def __init__(self, run_dir: str | Path, lock_timeout: float = 10.0):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / NOTES_FILE
        self._lock = FileLock(str(self.run_dir / f".{NOTES_FILE}.lock"), timeout=lock_timeout)

    # -- reading ----------------------------------------------------------------------------------
    def _read(self) -> list[dict]:
        if not self.path.exists():
            return []
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise ArtifactError(f"{self.path} is corrupted ({e}); it was left untouched") from e
        notes = data.get("notes") if isinstance(data, dict) else None
        if not isinstance(notes, list):
            raise ArtifactError(f"{self.path} has no 'notes' list; it was left untouched")
        return notes

    def list(self, cell: int | None = None) -> list[dict]:
        """All notes, oldest first; only those of ``cell`` when given."""
        notes = self._read()
        if cell is not None:
            notes = [n for n in notes if n.get("cell") == int(cell)]
        return notes

    def get(self, note_id: str) -> dict | None:
        return next((n for n in self._read() if n.get("id") == note_id), None)

    # -- writing ----------------------------------------------------------------------------------
    def add(self, text: str, tag: str = "", cell: int | None = None,
            images: Iterable[int] = (), author: str | None = None, dims: Iterable[int] = ()) -> dict:
        """Attach a note to ``cell`` and/or ``images``; returns the stored note.

        ``author`` is the name of the user who writes it (the shared server's login); a note
        without one has no ``author`` key. ``dims``: the dimensions (0..15) the note is about, in
        the analyst's order, each once; a note without any has no ``dims`` key.

        Raises
        ------
        ValueError
            Empty text, text, tag or author too long, a dimension outside 0..15, or nothing to
            attach the note to.
        """
        text = (text or "").strip()
        tag = (tag or "").strip()
        author = (author or "").strip()
        if len(author) > MAX_AUTHOR:
            raise ValueError(f"an author name is at most {MAX_AUTHOR} characters (got {len(author)})")
        images = sorted({int(i) for i in images})
        dims = list(dict.fromkeys(int(k) for k in dims))
        bad = [k for k in dims if not 0 <= k < N_DIMS]
        if bad:
            raise ValueError(f"dimensions are numbered 0..{N_DIMS - 1} (got {bad})")
        if not text:
            raise ValueError("a note needs some text")
        if len(text) > MAX_TEXT:
            raise ValueError(f"a note is at most {MAX_TEXT} characters (got {len(text)})")
        if len(tag) > MAX_TAG:
            raise ValueError(f"a tag is at most {MAX_TAG} characters (got {len(tag)})")
        if cell is None and not images:
            raise ValueError("attach the note to a cell or to some images")
        note = {
            "id": uuid.uuid4().hex[:12],
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "text": text,
            "tag": tag,
            "cell": None if cell is None else int(cell),
            "images": images,
        }
        if author:
            note["author"] = author
        if dims:
            note["dims"] = dims
        with self._lock:
            notes = self._read()
            notes.append(note)
            atomic_write_json(self.path, {"version": 1, "notes": notes})
        return note

    def delete(self, note_id: str) -> bool:
        """Remove note ``note_id``; returns whether it existed."""
        with self._lock:
            notes = self._read()
            kept = [n for n in notes if n.get("id") != note_id]
            if len(kept) == len(notes):
                return False
            atomic_write_json(self.path, {"version": 1, "notes": kept})
        return True

    # -- export -----------------------------------------------------------------------------------
    def _export_entries(self) -> list[tuple[dict, str, list[int]]]:
        """(note, scope, image indices): a note's own images, else all images of its cell."""
        store = RunStore(self.run_dir)
        records = store.read_records()
        out = []
        for note in self._read():
            if note.get("images"):
                out.append((note, "images", [int(i) for i in note["images"]]))
            elif note.get("cell") is not None:
                cell = int(note["cell"])
                out.append((note, "cell", [i for i, r in enumerate(records) if r.get("cell") == cell]))
            else:
                out.append((note, "none", []))
        return out

    def _image_info(self) -> tuple[list[dict], RunStore]:
        store = RunStore(self.run_dir)
        return store.read_records(), store

    def export_json(self) -> str:
        """All notes as JSON, each with its images' index, id, path and absolute path."""
        records, store = self._image_info()
        notes = []
        for note, scope, indices in self._export_entries():
            entry = dict(note)
            entry["scope"] = scope
            entry["image_files"] = [_image_row(records, store, i) for i in indices]
            notes.append(entry)
        return json.dumps({"run_id": self.run_dir.name, "notes": notes}, indent=1)

    def export_csv(self) -> str:
        """One row per (note, image); a note with no image gets one row with empty image fields."""
        records, store = self._image_info()
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=EXPORT_FIELDS, lineterminator="\n")
        writer.writeheader()
        for note, scope, indices in self._export_entries():
            base = {"note_id": note["id"], "created": note.get("created", ""),
                    "author": note.get("author", ""), "tag": note.get("tag", ""), "text": note.get("text", ""),
                    "cell": "" if note.get("cell") is None else note["cell"],
                    "dims": " ".join(str(k) for k in note.get("dims") or ()), "scope": scope}
            if not indices:
                writer.writerow(base)
            for i in indices:
                info = _image_row(records, store, i)
                writer.writerow({**base, "image_index": i, "image_id": info["id"],
                                 "image_path": info["path"], "abs_path": info["abs_path"],
                                 "label": info["label"], "pred": info["pred"]})
        return buf.getvalue()


def _image_row(records: list[dict], store: RunStore, index: int) -> dict:
    if not 0 <= index < len(records):
        return {"index": index, "id": "", "path": "", "abs_path": "", "label": "", "pred": ""}
    r = records[index]
    try:
        abs_path = str(store.image_path(index))
    except (PathRefused, ArtifactError):  # a record outside the data root is not resolved
        abs_path = ""
    return {"index": index, "id": r.get("id", ""), "path": r.get("path", ""), "abs_path": abs_path,
            "label": r.get("label", ""), "pred": r.get("pred", "")}
