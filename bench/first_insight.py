"""Time to the first insight on a fresh run, as the app's background jobs do it (callback level).

On a run made with the stand-in encoder (the demo run by default, built and run when missing), with
empty explanation caches: (1) loading the run's models (once per job process); (2) the attention
job for 3 images of one cell, the moment all its maps are shown and when each image's row appeared
(the deletion check is its own job afterwards, so no selection waits for it; timed too); (3) the concepts of a cell from a sample of
``concepts.max_images`` (64) images. Targets: (2) < 10 s after (1), (3) < 25 s.

Steps (1)-(3) run once per precision of ``--precisions`` in the same bench run (default ``fp32`` and
``auto``, the default: what ``encoder.precision: auto`` chooses on this CPU now, for maps and for
the concepts' patch embeddings), each on its own copy of the run; the CPU's flags and the load
average at the start and end of each leg are printed, with the ratios to the first leg.

    python bench/first_insight.py               # the demo run (stand-in), built if missing
    python bench/first_insight.py --run RUN_DIR
    python bench/first_insight.py --precisions fp32,bf16,auto
"""
from __future__ import annotations

if not __package__:  # started as `python bench/first_insight.py`
    import _path  # noqa: F401

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench._bf16_agreement import cpu_flags_line
from bench._demo_run import demo_run
from bench._options import parse_args
from pipeline.config import REPO_ROOT, from_dict


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", default=None, help="a run folder (default: the demo run)")
    ap.add_argument("--images", type=int, default=3, help="images selected in the attention view")
    ap.add_argument("--concept-images", type=int, default=64, help="images of the concepts' sample")
    ap.add_argument("--precisions", default="fp32,auto", help="comma list of legs; the first is the baseline")
    args = parse_args(ap, {"images": 2, "concept_images": 16}, argv)

    source = Path(args.run) if args.run else demo_run()
    work = Path(tempfile.mkdtemp(prefix="faxplainer-insight-"))
    print(cpu_flags_line())
    try:
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import pipeline.explain.cache"], cwd=REPO_ROOT, check=True)
        print(f"(0) a fresh process imports the explanation stack (torch, timm, the pipeline): "
              f"{time.perf_counter() - t0:.1f} s (what a local job no longer pays: `python -m app` "
              "imports it once before serving)")
        legs = {p: leg(source, work / p, p, args) for p in args.precisions.split(",")}
        base_name, base = next(iter(legs.items()))
        for name, t in list(legs.items())[1:]:
            print(f"{base_name} / {name}: maps of {args.images} images {base['maps'] / t['maps']:.2f}x, "
                  f"concepts {base['concepts'] / t['concepts']:.2f}x")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


def leg(source: Path, work: Path, precision: str, args) -> dict:
    """Steps (1)-(3) on a fresh copy of the run whose encoder runs at ``precision``."""
    from app.state.context import AppContext
    from app.views import attention, concepts
    from pipeline.model import encoders
    from pipeline.model import run_models as models
    from pipeline.model.encoders.precision import choose_precision
    from pipeline.store.run_store import RunStore

    # a copy under its own name: its explanation caches (on disk and in this process) start empty
    run = work / "runs" / f"{source.name}-{precision}"
    shutil.copytree(source, run, ignore=shutil.ignore_patterns("relevance", "concepts", "checks", ".locks"))
    store = RunStore(run)
    meta = store.read_meta()
    meta["run_id"] = run.name
    meta["config"]["encoder"]["precision"] = precision
    meta["config"]["concepts"]["max_images"] = args.concept_images
    extra = meta["encoder"].setdefault("extra", {})
    # today's choice for this leg, not the one recorded when the run was made
    key = encoders.DinoV2StandinEncoder.agreement_key if meta["encoder"]["name"] == "dinov2_standin" else None
    choice = choose_precision(precision, "cpu", key)
    extra.update(precision=choice.embed, maps_precision=choice.maps)
    store.write_meta(meta)
    shared = from_dict({}).cache_path
    (work / "cache").mkdir(parents=True, exist_ok=True)
    os.symlink(shared / "weights", work / "cache" / "weights")  # converted and int8 weights
    # the environment's folders win over the config's: this leg reads its own copy of the run,
    # and its app caches start empty
    os.environ["FAXPLAINER_CACHE_DIR"], os.environ["FAXPLAINER_RUNS_DIR"] = str(work / "cache"), str(work / "runs")
    cfg = from_dict({"runs_dir": str(work / "runs"), "cache_dir": str(work / "cache")})
    ctx = AppContext(cfg)
    view = ctx.run(run.name)
    # a job process starts without the encoder that an earlier leg (or the demo run) loaded
    encoders._shared.clear()
    models._load.cache_clear()
    print(f"\n== {precision}: run {run.name}, {view.n_images} images, encoder {view.meta['encoder']['name']} "
          f"(embedding {extra.get('precision', '?')}, maps {extra.get('maps_precision', '?')}), "
          f"load average at start {os.getloadavg()[0]:.2f}")
    t0 = time.perf_counter()
    loaded = models.load_run_models(run)
    print(f"(1) models loaded: {time.perf_counter() - t0:.1f} s (once per job process); encoder "
          f"embedding {loaded.encoder.precision}, maps {loaded.encoder.maps_precision}")

    cell = max(view.cell_ids(), key=lambda c: len(view.cell_members(c)))
    chosen = view.cell_members(cell).tolist()[:args.images]
    request = attention.JOB.render(ctx, {"ids": chosen}, run.name, cell)[-1]
    shown: list[tuple[float, object]] = []  # (time, partial value) of each image drawn

    def progress(value):  # (bar..., partial): each image drawn pushes a new partial object
        partial = value[-1] if isinstance(value, (tuple, list)) and value else None
        if partial is not None and (not shown or partial is not shown[-1][1]):
            shown.append((time.perf_counter() - t0, partial))
    t0 = time.perf_counter()
    content, ready, message = attention.JOB.prepare(ctx, request, progress)
    t_maps = time.perf_counter() - t0
    assert content and ready, message
    print(f"(2) maps of {len(chosen)} images shown: {t_maps:.1f} s   (target < 10 s); each image's "
          f"maps appeared at {', '.join(f'{t:.1f}' for t, _ in shown)} s")
    check = attention.CHECK.render(ctx, ready, run.name, None)[-1]
    if isinstance(check, dict):
        t0 = time.perf_counter()
        attention.CHECK.prepare(ctx, check, lambda _v: None)
        print(f"    then the run's deletion check, its own job: {time.perf_counter() - t0:.1f} s")
    else:
        print(f"    the deletion check did not start from this selection ({ready!r:.80})")

    t0 = time.perf_counter()
    request = concepts.JOB.render(ctx, "concepts", cell, run.name)[-1]
    content, message = concepts.JOB.prepare(ctx, request, lambda _v: None)
    t_concepts = time.perf_counter() - t0
    assert content, message
    print(f"(3) concepts of cell {cell} ({len(view.cell_members(cell))} images, a sample of "
          f"{min(args.concept_images, len(view.cell_members(cell)))}): {t_concepts:.1f} s   (target < 25 s)")
    print(f"load average at end {os.getloadavg()[0]:.2f}")
    return {"maps": t_maps, "concepts": t_concepts}


if __name__ == "__main__":
    raise SystemExit(main())
