"""``python -m pipeline atlas RUN``: the run's dimension atlas as text (or ``--json``), computed
once and kept (:func:`pipeline.explain.atlas_jobs.get_atlas`), with a progress bar per stage."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TextIO

from tqdm import tqdm

from pipeline.explain.atlas import atlas_lines
from pipeline.explain.atlas_jobs import get_atlas


def write_atlas(run_dir: Path, n_images: int | None = None, as_json: bool = False, recompute: bool = False,
                out: TextIO | None = None) -> dict:
    """Compute (or read) the atlas of ``run_dir`` and print it to ``out`` (default stdout)."""
    out = out or sys.stdout
    bars: dict[str, tqdm] = {}

    def progress(done: int, total: int, stage: str) -> None:
        bar = bars.get(stage)
        if bar is None:
            for other in bars.values():
                other.close()
            bar = bars[stage] = tqdm(total=max(total, 1), desc=stage, unit="it", dynamic_ncols=True,
                                     file=sys.stderr)
        bar.update(max(0, min(done, bar.total) - bar.n))

    try:
        atlas = get_atlas(run_dir, progress, n_images=n_images, recompute=recompute)
    finally:
        for bar in bars.values():
            bar.close()
    if as_json:
        print(json.dumps(atlas, indent=1), file=out)
    else:
        for line in atlas_lines(atlas):
            print(line, file=out)
    return atlas


__all__ = ["write_atlas"]
