"""Scale of the stages after embedding: head training + cells/layout on large synthetic data.

Prints wall time and peak memory (resident set of a fresh process per case) for
(a) cells + 2-D layout of N synthetic 16-d points (target: 1,000,000 points in < 3 min, < 4 GB);
(b) projection transform + head training + prediction + cells for N 256-d feature rows given the
    embeddings (target: 100,000 images in < 10 min on 2 cores).
Usage: python bench/scale.py [--cells 1000000] [--images 100000] [--quick]
(the targets hold for the default sizes; ``--quick`` sizes print no verdict)
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

if not __package__:  # started as `python bench/NAME.py`: the repository root on sys.path
    import _path  # noqa: F401

from bench._options import parse_args  # noqa: E402

TARGET_CELLS, TARGET_IMAGES = 1_000_000, 100_000  # the sizes the targets are set for


def _synthetic(n, d, seed=0):
    import numpy as np
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(200, d)).astype(np.float32) * 3
    label = rng.integers(0, 2, n)
    x = centers[rng.integers(0, 200, n)] + rng.normal(size=(n, d)).astype(np.float32)
    x[:, 0] += (label * 2 - 1) * 1.5
    return x, label


def case_cells(n: int) -> dict:
    import numpy as np
    from pipeline.represent.cells import build_cells
    z, label = _synthetic(n, 16)
    w = np.zeros(16)
    w[0] = 1.0
    t = time.perf_counter()
    cell_of, cells = build_cells(z, z[:, 0] * 2.0, label, w)
    return {"case": "cells", "n": n, "n_cells": cells["n_cells"], "seconds": time.perf_counter() - t}


def case_head(n: int) -> dict:
    import numpy as np
    from pipeline.represent.cells import build_cells
    from pipeline.model.head import DistilledHead
    from pipeline.model.projection import VisionOnlyProjection
    from pipeline.data.splits import assign_splits
    emb, label = _synthetic(n, 512)
    t0 = time.perf_counter()
    proj = VisionOnlyProjection(epochs=1).fit(emb[:2000], emb[:2000] + 0.1, emb[2000:4000])
    feats = proj.transform(emb)
    t1 = time.perf_counter()
    split = assign_splits(label, [""] * n, [""] * n, [""] * n, 0.3, 0)
    tr = np.flatnonzero(split == "train")
    head = DistilledHead(max_epochs=100, patience=5).fit(feats[tr[:-5000]], label[tr[:-5000]],
                                                         feats[tr[-5000:]], label[tr[-5000:]])
    z, logit = head.transform(feats)
    t2 = time.perf_counter()
    build_cells(z, logit, label, head.module_.classifier.weight.detach().numpy())
    t3 = time.perf_counter()
    return {"case": "head", "n": n, "projection_s": t1 - t0, "head_s": t2 - t1, "head_epochs": head.epochs_,
            "cells_s": t3 - t2, "seconds": t3 - t0}


def _child(case: str, n: int) -> None:
    out = {"cells": case_cells, "head": case_head}[case](n)
    out["peak_rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2
    print(json.dumps(out))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cells", type=int, default=TARGET_CELLS, help="16-d points for cells + layout")
    ap.add_argument("--images", type=int, default=TARGET_IMAGES, help="embeddings for projection + head")
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parse_args(ap, quick={"cells": 100_000, "images": 20_000})
    if args.child:
        _child(args.child[0], int(args.child[1]))
        return
    for case, n, limit_s, limit_gb, target_n in (("cells", args.cells, 180, 4.0, TARGET_CELLS),
                                                 ("head", args.images, 600, None, TARGET_IMAGES)):
        res = subprocess.run([sys.executable, __file__, "--child", case, str(n)], capture_output=True, text=True)
        if res.returncode:
            print(res.stderr[-2000:])
            continue
        r = json.loads(res.stdout.strip().splitlines()[-1])
        verdict = "OK" if r["seconds"] <= limit_s and (limit_gb is None or r["peak_rss_gb"] <= limit_gb) else "OVER"
        if n != target_n:
            verdict = f"no verdict (the target is for n={target_n:,})"
        print(f"{case:>6} n={n:>9,}: {r['seconds']:7.1f} s (target {limit_s} s), peak RSS "
              f"{r['peak_rss_gb']:.2f} GB{f' (target {limit_gb} GB)' if limit_gb else ''} -> {verdict}   {r}")


if __name__ == "__main__":
    main()
