"""The findings sheet as a PDF figure (A4 portrait), laid out from the same
:class:`pipeline.report.evidence.Sheet` as the HTML page: title, run facts, encoder, metrics and
checks, then per note its tag, text and target, and its images as the page shows them (picture
framed green / red / grey for a right / wrong / unlabelled prediction, label and prediction
badges, the signed aggregate map, the picked dimensions' maps with their contributions), further
images as thumbnails, and a cell's concept patches; then the run's dimension atlas when it is built.

Drawn with ``fpdf2`` in DejaVu Sans (any Unicode text of a note prints); the fonts are embedded,
so the file is the same on every machine.
"""
from __future__ import annotations

from pathlib import Path

from fpdf import FPDF
from PIL import Image

from pipeline.explain.overlays import FAKE_RGB, REAL_RGB
from pipeline.report.evidence import NO_MAPS, Sheet, SheetAtlas, SheetImage, SheetNote, aggregate_overlay, \
    build_sheet, dimension_overlay

FONT_DIR = Path("/usr/share/fonts/truetype/dejavu")
FONTS = {"": "DejaVuSans.ttf", "B": "DejaVuSans-Bold.ttf"}
BIG, SMALL, THUMB, PATCH = 30.0, 19.0, 16.0, 12.0  # mm: picture / aggregate, a dimension, a thumbnail, a patch
CAPTION = 2.6  # mm per caption line
GAP = 2.0
FRAMES = {"right": (44, 160, 44), "wrong": (214, 39, 40), "no label": (140, 149, 159)}
BADGES = {"real": REAL_RGB, "fake": FAKE_RGB, "unlabelled": (140, 149, 159)}
PIXELS = 240  # a picture is resampled to this many pixels a side (about 200 dpi at 30 mm)


def _fonts_or_fail(font_dir: Path) -> dict[str, Path]:
    paths = {style: font_dir / name for style, name in FONTS.items()}
    missing = [str(p) for p in paths.values() if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"the findings PDF needs the DejaVu fonts, missing: {', '.join(missing)} "
                                f"(install the fonts-dejavu-core package)")
    return paths


