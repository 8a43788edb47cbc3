"""``python -m pipeline findings RUN [--pdf OUT.pdf] [--html OUT.html]``: write a run's findings
sheet (its notes with their evidence, :mod:`pipeline.report.findings`) as a PDF figure and/or an
HTML page. Only kept maps and concepts are shown; nothing is computed.
"""
from __future__ import annotations

from pathlib import Path

from pipeline.report.findings import findings_html
from pipeline.report.findings_pdf import findings_pdf
from pipeline.store.run_store import atomic_write_bytes


def write_findings(run_dir: Path, cache_root: Path, pdf: Path | None = None, html: Path | None = None) -> list[Path]:
    """Write the sheet of ``run_dir`` to ``pdf`` and/or ``html``; returns the files written.

    Raises
    ------
    ValueError
        Neither output was asked for.
    FileNotFoundError
        The PDF's fonts are missing (the message names them).
    """
    if pdf is None and html is None:
        raise ValueError("say where to write the findings sheet: --pdf OUT.pdf and/or --html OUT.html")
    written = []
    if pdf is not None:
        atomic_write_bytes(pdf, findings_pdf(run_dir, cache_root))
        written.append(Path(pdf))
    if html is not None:
        atomic_write_bytes(html, findings_html(run_dir, cache_root).encode("utf-8"))
        written.append(Path(html))
    return written
