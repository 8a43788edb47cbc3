"""The findings sheet: a run's notes with their evidence as one self-contained HTML page (the seed
paper's Fig. 2, "fake patterns that Ryan found"); :mod:`pipeline.report.findings_pdf` lays the
same content out as a PDF figure.

The page opens with what the figures rest on: the run, its data, its encoder (one sentence saying
the stand-in was used and why, the raw reason folded away), its held-out metrics with their 95%
intervals and the data checks' verdicts. Each note then shows its tag, text, author and target
and its evidence (:mod:`pipeline.report.evidence`): per image its picture, label, prediction and
aggregate relevance map, the maps of the dimensions the note names with their contributions,
further images as thumbnails, and a cell's concepts. The run's dimension atlas follows when it is
built: what each dimension looks at (subject or background, border, texture, concentration), its
push towards fake or real, its sentence, and the images where it is highest with its map.
Pictures are embedded as data URIs, so the file can be mailed or archived as it is.
"""
from __future__ import annotations

import base64
import html
import io
from pathlib import Path

from PIL import Image

from pipeline.report.evidence import (NO_MAPS, Sheet, SheetAtlas, SheetDimension, SheetImage, SheetNote,
                                      aggregate_overlay, build_sheet, dimension_overlay)

BIG, SMALL = 144, 96  # pixels of a picture / aggregate map, and of a dimension's map or a thumbnail
ATLAS_SIZE = 64  # pixels of an atlas example (a dimension's map over the image)

_STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; color: #1f2328; margin: 24px auto; max-width: 1200px; padding: 0 16px; }
h1 { font-size: 20px; margin: 0 0 4px; } h2 { font-size: 14px; margin: 10px 0 4px; }
.muted { color: #6b7280; font-size: 12px; }
.note { border-top: 1px solid #d9dde3; padding: 12px 0; } .tag { background: #ddf4ff; color: #0550ae;
border-radius: 10px; padding: 0 8px; font-size: 12px; margin-right: 6px; }
.text { font-size: 15px; } .images { display: flex; flex-wrap: wrap; gap: 8px; margin-top: 8px; }
.row { display: flex; flex-wrap: wrap; gap: 6px; align-items: flex-start; margin-top: 8px; }
figure { margin: 0; font-size: 11px; } figure img { display: block; box-sizing: border-box; }
figure.pic, figure.map { width: 144px; } figure.pic img, figure.map img { width: 144px; height: 144px; }
figure.dim, figure.thumb { width: 96px; } figure.dim img, figure.thumb img { width: 96px; height: 96px; }
figure.pic img, figure.thumb img { border: 3px solid; } figure.right img { border-color: #2ca02c; }
figure.wrong img { border-color: #d62728; } figure.no-label img { border-color: #8c959f; }
.evidence-grid { display: flex; flex-wrap: wrap; gap: 10px 18px; }
.evidence-grid .row { border-left: 2px solid #eaeef2; padding-left: 6px; }
.nomaps { width: 144px; height: 144px; box-sizing: border-box; border: 1px dashed #8c959f; color: #6b7280;
font-size: 12px; padding: 8px; display: flex; align-items: center; text-align: center; }
.unlabelled { background: #8c959f; } .b { color: #fff; border-radius: 3px; padding: 0 4px; }
.real { background: #1f77b4; } .fake { background: #ff7f0e; } .notice { background: #fff8c5;
border: 1px solid #d4a72c; padding: 6px 10px; border-radius: 4px; margin: 8px 0; }
.pos { color: #c2570b; } .neg { color: #1f6fb4; } table.metrics td { padding: 0 12px 0 0; }
.checks { font-size: 12px; white-space: pre-wrap; margin: 4px 0; } .warn { color: #9a6700; }
.concept { display: flex; gap: 4px; align-items: center; margin: 4px 0; font-size: 12px; }
.concept img { width: 64px; height: 64px; } .legend span.sw { display: inline-block; width: 10px; height: 10px;
margin: 0 3px 0 8px; vertical-align: middle; }
details { font-size: 12px; } code { word-break: break-all; }
.count { font-size: 14px; margin: 4px 0; padding: 4px 8px; background: #f6f3fb; border-left: 3px solid #6f42c1; }
.atlas-row { display: grid; grid-template-columns: 330px minmax(0, 1fr) 210px; gap: 10px; border-top: 1px solid #eaeef2;
padding: 4px 0; align-items: center; font-size: 12px; }
.verdict { border-radius: 9px; padding: 0 6px; color: #fff; font-size: 11px; font-weight: 600; margin-right: 6px; }
.verdict.subject { background: #6f42c1; } .verdict.background { background: #b09a60; } .verdict.mixed { background: #8c959f; }
.sb { display: flex; width: 200px; height: 9px; margin: 3px 0 2px; border: 1px solid rgba(0,0,0,.15); }
.sb .subject { background: #6f42c1; } .sb .background { background: #b09a60; }
.atlas-ex img { width: 64px; height: 64px; border: 2px solid #8c959f; margin-right: 3px; box-sizing: border-box; }
.atlas-ex img.real { border-color: #1f77b4; } .atlas-ex img.fake { border-color: #ff7f0e; }
"""


def _uri(image: Image.Image, size: int) -> str:
    buf = io.BytesIO()
    image.convert("RGB").resize((size, size), Image.Resampling.BILINEAR).save(buf, format="JPEG", quality=88)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _file_uri(path: Path) -> str:
    mime = "image/png" if path.suffix.lower() == ".png" else "image/jpeg"
    return f"data:{mime};base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _badges(im: SheetImage) -> str:
    return (f'<span class="b {im.label}">{im.label}</span> predicted {im.pred} ({im.outcome}), '
            f'p(fake) {im.prob_fake:.2f}<br>{html.escape(im.name)}')


def _picture(im: SheetImage, kind: str, size: int) -> str:
    outcome = im.outcome.replace(" ", "-")
    picture = im.picture()
    src = _uri(picture, size) if picture is not None else ""
    return (f'<figure class="{kind} {outcome}" data-index="{im.index}"><img src="{src}" '
            f'alt="{html.escape(im.name)}"><figcaption>{_badges(im)}</figcaption></figure>')


def _signed(value: float) -> str:
    return f'<span class="{"pos" if value >= 0 else "neg"}">{value:+.2f}</span>'


def _evidence_row(im: SheetImage, dims: list[int]) -> str:
    cells = [_picture(im, "pic", BIG)]
    if im.maps is None:
        cells.append(f'<div class="nomaps">{NO_MAPS}</div>')
    else:
        cells.append(f'<figure class="map" data-map="aggregate"><img src="{_uri(aggregate_overlay(im.maps), BIG)}" '
                     f'alt="aggregate map"><figcaption>aggregate, logit {_signed(im.maps.logit)} '
                     f'(&gt; 0: fake)</figcaption></figure>')
        for k in dims:
            if k < len(im.maps.contributions):
                cells.append(f'<figure class="dim" data-map="d{k:02d}"><img src="{_uri(dimension_overlay(im.maps, k), SMALL)}" '
                             f'alt="dimension {k}"><figcaption>dimension {k}, contribution<br>'
                             f'{_signed(float(im.maps.contributions[k]))}</figcaption></figure>')
    return '<div class="row evidence">' + "".join(cells) + "</div>"


def _concepts(entry: SheetNote) -> str:
    cell = entry.note["cell"]
    if entry.concepts is None:
        return (f"<div class='muted'>Concepts of cell {cell}: not computed yet (open the cell's concepts "
                f"panel).</div>")
    shown = f" (the largest {len(entry.concepts)} of {entry.concepts_total})" \
        if entry.concepts_total > len(entry.concepts) else ""
    rows = [f"<h2>Concepts of cell {cell}{shown}</h2>"]
    for c in entry.concepts:
        rows.append("<div class='concept' data-concept='%d'>" % c.id +
                    "".join(f"<img src='{_file_uri(p)}' alt='concept {c.id + 1} patch'>" for p in c.patches) +
                    f"<span>concept {c.id + 1}: {c.size} segments from {c.n_images} images "
                    f"({c.segments_real} from real, {c.segments_fake} from fake images)</span></div>")
    return "".join(rows)


def _note(entry: SheetNote) -> str:
    note = entry.note
    author = f" · by {html.escape(note['author'])}" if note.get("author") else ""
    dims = f" · dimensions {', '.join(map(str, entry.dims))}" if entry.dims else ""
    parts = ["<div class='note'>",
             f"<span class='tag'>{html.escape(note['tag'])}</span>" if note.get("tag") else "",
             f"<span class='text'>{html.escape(note['text'])}</span>",
             f"<div class='muted'>{html.escape(entry.target)} · {html.escape(note.get('created', ''))}"
             f"{author}{dims}</div>"]
    if entry.evidence:
        parts.append("<div class='evidence-grid'>" + "".join(_evidence_row(im, entry.dims) for im in entry.evidence)
                     + "</div>")
    if entry.thumbnails:
        parts.append("<div class='images'>" + "".join(_picture(im, "thumb", SMALL) for im in entry.thumbnails)
                     + "</div>")
    if entry.n_uncounted:
        parts.append(f"<div class='muted'>and {entry.n_uncounted} more images</div>")
    if note.get("cell") is not None:
        parts.append(_concepts(entry))
    parts.append("</div>")
    return "".join(parts)


def _header(sheet: Sheet) -> list[str]:
    out = [f"<h1>Findings · {html.escape(sheet.title)}</h1>", f"<div class='muted'>{html.escape(sheet.facts)}</div>"]
    if sheet.fallback_reason:
        out.append(f"<div class='notice encoder'>{html.escape(sheet.encoder)}<details><summary>the encoder's "
                   f"full reason</summary><code>{html.escape(sheet.fallback_reason)}</code></details></div>")
    else:
        out.append(f"<div class='muted encoder'>{html.escape(sheet.encoder)}</div>")
    if sheet.metrics:
        out.append("<table class='metrics'>" + "".join(
            f"<tr><td>{html.escape(what)}</td><td>{html.escape(value)}</td></tr>" for what, value in sheet.metrics)
            + "</table><div class='muted'>[95% bootstrap intervals]</div>")
    out.append("<div class='checks'>" + "\n".join(
        f"<span class='{'warn' if line.lstrip().startswith('!') else ''}'>{html.escape(line)}</span>"
        for line in sheet.checks) + "</div>")
    out.append("<div class='legend muted'>maps: aggregate<span class='sw' style='background:#ff7f0e'></span>"
               "towards fake<span class='sw' style='background:#1f77b4'></span>towards real · dimension maps: "
               "bright = relevant to that dimension; its contribution to the logit beside it (&gt; 0: fake)</div>")
    return out


def _atlas_dimension(d: SheetDimension) -> str:
    e, k = d.entry, d.dim
    subject = float(e["subject_share"])
    bar = (f"<span class='sb' title='subject {subject:.0%} · background {1 - subject:.0%}'>"
           f"<span class='subject' style='width:{100 * subject:.0f}%'></span>"
           f"<span class='background' style='width:{100 * (1 - subject):.0f}%'></span></span>")
    pictures = []
    for im in d.highest:
        picture = dimension_overlay(im.maps, k) if im.maps is not None else im.picture()
        src = _uri(picture, ATLAS_SIZE) if picture is not None else ""
        pictures.append(f"<img class='{im.label}' src='{src}' alt='d{k} highest: {html.escape(im.name)}' "
                        f"title='{html.escape(im.name)} ({im.label})'>")
    names = e.get("names") or []
    named = (f"<div class='muted'>named (CLIP only): {html.escape(', '.join(n['word'] for n in names))}</div>"
             if names else "")
    return (f"<div class='atlas-row' data-dim='{k}' data-verdict='{e['verdict']}'>"
            f"<div class='atlas-dim'><b>{html.escape(e.get('label') or f'd{k}')}</b> "
            f"<span class='verdict {e['verdict']}'>{e['verdict']}</span>{bar}"
            f"<div class='muted'>subject {subject:.0%} · border {float(e['border_share']):.0%} · textured "
            f"{float(e['textured_share']):.0%} · top 10% {float(e['concentration']):.0%} · contribution "
            f"{_signed(float(e['mean_contribution']))}</div></div>"
            f"<div class='atlas-text'>{html.escape(e.get('sentence', ''))}{named}</div>"
            f"<div class='atlas-ex'>{''.join(pictures)}</div></div>")


def _atlas(atlas: SheetAtlas | None) -> list[str]:
    """The dimension atlas section: the count line, then a row per dimension, most used first."""
    if atlas is None:
        return ["<h2>Dimension atlas</h2><div class='muted'>Not built yet (the app's atlas view, or "
                "<code>python -m pipeline atlas RUN</code>).</div>"]
    return [f"<h2>Dimension atlas · {atlas.n_images} held-out images</h2>",
            f"<div class='count'>{html.escape(atlas.count)}</div>",
            "<div class='muted'>violet: share of a dimension's relevance on the subject (the foreground of "
            "DINOv2's patch features), khaki: on the background; pictures: the images where it is highest, "
            "with its map (frame: blue real, orange fake)</div>",
            "<div class='atlas'>" + "".join(_atlas_dimension(d) for d in atlas.dimensions) + "</div>"]


def render_html(sheet: Sheet) -> str:
    """The page of ``sheet``."""
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>Findings · {html.escape(sheet.title)}"
             f"</title><style>{_STYLE}</style></head><body>"] + _header(sheet)
    if not sheet.notes:
        parts.append("<p class='muted'>No notes yet.</p>")
    parts += [_note(entry) for entry in sheet.notes]
    parts += _atlas(sheet.atlas)
    parts.append("</body></html>")
    return "\n".join(parts)


def findings_html(run_dir: str | Path, cache_root: str | Path) -> str:
    """The findings sheet of the run (or applied set) in ``run_dir`` (thumbnails from ``cache_root``)."""
    return render_html(build_sheet(run_dir, cache_root))