class _Figure:
    """A flowing layout on an A4 page: blocks placed left to right, wrapped, new pages as needed."""

    def __init__(self, font_dir: Path):
        self.pdf = FPDF(orientation="P", unit="mm", format="A4")
        self.pdf.set_auto_page_break(False)
        self.pdf.set_margins(12, 12, 12)
        for style, path in _fonts_or_fail(font_dir).items():
            self.pdf.add_font("DejaVu", style, str(path))
        self.pdf.add_page()
        # the cursor: the top of the current row of blocks, its left edge and height (drawing
        # captions moves fpdf's own position, so the layout keeps its own)
        self.x, self.y, self.row_h = self.pdf.l_margin, self.pdf.t_margin, 0.0
        self.n_images = 0

    @property
    def right(self) -> float:
        return self.pdf.w - self.pdf.r_margin

    def _new_page(self) -> None:
        self.pdf.add_page()
        self.x, self.y, self.row_h = self.pdf.l_margin, self.pdf.t_margin, 0.0

    def room(self, h: float) -> None:
        """Start a new page unless ``h`` mm still fit below the cursor."""
        self.newline()
        if self.y + h > self.pdf.h - self.pdf.b_margin:
            self._new_page()

    def text(self, text: str, size: float = 8, style: str = "", colour=(31, 35, 40), fill=None) -> None:
        """A paragraph across the page, below the current row."""
        self.room(size * 0.5)
        self.pdf.set_font("DejaVu", style, size)
        self.pdf.set_text_color(*colour)
        if fill is not None:
            self.pdf.set_fill_color(*fill)
        self.pdf.set_xy(self.pdf.l_margin, self.y)
        self.pdf.multi_cell(self.right - self.pdf.l_margin, size * 0.45, text, fill=fill is not None,
                            new_x="LMARGIN", new_y="NEXT")
        self.y = self.pdf.get_y()

    def skip(self, h: float) -> None:
        self.newline()
        self.y += h

    def newline(self) -> None:
        """End the current row of blocks."""
        if self.row_h:
            self.y += self.row_h + GAP
        self.x, self.row_h = self.pdf.l_margin, 0.0

    def block(self, w: float, h: float) -> tuple[float, float]:
        """Top-left corner of the next ``w`` x ``h`` block (wrapping to a new row or page)."""
        if self.x + w > self.right + 0.01 and self.x > self.pdf.l_margin:
            self.newline()
        if self.y + h > self.pdf.h - self.pdf.b_margin:
            self._new_page()
        x, y = self.x, self.y
        self.x += w + GAP
        self.row_h = max(self.row_h, h)
        return x, y

    def image(self, im: Image.Image, x: float, y: float, size: float, frame=None) -> None:
        self.pdf.image(im.convert("RGB").resize((PIXELS, PIXELS), Image.Resampling.BILINEAR), x=x, y=y,
                       w=size, h=size)
        self.n_images += 1
        if frame is not None:
            self.pdf.set_draw_color(*frame)
            self.pdf.set_line_width(0.7)
            self.pdf.rect(x, y, size, size)

    def caption(self, x: float, y: float, lines: list[str], width: float, colour=(31, 35, 40)) -> None:
        """Lines of small text, each cut to ``width`` (with an ellipsis) so that neighbours never overlap."""
        self.pdf.set_font("DejaVu", "", 5.6)
        self.pdf.set_text_color(*colour)
        for n, line in enumerate(lines):
            while len(line) > 1 and self.pdf.get_string_width(line) > width:
                line = line[:-2] + "…"
            self.pdf.set_xy(x, y + n * CAPTION)
            self.pdf.cell(width, CAPTION, line)

    def badge(self, x: float, y: float, word: str) -> float:
        """A label badge (white on the class colour); returns its width."""
        return self.badge_colour(x, y, word, BADGES.get(word, BADGES["unlabelled"]))

    def badge_colour(self, x: float, y: float, word: str, colour) -> float:
        """A badge, white on ``colour``; returns its width."""
        self.pdf.set_font("DejaVu", "B", 5.6)
        w = self.pdf.get_string_width(word) + 1.6
        self.pdf.set_fill_color(*colour)
        self.pdf.set_text_color(255, 255, 255)
        self.pdf.set_xy(x, y)
        self.pdf.cell(w, CAPTION, word, fill=True, align="C")
        return w


def _picture(fig: _Figure, im: SheetImage, size: float) -> None:
    x, y = fig.block(size, size + 3 * CAPTION)
    picture = im.picture()
    if picture is not None:
        fig.image(picture, x, y, size, FRAMES[im.outcome])
    w = fig.badge(x, y + size + 0.4, im.label)
    said = f"predicted {im.pred} ({im.outcome})" if size >= BIG else f"→ {im.pred}"  # a thumbnail: its frame says right/wrong
    fig.caption(x + w + 0.8, y + size + 0.4, [said], size - w - 0.8)
    fig.caption(x, y + size + 0.4 + CAPTION, [f"p(fake) {im.prob_fake:.2f}", im.name], size)


