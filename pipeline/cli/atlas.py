"""``python -m pipeline atlas RUN``: the run's dimension atlas as text (or ``--json``), computed
once and kept (:func:`pipeline.explain.atlas_jobs.get_atlas`)."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Callable, TextIO

from pipeline.explain.atlas import atlas_lines
from pipeline.explain.atlas_jobs import get_atlas


def write_atlas(run_dir: Path, n_images: int | None = None, as_json: bool = False, recompute: bool = False,
                progress: Callable[[str, int, int], None] | None = None, out: TextIO | None = None) -> dict:
    """Compute (or read) the atlas of ``run_dir`` and print it to ``out`` (default stdout);
    ``progress(stage, done, total)`` as the CLI's stage bars take it."""
    out = out or sys.stdout
    atlas = get_atlas(run_dir, (lambda d, t, stage: progress(stage, d, t)) if progress else None,
                      n_images=n_images, recompute=recompute)
    if as_json:
        print(json.dumps(atlas, indent=1), file=out)
    else:
        for line in atlas_lines(atlas):
            print(line, file=out)
    return atlas


__all__ = ["write_atlas"]
