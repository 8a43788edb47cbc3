"""Command line: ``python -m pipeline {run,apply,matrix,info,probe,compare,demo-data,explain,concepts,atlas,findings} ...``."""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from tqdm import tqdm

from pipeline.config import REPO_ROOT, load_config, with_data
from pipeline.store.diskcheck import StorageError
from pipeline.store.run_store import ArtifactError


class StageBars:
    """One tqdm bar per pipeline stage, fed by the ``progress(stage, done, total)`` callback."""

    def __init__(self):
        self.bars: dict[str, tqdm] = {}

    def __call__(self, stage: str, done: int, total: int) -> None:
        bar = self.bars.get(stage)
        if bar is None:
            for other in self.bars.values():
                other.close()
            bar = self.bars[stage] = tqdm(total=max(total, 1), desc=f"{stage:>10}", unit="it",
                                          dynamic_ncols=True, file=sys.stderr)
        if total and bar.total != total:
            bar.total = total
            bar.refresh()
        bar.update(max(0, min(done, bar.total) - bar.n))  # tqdm throttles the redraws

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()


def _config_from_args(args):
    cfg = load_config(args.config, list(args.set or []))
    if getattr(args, "data", None):
        cfg = with_data(cfg, args.data, cfg.data.categories, cfg.data.generators)
    return cfg


def print_metrics(meta: dict, out=None, probe: dict | None = None) -> None:
    from pipeline.model.metrics import with_interval
    from pipeline.model.probe import fidelity_words
    from pipeline.stage_times import timing_words

    out = out or sys.stdout
    enc = meta["encoder"]
    print(f"run {meta['run_id']}  ({meta['data']['n_images']} images: {meta['data'].get('n_real')} real, "
          f"{meta['data'].get('n_fake')} fake; {meta['data']['n_bad']} skipped)", file=out)
    print(f"data     {meta['data']['root']}", file=out)
    print(f"encoder  {enc['name']} {enc['model']} ({enc['weights']})", file=out)
    if enc.get("fallback_reason"):
        print(f"         NOTE: CLIP was replaced by the offline stand-in: {enc['fallback_reason']}", file=out)
    h = meta["metrics"]["head"]
    print(f"held-out accuracy {with_interval(h, 'accuracy')}  AP {with_interval(h, 'ap')}  "
          f"AUC {with_interval(h, 'auc')}  (n={h['n']}: {h['n_real']} real, {h['n_fake']} fake"
          f"{'; [95% bootstrap intervals]' if h.get('ci95') else ''})", file=out)
    for g, m in h.get("per_generator", {}).items():
        print(f"  {g:<24} acc {with_interval(m, 'accuracy')}  AP {with_interval(m, 'ap')}  "
              f"AUC {with_interval(m, 'auc')}  (fake acc {m['fake_accuracy']:.3f}, n={m['n']})", file=out)
    fidelity = fidelity_words(h)
    print(f"fidelity: {fidelity[0]}{'  WEAKER than its embedding allows' if fidelity[1] else ''}"
          if fidelity else "fidelity: not measured (run made before the reference probe)", file=out)
    o = h["orthogonality"]
    print(f"16-d orthogonality: max |cos| {o['max_abs_cosine']:.3f}, mean |cos| {o['mean_abs_cosine']:.3f}",
          file=out)
    p = meta["metrics"]["projection"]
    print(f"projection: cos(image, image+word) {p['cosine_before']:.3f} -> {p['cosine_after']:.3f}; "
          f"word probe {p['word_probe_before']:.3f} -> {p['word_probe_after']:.3f} "
          f"(chance {p['word_probe_chance']:.3f})", file=out)
    if (took := timing_words(meta.get("timing"))) is not None:
        print(f"run time: {took}", file=out)
    from pipeline.checks.validity import report_lines

    for line in report_lines(meta, probe):
        print(line, file=out)
    for b in meta.get("bad_files", [])[:20]:
        print(f"  skipped {b['path']}: {b['reason']}", file=out)
    if len(meta.get("bad_files", [])) > 20:
        print(f"  ... and {len(meta['bad_files']) - 20} more (see meta.json)", file=out)


def cmd_run(args) -> int:
    from pipeline.runner import run_pipeline
    cfg = _config_from_args(args)
    if cfg.data.root is None and cfg.data.manifest is None:
        from pipeline.data.demo.builtin import ensure_demo_config
        cfg = ensure_demo_config(cfg, log=lambda m: print(m, file=sys.stderr))
    bars = StageBars()
    try:
        store = run_pipeline(cfg, progress=bars)
    finally:
        bars.close()
    print_metrics(store.read_meta())
    print(f"run folder: {store.path}")
    return 0


