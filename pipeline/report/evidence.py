"""What the findings sheet shows, gathered once for its HTML page and its PDF figure.

A :class:`Sheet` holds the run's facts (data, encoder, held-out metrics with their 95% intervals,
the data checks' verdicts) and, per note, its evidence: for the first :data:`EVIDENCE_IMAGES`
images, the picture beside its signed aggregate relevance map and the maps of the dimensions
the analyst picked (``note["dims"]``) with their contributions; further images as counted
thumbnails; for a note on a cell, the cell's concept patches. When the run's dimension atlas is
built (:mod:`pipeline.explain.atlas`), a section of it: per dimension its verdict, shares,
contribution and sentence, and the images where it is highest with that dimension's map.

Everything is read, nothing computed: maps come from the run's kept results
(:func:`pipeline.explain.results.read_kept_maps`), concepts from
:func:`pipeline.explain.results.concepts_plan` ``.result.read()``. An image whose maps are not
computed says so (the attention view computes them). Torch-free: the web process builds it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from pipeline.checks.validity import read_probe, report_lines
from pipeline.data.scan import PathRefused
from pipeline.explain._bilinear import upsample
from pipeline.explain.atlas import atlas_summaries, read_atlas
from pipeline.explain.overlays import overlay_relevance, overlay_signed
from pipeline.explain.profiles import count_sentence, evidence_count_sentence
from pipeline.explain.results import KeptMaps, concepts_plan, read_kept_maps
from pipeline.report.notes import NotesStore
from pipeline.represent.thumbnails import RunImages
from pipeline.store.run_store import AppliedStore, open_store
from pipeline.store.sealed import is_intact

EVIDENCE_IMAGES = 8  # images per note shown with their maps
MAX_THUMBNAILS = 24  # further images of a note, as thumbnails (the rest counted)
MAX_CONCEPTS = 6  # concepts of a cell shown, largest first
PATCHES_PER_CONCEPT = 4
WORDS = {0: "real", 1: "fake", -1: "unlabelled"}  # -1: an applied set's image without a label
NO_MAPS = "maps not computed yet (select it in the attention view)"
ATLAS_HIGHEST = 3  # images per dimension of the atlas shown with that dimension's map

# Why CLIP was not used, in words, from what the encoder's error says (first match wins).
_FALLBACK_CAUSES = [
    (("gaierror", "name or service not known", "temporary failure in name resolution", "urlopen",
      "connection", "network is unreachable", "timed out", "download"),
     "CLIP weights could not be downloaded (no network access)"),
    (("no module named",), "the open_clip package is not installed"),
    (("no such file", "not found", "checkpoint"), "the CLIP weights file was not found"),
]


def fallback_cause(reason: str) -> str:
    """One short phrase for the encoder's raw fallback reason (an exception's text)."""
    low = reason.lower()
    for needles, cause in _FALLBACK_CAUSES:
        if any(n in low for n in needles):
            return cause
    return "CLIP could not be loaded"


def _minmax(m: np.ndarray) -> np.ndarray:
    span = float(m.max() - m.min())
    return ((m - m.min()) / span).astype(np.float32) if span > 0 else np.zeros_like(m, np.float32)


def aggregate_overlay(maps: KeptMaps) -> Image.Image:
    """The signed aggregate map over the model input (orange: towards fake, blue: towards real),
    drawn as the attention view draws it."""
    return overlay_signed(maps.rgb, upsample(maps.aggregate_patch, maps.rgb.shape[:2]))


def dimension_overlay(maps: KeptMaps, k: int) -> Image.Image:
    """Dimension ``k``'s relevance (scaled to [0, 1]) over the model input."""
    return overlay_relevance(maps.rgb, _minmax(upsample(maps.patch_maps[k], maps.rgb.shape[:2])))


@dataclass
class SheetImage:
    """One image of a note: its label, prediction, thumbnail and (if kept) its maps."""

    index: int
    name: str
    label: str
    pred: str
    outcome: str  # right / wrong / no label
    prob_fake: float
    thumbnail: Path | None
    maps: KeptMaps | None = None

    def picture(self) -> Image.Image | None:
        """The model input when its maps are kept (the maps are aligned with it), else the thumbnail."""
        if self.maps is not None:
            return Image.fromarray(self.maps.rgb)
        return Image.open(self.thumbnail).convert("RGB") if self.thumbnail is not None else None