def _evidence(fig: _Figure, im: SheetImage, dims: list[int]) -> None:
    dims = [k for k in dims if im.maps is not None and k < len(im.maps.contributions)]
    width = BIG * 2 + GAP + len(dims) * (SMALL + GAP)
    if fig.x + width > fig.right and fig.x > fig.pdf.l_margin:
        fig.newline()  # an image and its maps stay on one row
    _picture(fig, im, BIG)
    x, y = fig.block(BIG, BIG + 3 * CAPTION)
    if im.maps is None:
        fig.pdf.set_draw_color(140, 149, 159)
        fig.pdf.set_line_width(0.2)
        fig.pdf.rect(x, y, BIG, BIG, style="D")
        fig.pdf.set_font("DejaVu", "", 6)
        fig.pdf.set_text_color(107, 114, 128)
        fig.pdf.set_xy(x + 1.5, y + BIG / 2 - 5)
        fig.pdf.multi_cell(BIG - 3, 2.8, NO_MAPS, align="C")
        return
    fig.image(aggregate_overlay(im.maps), x, y, BIG)
    fig.caption(x, y + BIG + 0.4, ["aggregate (orange: fake,", f"blue: real), logit {im.maps.logit:+.2f}"], BIG)
    for k in dims:
        x, y = fig.block(SMALL, SMALL + 2 * CAPTION)
        fig.image(dimension_overlay(im.maps, k), x, y, SMALL)
        c = float(im.maps.contributions[k])
        fig.caption(x, y + SMALL + 0.4, [f"dimension {k}", f"contribution {c:+.2f}"], SMALL,
                    colour=(194, 87, 11) if c >= 0 else (31, 111, 180))


def _note(fig: _Figure, entry: SheetNote) -> None:
    note = entry.note
    fig.skip(2)
    fig.room(BIG + 20)  # a note's head never ends a page alone
    fig.pdf.set_draw_color(217, 221, 227)
    fig.pdf.set_line_width(0.2)
    fig.pdf.line(fig.pdf.l_margin, fig.y, fig.right, fig.y)
    fig.skip(1.5)
    tag = f"[{note['tag']}]  " if note.get("tag") else ""
    fig.text(tag + note["text"], 10, "B")
    author = f" · by {note['author']}" if note.get("author") else ""
    dims = f" · dimensions {', '.join(map(str, entry.dims))}" if entry.dims else ""
    fig.text(f"{entry.target} · {note.get('created', '')}{author}{dims}", 7, colour=(107, 114, 128))
    fig.skip(1)
    for im in entry.evidence:
        _evidence(fig, im, entry.dims)
    fig.newline()
    for im in entry.thumbnails:
        _picture(fig, im, THUMB)
    if entry.n_uncounted:
        fig.text(f"and {entry.n_uncounted} more images", 7, colour=(107, 114, 128))
    if note.get("cell") is not None:
        _concepts(fig, entry)


def _concepts(fig: _Figure, entry: SheetNote) -> None:
    cell = entry.note["cell"]
    if entry.concepts is None:
        fig.text(f"Concepts of cell {cell}: not computed yet.", 7, colour=(107, 114, 128))
        return
    shown = f" (the largest {len(entry.concepts)} of {entry.concepts_total})" \
        if entry.concepts_total > len(entry.concepts) else ""
    fig.text(f"Concepts of cell {cell}{shown}", 8, "B")
    for c in entry.concepts:
        fig.newline()
        for p in c.patches:
            x, y = fig.block(PATCH, PATCH)
            fig.image(Image.open(p), x, y, PATCH)
        x, y = fig.block(90, PATCH)
        fig.caption(x, y + PATCH / 2 - CAPTION, [f"concept {c.id + 1}: {c.size} segments from {c.n_images} images",
                                                 f"({c.segments_real} from real, {c.segments_fake} from fake images)"],
                    90)


SUBJECT_RGB, BACKGROUND_RGB = (111, 66, 193), (176, 154, 96)  # as the app: neither real/fake nor right/wrong