def _resolve_run(run: str, config: str | None) -> Path:
    p = Path(run)
    if (p / "meta.json").exists():
        return p
    cfg = load_config(config)
    cand = cfg.runs_path / run
    if (cand / "meta.json").exists():
        return cand
    raise SystemExit(f"no run {run!r}: neither {p} nor {cand} holds a meta.json")


def cmd_info(args) -> int:
    from pipeline.cli.generalise import print_applied, print_applied_sets, print_matrix_if_kept
    from pipeline.store.run_store import RunStore
    from pipeline.checks.validity import read_probe
    run = RunStore(_resolve_run(args.run, args.config))
    if args.applied:
        applied = run.applied(args.applied)
        if args.json:
            print(json.dumps(applied.read_meta()["metrics"], indent=1))
        else:
            print_applied(applied, all_cells=args.all_cells)
        return 0
    meta = run.read_meta()
    if args.json:
        print(json.dumps({**meta["metrics"], "checks": meta.get("checks"),
                          "bias_probe": read_probe(run.path)}, indent=1))
    else:
        print_metrics(meta, probe=read_probe(run.path))
        print_applied_sets(run)
        print_matrix_if_kept(run)
    return 0


def cmd_probe(args) -> int:
    from pipeline.store.run_store import RunStore
    from pipeline.checks.validity import probe_lines, run_bias_probe
    run = _resolve_run(args.run, args.config)
    bar = tqdm(total=1, desc="bias probe", unit="img", dynamic_ncols=True, file=sys.stderr)

    def progress(done, total):
        bar.total = total
        bar.update(done - bar.n)

    try:
        probe = run_bias_probe(run, n_images=args.images, progress=progress)
    finally:
        bar.close()
    print(f"run {RunStore(run).run_id}")
    for line in probe_lines(probe):
        print(line)
    for b in probe.get("bad", [])[:10]:
        print(f"  skipped image {b['index']}: {b['reason']}")
    return 0


def cmd_compare(args) -> int:
    from pipeline.store.run_store import RunStore
    from pipeline.checks.validity import compare_lines
    metas = [RunStore(_resolve_run(r, args.config)).read_meta() for r in (args.run_a, args.run_b)]
    for line in compare_lines(*metas):
        print(line)
    return 0


def cmd_apply(args) -> int:
    from pipeline.generalise.apply import apply_run
    from pipeline.cli.generalise import print_applied
    bars = StageBars()
    try:
        applied = apply_run(_resolve_run(args.run, args.config), args.data, name=args.name, progress=bars)
    finally:
        bars.close()
    print_applied(applied)
    print(f"applied set folder: {applied.path}")
    return 0


def cmd_matrix(args) -> int:
    from pipeline.generalise.run_matrix import matrix_text, run_matrix
    bars = StageBars()
    try:
        matrix = run_matrix(_resolve_run(args.run, args.config), recompute=args.recompute,
                            progress=lambda d, t: bars("heads", d, t))
    finally:
        bars.close()
    print(json.dumps(matrix, indent=1) if args.json else matrix_text(matrix))
    return 0


def cmd_demo_data(args) -> int:
    from pipeline.data.demo.build import build_demo_dataset
    cfg = load_config(args.config)
    bars = StageBars()
    try:
        summary = build_demo_dataset(Path(args.out), size=args.size, real_dirs=[Path(d) for d in args.real_dir],
                                     seed=args.seed, cache_dir=cfg.cache_path, progress=bars,
                                     debian=not args.no_debian, workers=args.workers,
                                     log=lambda m: tqdm.write(m, file=sys.stderr))
    finally:
        bars.close()
    print(json.dumps(summary, indent=1, default=str))
    return 0


def cmd_explain(args) -> int:
    from pipeline.cli.explain import cmd_explain as explain
    explain(_resolve_run(args.run, args.config), args.images, Path(args.out))
    return 0


def cmd_concepts(args) -> int:
    from pipeline.cli.explain import cmd_concepts as concepts
    concepts(_resolve_run(args.run, args.config), args.cell, Path(args.out))
    return 0