@dataclass
class SheetConcept:
    id: int
    size: int
    n_images: int
    segments_real: int
    segments_fake: int
    patches: list[Path]


@dataclass
class SheetNote:
    note: dict
    target: str  # "cell 3 · 2 selected images"
    dims: list[int]
    evidence: list[SheetImage]  # the first EVIDENCE_IMAGES images, with their maps if kept
    thumbnails: list[SheetImage]  # the next ones, as thumbnails
    n_uncounted: int  # images beyond those
    concepts: list[SheetConcept] | None = None  # a cell note's concepts; None: not computed
    concepts_total: int = 0


@dataclass
class SheetDimension:
    """One dimension of the run's atlas: its entry (verdict, shares, contribution, sentence) and
    the images where it is highest, with their maps when kept."""

    entry: dict
    highest: list[SheetImage]

    @property
    def dim(self) -> int:
        return int(self.entry["dim"])


@dataclass
class SheetAtlas:
    """The run's dimension atlas (:mod:`pipeline.explain.atlas`), most used dimension first."""

    n_images: int
    count: str  # "of 16 dimensions, 6 look mostly at the background of ..."
    dimensions: list[SheetDimension]
    names_available: bool


@dataclass
class Sheet:
    title: str
    facts: str
    encoder: str  # "CLIP ViT-B-32 (openai)" or the stand-in sentence
    fallback_reason: str | None  # the raw reason, for a details element
    metrics: list[tuple[str, str]]  # (what, "0.947 [0.921, 0.968]")
    checks: list[str]
    notes: list[SheetNote] = field(default_factory=list)
    atlas: SheetAtlas | None = None  # None: not built (the app's atlas view or `pipeline atlas RUN`)


def _sheet_image(records: list[dict], images: RunImages, i: int) -> SheetImage:
    r = records[i]
    label, pred = int(r["label"]), int(r["pred"])
    outcome = ("right" if label == pred else "wrong") if label >= 0 else "no label"
    try:
        thumb = images.thumbnail(i)
    except PathRefused:
        thumb = None
    return SheetImage(i, Path(r["path"]).name, WORDS[label], WORDS[pred], outcome,
                      float(r["prob_fake"]), thumb)


def note_images(note: dict, records: list[dict]) -> list[int]:
    """A note's own images, else all images of its cell."""
    if note.get("images"):
        return [int(i) for i in note["images"] if 0 <= int(i) < len(records)]
    if note.get("cell") is not None:
        return [i for i, r in enumerate(records) if r["cell"] == int(note["cell"])]
    return []


def _target(note: dict) -> str:
    parts = [f"cell {note['cell']}"] if note.get("cell") is not None else []
    if note.get("images"):
        parts.append(f"{len(note['images'])} selected images")
    return " · ".join(parts)


def _concepts(run_dir: Path, cell: int, records: list[dict]) -> tuple[list[SheetConcept] | None, int]:
    try:
        data = concepts_plan(run_dir, cell, records=records).result.read()
    except ValueError:  # a cell without images
        return None, 0
    if data is None:
        return None, 0
    out = []
    for c in data.get("concepts", [])[:MAX_CONCEPTS]:
        patches = [run_dir / p for p in c.get("patches", [])[:PATCHES_PER_CONCEPT]]
        out.append(SheetConcept(int(c["id"]), int(c["size"]), int(c["n_images"]), int(c.get("segments_real", 0)),
                                int(c.get("segments_fake", 0)), [p for p in patches if is_intact(p)]))
    return out, len(data.get("concepts", []))


def _metrics(head: dict) -> list[tuple[str, str]]:
    from pipeline.model.metrics import with_interval  # imports sklearn: only once a sheet is built,
    # never when the app starts

    if not head:
        return []
    out = [(f"held-out {name}", with_interval(head, key)) for key, name in
           (("accuracy", "accuracy"), ("ap", "AP"), ("auc", "AUC")) if key in head]
    for g, m in (head.get("per_generator") or {}).items():
        out.append((f"{g}: accuracy", with_interval(m, "accuracy")))
    return out