def _atlas(fig: _Figure, atlas: SheetAtlas | None) -> None:
    """The dimension atlas: the count line, then per dimension its verdict, a subject | background
    bar, its numbers and sentence, and the images where it is highest with its map."""
    fig.skip(2)
    fig.room(30)
    fig.text("Dimension atlas" + (f" · {atlas.n_images} held-out images" if atlas else ""), 10, "B")
    if atlas is None:
        fig.text("Not built yet (the app's atlas view, or python -m pipeline atlas RUN).", 7, colour=(107, 114, 128))
        return
    fig.text(atlas.count, 8, fill=(246, 243, 251))
    fig.text("violet: share of its relevance on the subject (DINOv2 foreground), khaki: on the background; "
             "pictures: the images where it is highest, with its map", 6.5, colour=(107, 114, 128))
    text_w = fig.right - fig.pdf.l_margin - 3 * (THUMB + GAP) - 36 - GAP
    for d in atlas.dimensions:
        e, k = d.entry, d.dim
        fig.newline()
        x, y = fig.block(36, THUMB)
        fig.pdf.set_font("DejaVu", "B", 8)
        fig.pdf.set_text_color(31, 35, 40)
        fig.pdf.set_xy(x, y)
        fig.pdf.cell(8, 4, e.get("label") or f"d{k}")
        fig.badge_colour(x + 9, y + 0.5, e["verdict"], {"subject": SUBJECT_RGB, "background": BACKGROUND_RGB}
                         .get(e["verdict"], (140, 149, 159)))
        subject = float(e["subject_share"])
        fig.pdf.set_fill_color(*SUBJECT_RGB)
        fig.pdf.rect(x, y + 5, 34 * subject, 2.2, style="F")
        fig.pdf.set_fill_color(*BACKGROUND_RGB)
        fig.pdf.rect(x + 34 * subject, y + 5, 34 * (1 - subject), 2.2, style="F")
        c = float(e["mean_contribution"])
        fig.caption(x, y + 8, [f"subject {subject:.0%} · border {float(e['border_share']):.0%}",
                               f"textured {float(e['textured_share']):.0%} · top 10% {float(e['concentration']):.0%}",
                               f"contribution {c:+.3f}"], 36)
        x, y = fig.block(text_w, THUMB)
        fig.pdf.set_font("DejaVu", "", 6.5)
        fig.pdf.set_text_color(31, 35, 40)
        fig.pdf.set_xy(x, y)
        names = e.get("names") or []
        fig.pdf.multi_cell(text_w, 2.9, e.get("sentence", "") + (
            f" · named (CLIP only): {', '.join(n['word'] for n in names)}" if names else ""))
        for im in d.highest:
            x, y = fig.block(THUMB, THUMB)
            picture = dimension_overlay(im.maps, k) if im.maps is not None else im.picture()
            if picture is not None:
                fig.image(picture, x, y, THUMB, BADGES.get(im.label, BADGES["unlabelled"]))


def _header(fig: _Figure, sheet: Sheet) -> None:
    fig.text(f"Findings · {sheet.title}", 14, "B")
    fig.text(sheet.facts, 7, colour=(107, 114, 128))
    if sheet.fallback_reason:
        fig.text(sheet.encoder, 8, fill=(255, 248, 197))
    else:
        fig.text(sheet.encoder, 7, colour=(107, 114, 128))
    if sheet.metrics:
        fig.text("   ".join(f"{what} {value}" for what, value in sheet.metrics) + "   [95% bootstrap intervals]", 7.5)
    for line in sheet.checks:
        fig.text(line, 7, colour=(154, 103, 0) if line.lstrip().startswith("!") else (31, 35, 40))


def render_pdf(sheet: Sheet, font_dir: str | Path = FONT_DIR) -> bytes:
    """The PDF figure of ``sheet``.

    Raises
    ------
    FileNotFoundError
        The DejaVu fonts are not in ``font_dir`` (the message names the files).
    """
    fig = _Figure(Path(font_dir))
    fig.pdf.set_title(f"Findings · {sheet.title}")
    _header(fig, sheet)
    if not sheet.notes:
        fig.text("No notes yet.", 8, colour=(107, 114, 128))
    for entry in sheet.notes:
        _note(fig, entry)
    _atlas(fig, sheet.atlas)
    return bytes(fig.pdf.output())


def findings_pdf(run_dir: str | Path, cache_root: str | Path, font_dir: str | Path = FONT_DIR) -> bytes:
    """The findings sheet of the run (or applied set) in ``run_dir`` as a PDF figure."""
    _fonts_or_fail(Path(font_dir))  # before reading anything
    return render_pdf(build_sheet(run_dir, cache_root), font_dir)