def cmd_findings(args) -> int:
    from pipeline.cli.findings import write_findings
    run = _resolve_run(args.run, args.config)
    cache = load_config(args.config).cache_path  # the thumbnails of images without maps
    for path in write_findings(run, cache, Path(args.pdf) if args.pdf else None,
                               Path(args.html) if args.html else None):
        print(path)
    return 0


def cmd_atlas(args) -> int:
    from pipeline.cli.atlas import write_atlas
    bars = StageBars()
    try:
        write_atlas(_resolve_run(args.run, args.config), args.images, as_json=args.json, recompute=args.recompute,
                    progress=bars)
    finally:
        bars.close()
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m pipeline", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)

    def with_config(p):
        p.add_argument("--config", default=str(REPO_ROOT / "configs" / "default.yaml"))
        p.add_argument("--set", action="append", metavar="KEY=VALUE",
                       help="override one config value, e.g. --set head.ortho_weight=0.5")
        return p

    p = with_config(sub.add_parser("run", help="run the pipeline on a data set"))
    p.add_argument("--data", help="image folder (CNNDetection layout) or CSV manifest")
    p.set_defaults(func=cmd_run)

    p = with_config(sub.add_parser("info", help="print a run's metrics, applied sets and matrix"))
    p.add_argument("run", help="run folder or run id")
    p.add_argument("--json", action="store_true")
    p.add_argument("--applied", metavar="NAME", help="print this applied set: metrics, cells, bad files")
    p.add_argument("--all-cells", action="store_true", help="with --applied: list every cell it reaches")
    p.set_defaults(func=cmd_info)

    p = with_config(sub.add_parser("probe", help="bias probe: how class-neutral re-encodings move "
                                                 "the run's decisions, per class"))
    p.add_argument("run", help="run folder or run id")
    p.add_argument("--images", type=int, default=None,
                   help="held-out images to probe (default: checks.bias_images of the run's config)")
    p.set_defaults(func=cmd_probe)

    p = with_config(sub.add_parser("compare", help="two runs' held-out metrics and checks side by side"))
    p.add_argument("run_a")
    p.add_argument("run_b")
    p.set_defaults(func=cmd_compare)
    p = with_config(sub.add_parser("apply", help="score new images with a run (an applied set)"))
    p.add_argument("run", help="run folder or run id")
    p.add_argument("--data", required=True, help="image folder (labelled or not) or CSV manifest")
    p.add_argument("--name", help="the applied set's name (default: the data set's name)")
    p.set_defaults(func=cmd_apply)

    p = with_config(sub.add_parser("matrix", help="cross-generator matrix of a run (cached features)"))
    p.add_argument("run", help="run folder or run id")
    p.add_argument("--recompute", action="store_true", help="compute it again even if it is kept")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_matrix)

    p = with_config(sub.add_parser("demo-data", help="build the offline demo data set"))
    p.add_argument("--out", required=True)
    p.add_argument("--size", type=int, default=400, help="images per class")
    p.add_argument("--real-dir", action="append", default=[], help="extra folder of your own photos")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-debian", action="store_true", help="don't fetch Debian wallpaper photos")
    p.add_argument("--workers", type=int, default=None, help="images generated at once (threads)")
    p.set_defaults(func=cmd_demo_data)

    p = with_config(sub.add_parser("explain", help="write relevance overlays of some images"))
    p.add_argument("run")
    p.add_argument("--images", nargs="+", required=True, help="image ids (records.csv 'id')")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_explain)

    p = with_config(sub.add_parser("concepts", help="write a cell's concept sheet"))
    p.add_argument("run")
    p.add_argument("--cell", type=int, required=True)
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_concepts)

    p = with_config(sub.add_parser("atlas", help="what each of the 16 dimensions looks at (subject or "
                                                 "background, texture, border), over held-out images"))
    p.add_argument("run", help="run folder or run id")
    p.add_argument("--images", type=int, default=None, help="held-out images profiled (default 64)")
    p.add_argument("--recompute", action="store_true", help="compute it again even if it is kept")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_atlas)

    p = with_config(sub.add_parser("findings", help="write the findings sheet (notes with their kept maps, "
                                                    "concepts, metrics) as a PDF figure and/or HTML"))
    p.add_argument("run", help="run folder or run id")
    p.add_argument("--pdf", metavar="OUT.pdf")
    p.add_argument("--html", metavar="OUT.html")
    p.set_defaults(func=cmd_findings)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("faxplainer").setLevel(logging.DEBUG if args.verbose else logging.INFO)
    try:
        return args.func(args)
    except (FileNotFoundError, ValueError, StorageError, ArtifactError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