def _atlas(run_dir: Path, records: list[dict], images: RunImages) -> SheetAtlas | None:
    """The kept atlas of the run with its dimensions' highest images (maps where kept), or None."""
    try:
        atlas = read_atlas(run_dir)
    except (OSError, ValueError):  # e.g. an applied set without held-out images
        return None
    if atlas is None:
        return None
    dims = sorted(atlas.get("dimensions", []), key=lambda d: -abs(float(d["mean_contribution"])))
    wanted = sorted({int(e["index"]) for d in dims for e in d.get("top", [])[:ATLAS_HIGHEST]})
    kept = read_kept_maps(run_dir, wanted, records=records)
    out = []
    for d in dims:
        highest = [_sheet_image(records, images, int(e["index"])) for e in d.get("top", [])[:ATLAS_HIGHEST]]
        for im in highest:
            im.maps = kept.get(im.index)
        out.append(SheetDimension(d, highest))
    n = int(atlas.get("n_images", 0))
    summaries = atlas_summaries(atlas)
    count = count_sentence(summaries, f"the {n} held-out images of the atlas")
    if (blur := evidence_count_sentence(summaries, f"the same {n} images")) is not None:
        count = f"{count}. {blur[0].upper()}{blur[1:]}"
    return SheetAtlas(n, count, out, bool(atlas.get("names_available")))


def build_sheet(run_dir: str | Path, cache_root: str | Path) -> Sheet:
    """The findings sheet of the run (or applied set) in ``run_dir``; thumbnails from ``cache_root``."""
    run_dir = Path(run_dir)
    store = open_store(run_dir)
    meta, records = store.read_meta(), store.read_records()
    images = RunImages(run_dir, cache_root)
    data = meta.get("data") or {}
    if isinstance(store, AppliedStore):  # scored with its run's encoder; its metrics are flat
        run_meta = store.run.read_meta()
        enc, head = run_meta.get("encoder") or {}, meta.get("metrics") or {}
        title = f"applied set {store.name} of run {store.run.run_id}"
        checks = [f"(of run {store.run.run_id})"] + report_lines(run_meta, read_probe(store.run.path))
    else:
        enc, head = meta.get("encoder") or {}, (meta.get("metrics") or {}).get("head") or {}
        title = f"run {store.run_id}"
        checks = report_lines(meta, read_probe(run_dir))
    n = head.get("n")
    facts = (f"data {data.get('root', '?')} · {data.get('n_images', '?')} images ({data.get('n_real', '?')} "
             f"real, {data.get('n_fake', '?')} fake)" + (f" · metrics on {n} held-out images" if n else ""))
    reason = enc.get("fallback_reason")
    encoder = (f"The stand-in encoder {enc.get('model')} was used instead of CLIP: {fallback_cause(reason)}. "
               f"The maps describe the stand-in." if reason else f"encoder {enc.get('name')} {enc.get('model')}")
    sheet = Sheet(title, facts, encoder, reason, _metrics(head), checks)

    notes = NotesStore(run_dir).list()
    chosen = {note["id"]: note_images(note, records) for note in notes}
    wanted = sorted({i for idx in chosen.values() for i in idx[:EVIDENCE_IMAGES]})
    kept = read_kept_maps(run_dir, wanted, records=records)
    for note in notes:
        idx = chosen[note["id"]]
        evidence = [_sheet_image(records, images, i) for i in idx[:EVIDENCE_IMAGES]]
        for im in evidence:
            im.maps = kept.get(im.index)
        rest = idx[EVIDENCE_IMAGES:EVIDENCE_IMAGES + MAX_THUMBNAILS]
        entry = SheetNote(note, _target(note), [int(k) for k in note.get("dims") or []], evidence,
                          [_sheet_image(records, images, i) for i in rest],
                          max(0, len(idx) - EVIDENCE_IMAGES - MAX_THUMBNAILS))
        if note.get("cell") is not None:
            entry.concepts, entry.concepts_total = _concepts(run_dir, int(note["cell"]), records)
        sheet.notes.append(entry)
    sheet.atlas = _atlas(run_dir, records, images)
    return sheet
