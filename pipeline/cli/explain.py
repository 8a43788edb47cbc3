"""``python -m pipeline explain`` and ``python -m pipeline concepts``: write explanations as PNGs.

``cmd_explain`` writes, per image, the 16 per-dimension overlays, the signed aggregate and a sheet
of all of them; ``cmd_concepts`` writes a cell's concepts as one PNG sheet (a row per concept, its
most central patches left to right). Both go through the run's caches (``pipeline.explain.cache``).
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable, Sequence

from PIL import Image

from pipeline.explain.cache import get_concepts, get_maps
from pipeline.explain.overlays import overlay_relevance, overlay_signed, relevance_sheet, save_png, sheet
from pipeline.store.run_store import RunStore

Progress = Callable[[int, int], None]


def cmd_explain(run_dir: Path, image_ids: Sequence[str], out_dir: Path, progress: Progress | None = None,
                on_error: Callable[[int, str], None] | None = None) -> list[Path]:
    """Write ``<out>/<image_id>/dim-KK.png`` (K = 0..15), ``aggregate.png`` and ``sheet.png``.

    Unreadable images are reported through ``on_error(index, message)`` (default: a line on
    stderr naming the file and the reason) and skipped; the others are still written.

    Raises
    ------
    ValueError
        When an id is not in the run (the message lists the unknown ids).
    """
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    records = RunStore(run_dir).read_records()
    index_of = {r["id"]: i for i, r in enumerate(records)}
    unknown = [i for i in image_ids if i not in index_of]
    if unknown:
        raise ValueError(f"image ids not in run {run_dir.name}: {', '.join(unknown)} "
                       f"(ids are the `id` column of {run_dir / 'records.csv'})")
    if on_error is None:
        def on_error(index: int, message: str) -> None:
            print(f"skipped {records[index]['id']}: {message}", file=sys.stderr)
    maps = get_maps(run_dir, [index_of[i] for i in image_ids], progress=progress, on_error=on_error)
    written = []
    for image_id in image_ids:
        m = maps.get(index_of[image_id])
        if m is None:
            continue  # unreadable; reported through on_error
        folder = out_dir / image_id
        for k in range(len(m.maps)):
            written.append(save_png(overlay_relevance(m.rgb, m.maps[k]), folder / f"dim-{k:02d}.png"))
        written.append(save_png(overlay_signed(m.rgb, m.aggregate), folder / "aggregate.png"))
        written.append(save_png(relevance_sheet(m.rgb, m.maps, m.aggregate, m.z, m.contributions,
                                                m.logit), folder / "sheet.png"))
    return written


def cmd_concepts(run_dir: Path, cell: int, out_dir: Path, progress: Progress | None = None) -> Path:
    """Write ``<out>/cell-<n>-concepts.png``: one row per concept, most central patches first."""
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    result = get_concepts(run_dir, cell, progress=progress)
    rows, captions, titles = [], [], []
    for c in result["concepts"]:
        rows.append([Image.open(run_dir / p) for p in c["patches"]])
        captions.append([f"img {s['image_index']}" for s in c["sources"]])
        top = sorted(range(len(c["profile"])), key=lambda k: -abs(c["profile"][k]))[:3]
        titles.append(f"concept {c['id']}\n{c['size']} segments\n{c['n_images']} images\n" +
                      "\n".join(f"d{k:02d} {c['profile'][k]:+.2f}" for k in top))
    return save_png(sheet(rows, captions, titles), out_dir / f"cell-{int(cell)}-concepts.png")
