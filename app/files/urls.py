"""The app's file URLs, one builder per shape, each made from the Flask rule that serves it.

:mod:`app.files.routes` registers its routes with the ``*_RULE`` strings below, and every view
builds its links with the functions, which fill those same rules in: a URL shape is written once. Run ids come from the app
(checked by ``app.state.runs.valid_run_id``) and go into the path as they are; everything else
is an integer or a fixed word (the file routes accept nothing else). ``assets/clientside.js``
builds the thumbnail URL in the browser (the cells' tooltip): it follows :data:`THUMB_RULE`.
"""
from __future__ import annotations

import re

PREFIX = "/files/"  # everything under it is a file route or a 404

THUMB_RULE = "/files/thumb/<run_id>/<int:index>.jpg"
SPRITE_RULE = "/files/sprite/<run_id>/<key>.jpg"
ATTENTION_RULE = "/files/attn/<run_id>/<int:index>/<name>.jpg"
IMAGE_RULE = "/files/image/<run_id>/<int:index>"
LAYER_RULE = "/files/layer/<run_id>/<int:index>/<name>.png"
REGION_RULE = "/files/region/<run_id>/<int:index>/<name>.png"
CONCEPT_RULE = "/files/concept/<run_id>/<int:cell>/<int:k>/<int:j>"
NOTES_RULE = "/files/notes/<run_id>.<fmt>"
NOTES_FORMATS = ("csv", "json", "html")
FINDINGS_PDF_RULE = "/files/findings/<run_id>.pdf"

_PART = re.compile(r"<(?:(\w+):)?(\w+)>")


def fill(rule: str, **values) -> str:
    """``rule`` with each ``<name>`` / ``<int:name>`` replaced by ``values[name]`` (an ``int:``
    part is written as an integer)."""
    def part(m):
        value = values[m.group(2)]
        return str(int(value)) if m.group(1) == "int" else str(value)

    return _PART.sub(part, rule)


def thumb(run_id: str, index: int) -> str:
    """Thumbnail (JPEG) of image ``index``."""
    return fill(THUMB_RULE, run_id=run_id, index=index)


def sprite(run_id: str, key: str) -> str:
    """The image view's sprite picture of a cell, by its content hash ``key``."""
    return fill(SPRITE_RULE, run_id=run_id, key=key)


def attention(run_id: str, index: int, name: str) -> str:
    """One attention map picture (``name``, e.g. ``aggregate`` or ``d03``) of image ``index``."""
    return fill(ATTENTION_RULE, run_id=run_id, index=index, name=name)


def image(run_id: str, index: int) -> str:
    """Image ``index`` at full resolution (the viewer's picture)."""
    return fill(IMAGE_RULE, run_id=run_id, index=index)


def layer(run_id: str, index: int, name: str) -> str:
    """A relevance layer (PNG, ``name`` from ``app.files.viewer_files.layer_name``) over image ``index``."""
    return fill(LAYER_RULE, run_id=run_id, index=index, name=name)


def source_region(run_id: str, index: int, name: str) -> str:
    """The region of its source photo that image ``index`` was made from (``name`` = ``source``),
    or the amplified difference between the two (``difference``): ``app.files.viewer_files.region_file``."""
    return fill(REGION_RULE, run_id=run_id, index=index, name=name)


def concept_patch(run_id: str, cell: int, k: int, j: int) -> str:
    """Patch ``j`` of concept ``k`` of ``cell``."""
    return fill(CONCEPT_RULE, run_id=run_id, cell=cell, k=k, j=j)


def notes_export(run_id: str, fmt: str) -> str:
    """The run's notes as ``csv`` or ``json`` (a download), or ``html`` (the findings sheet)."""
    if fmt not in NOTES_FORMATS:
        raise ValueError(f"no notes export as {fmt!r}")
    return fill(NOTES_RULE, run_id=run_id, fmt=fmt)


def findings_pdf(run_id: str) -> str:
    """The findings sheet as a PDF figure (``pipeline.report.findings_pdf``)."""
    return fill(FINDINGS_PDF_RULE, run_id=run_id)
