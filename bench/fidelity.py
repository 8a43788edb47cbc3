"""Detector fidelity: how close the run's 16-d head comes to a linear probe on the full embedding.

For each data set and each setting (dotted config overrides, as ``python -m pipeline run --set``
takes them) this prints the reference probe's held-out AUC (``pipeline.model.probe``: standardised
logistic regression, C = 0.01, on the encoder's embedding), the head's held-out AUC and accuracy,
the word probe before/after the projection (chance 0.10) and the seconds the projection and head
took to fit, with the command that makes that run. It reuses the run's own stages (scan, embed,
split and checks, projection images, head) on cached embeddings; only the rendering of the word
tuples, once per training image set, goes through the encoder, and those embeddings are kept in
``<cache>/bench-fidelity`` so that every width and head setting after the first costs seconds.

hardfaces is scored as ``python -m pipeline apply`` scores it: with the faces run's projection and
head (and the reference probe fitted on faces' training split), a generalisation figure.

Usage: python bench/fidelity.py [--sets faces,ml72,demo,hardfaces] [--settings "projection.dim=256" ...]
(the stand-in encoder; the data sets under ../shared/data; the first call embeds hardfaces and
renders the word tuples: minutes on 2 cores, later ones seconds per setting)
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import platform
import time
from pathlib import Path

if not __package__:  # started as `python bench/NAME.py`: the repository root on sys.path
    import _path  # noqa: F401

from bench._options import parse_args  # noqa: E402

import numpy as np  # noqa: E402

from pipeline.config import REPO_ROOT, load_config, with_data  # noqa: E402
from pipeline.data.demo.builtin import ensure_demo_config  # noqa: E402
from pipeline.data.splits import TRAIN  # noqa: E402
from pipeline.model.embed import embed_pil  # noqa: E402
from pipeline.model.head import sigmoid  # noqa: E402
from pipeline.model.metrics import binary_metrics  # noqa: E402
from pipeline.model.probe import fit_reference_probe  # noqa: E402
from pipeline.model.projection_training import VERSION as PROJECTION_VERSION, WordTuples, fit_projection, \
    render_word_tuples  # noqa: E402
from pipeline import projection_stage, runner  # noqa: E402

DATA = REPO_ROOT.parent / "shared" / "data"
STANDIN = REPO_ROOT / "configs" / "standin.yaml"
APPLIED = {"hardfaces": "faces"}  # scored with that set's models, as `pipeline apply` does
BEFORE = ["projection.dim=256"]  # the defaults before issue 26


def _quiet(_stage, _done, _total):
    pass


def cpu_flags() -> str:
    try:
        flags = next(line for line in open("/proc/cpuinfo") if line.startswith("flags")).split()
    except (OSError, StopIteration):
        return platform.processor()
    return " ".join(f for f in ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_tile") if f in flags)


def set_config(name: str, overrides: list[str]):
    cfg = load_config(STANDIN, overrides)
    if name == "demo":
        return ensure_demo_config(cfg, log=lambda _m: None)
    return with_data(cfg, DATA / name)


def embedded_set(name: str, encoder, overrides: list[str], kept: dict):
    """(config, scan, embedded images after the checks, splits) as a run of ``name`` has them;
    ``kept`` holds each set's scan and embeddings for the next settings (they change only the
    projection and the head)."""
    cfg = set_config(name, overrides)
    if name not in kept:
        scanned = runner.scan_stage(cfg, _quiet)
        kept[name] = scanned, runner.embed_stage(encoder, scanned, cfg, _quiet)
    scanned, embedded = kept[name]
    embedded, splits, _ = runner.checks_stage(embedded, runner.split_stage(embedded, cfg), cfg, _quiet)
    return cfg, scanned, embedded, splits


def word_tuples(cfg, encoder, scanned, cache: Path):
    """The projection's training images' clean embeddings and word tuples (kept on disk)."""
    pc = cfg.projection
    source = projection_stage.projection_source(cfg, scanned.fingerprint)
    key = hashlib.sha256(json.dumps([encoder.info.fingerprint, source, pc.seed, pc.max_train_images,
                                     pc.words_per_image, PROJECTION_VERSION]).encode()).hexdigest()[:16]
    paths, clean = projection_stage.projection_images(encoder, scanned, cfg, projection_stage.StageCount())
    path = cache / f"{key}.npz"
    if path.exists():
        saved = np.load(path, allow_pickle=False)
        text = saved["text"] if saved["text"].size else None
        return key, clean, WordTuples(**{f.name: (text if f.name == "text" else saved[f.name])
                                         for f in dataclasses.fields(WordTuples)})
    tuples = render_word_tuples(encoder, paths, pc, lambda ims: embed_pil(encoder, ims, cfg.encoder.batch_size),
                                cfg.data.max_image_pixels)
    cache.mkdir(parents=True, exist_ok=True)
    arrays = {f.name: getattr(tuples, f.name) for f in dataclasses.fields(WordTuples)}
    arrays["text"] = np.zeros(0) if tuples.text is None else tuples.text
    np.savez(path, **arrays)
    return key, clean, tuples


def measure(name: str, overrides: list[str], encoder, cache: Path, kept: dict, fitted: dict) -> dict:
    """One table row: the set ``name`` with ``overrides``. ``kept`` holds what later settings reuse
    (embeddings, projections: one background projection serves every set); ``fitted[set]`` the
    models the applied sets are scored with."""
    if name in APPLIED:
        source = fitted[APPLIED[name]]
        _, _, embedded, _ = embedded_set(name, encoder, overrides, kept)
        y = embedded.labels
        start = time.perf_counter()
        logit = source["head"].transform(source["projection"].transform(embedded.embeddings))[1]
        head = binary_metrics(y, sigmoid(logit), n_boot=0)
        probe = binary_metrics(y, source["probe"].predict_proba(embedded.embeddings.astype(np.float64))[:, 1],
                               n_boot=0)
        return {"probe": probe, "head": head, "word": source["word"], "proj_s": 0.0,
                "head_s": time.perf_counter() - start, "n": len(y), "dim": source["dim"]}
    cfg, scanned, embedded, splits = embedded_set(name, encoder, overrides, kept)
    key, clean, tuples = word_tuples(cfg, encoder, scanned, cache)
    start = time.perf_counter()
    proj_key = ("projection", key, cfg.fingerprint("projection"))
    if proj_key not in kept:
        kept[proj_key] = fit_projection(tuples, clean, cfg.projection)
    projection, proj_metrics = kept[proj_key]
    proj_s = time.perf_counter() - start
    start = time.perf_counter()
    fit = runner.head_stage(projection.transform(embedded.embeddings), embedded, splits, cfg, _quiet)
    head_s = time.perf_counter() - start  # with the reference probe, as a run measures it
    train = splits == TRAIN
    fitted[name] = {"projection": projection, "head": fit.head, "dim": proj_metrics["dim"],
                    "probe": fit_reference_probe(embedded.embeddings[train], embedded.labels[train]),
                    "word": (proj_metrics["word_probe_before"], proj_metrics["word_probe_after"])}
    return {"probe": fit.metrics["reference_probe"], "head": fit.metrics, "word": fitted[name]["word"],
            "proj_s": proj_s, "head_s": head_s, "n": int((~train).sum()), "dim": proj_metrics["dim"]}


def command(name: str, overrides: list[str]) -> str:
    sets = " ".join(f"--set {o}" for o in overrides)
    if name in APPLIED:
        return (f"python -m pipeline apply RUN_OF_{APPLIED[name].upper()} --data ../shared/data/{name}"
                f"  (RUN_OF_{APPLIED[name].upper()}: the {APPLIED[name]} row's run)")
    data = "" if name == "demo" else f" --data ../shared/data/{name}"
    return f"python -m pipeline run --config configs/standin.yaml{data} {sets}".rstrip()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sets", default="faces,ml72,demo,hardfaces",
                        help="data sets under ../shared/data (demo: the built-in demo set)")
    parser.add_argument("--settings", nargs="+", default=[" ".join(BEFORE), ""],
                        help="each a space-separated list of dotted overrides ('' = the defaults)")
    args = parse_args(parser, {"sets": "ml72"}, argv)
    from pipeline.model.encoders import shared_encoder

    asked = args.sets.split(",")
    sets = [s for s in asked if (s == "demo" or (DATA / s).is_dir()) and APPLIED.get(s, s) in asked]
    cfg = load_config(STANDIN)
    encoder = shared_encoder(cfg.encoder, cfg.cache_path)
    cache = cfg.cache_path / "bench-fidelity"
    print(f"stand-in encoder {encoder.info.fingerprint}; CPU flags: {cpu_flags()}")
    print("| set | setting | dim | probe AUC (acc) | head AUC (acc) | gap | word probe before -> after "
          "| projection fit s | head + probe s | n held-out |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    rows, kept = [], {}
    for setting in args.settings:
        overrides = setting.split()
        fitted: dict = {}
        for name in sets:
            r = measure(name, overrides, encoder, cache, kept, fitted)
            p, h = r["probe"], r["head"]
            print(f"| {name} | {setting or 'defaults'} | {r['dim']} | {p['auc']:.3f} ({p['accuracy']:.3f}) "
                  f"| {h['auc']:.3f} ({h['accuracy']:.3f}) | {p['auc'] - h['auc']:+.3f} "
                  f"| {r['word'][0]:.3f} -> {r['word'][1]:.3f} | {r['proj_s']:.1f} | {r['head_s']:.1f} | {r['n']} |",
                  flush=True)
            rows.append((name, setting, command(name, overrides)))
    print("\ncommands (the run whose metrics.json holds the row):")
    for name, setting, cmd in rows:
        print(f"  {name} [{setting or 'defaults'}]: {cmd}")


if __name__ == "__main__":
    main()
