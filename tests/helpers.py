"""Small helpers shared by test modules (not fixtures: each module picks its own scope)."""
from __future__ import annotations

from pipeline.model.torch_threads import torch_threads  # noqa: F401  (re-exported for the tests)


def noise_pngs(folder, n: int, seed: int = 0, size: int = 64) -> list:
    """``n`` PNGs of uniform noise under ``folder`` (distinct bytes, so distinct cache keys)."""
    from pathlib import Path

    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        path = Path(folder) / f"{i}.png"
        Image.fromarray((rng.random((size, size, 3)) * 255).astype(np.uint8)).save(path)
        paths.append(path)
    return paths
