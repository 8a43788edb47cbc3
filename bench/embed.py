"""Benchmark ``pipeline.model.embed.embed_paths`` against baselines measured in the same run.

For each encoder and image set it prints images/second of:

* ``naive``        one image at a time: open, preprocess, encode (no batching, no overlap);
* ``forward``      the model alone on pre-decoded batches (the ceiling for ``embed_paths``);
* ``embed_paths``  the real function with a fresh temporary cache (decode threads + batching);
* ``dataloader``   the same pipeline with torch DataLoader worker processes instead of threads;

for each torch intra-op thread count in ``--threads``, then the ratios ``embed_paths / naive``
(target >= 2) and ``embed_paths / forward`` (target >= 0.85: decoding hidden behind compute).

``--precisions fp32,bf16,int8`` compares CPU bf16 autocast and int8 (ONNX Runtime, issue 27) with
fp32 in the same run: the forward pass on the ``--n`` decoded images, then ``embed_paths`` on
*every* image of the set, in chunks that alternate between the precisions so that load from other
jobs hits all alike. Agreement: per-image cosine to fp32 (bf16 >= 0.999, int8 >= 0.995), held-out
accuracy / AUC of a logistic probe and of the pipeline's head fit on each precision's embeddings
with the pipeline's split (within 0.01, faces), and the head's per-generator AUC (within 0.02, the
demo set: ``--data faces,demo``). ``--write-agreement`` stores the figures in
``pipeline/model/encoders/precision_agreement.json``, where ``encoder.precision: auto`` reads them
(``pipeline/model/encoders/precision.py``); random-weight encoders are never stored. Load average
is printed at the start and end of each leg.

Usage::

    python -m bench.embed --n 256 --encoder standin,clip --batch-size 64
    python -m bench.embed --n 64 --encoder tiny --data faces   # a smoke run of the harness
    python bench/embed.py --quick   # make bench: the stand-in on 128 faces, 2 threads (~1 min)
    python bench/embed.py --encoder standin,clip --data faces,demo --precisions fp32,bf16,int8 \
        --skip-baselines --torch-int8 --write-agreement   # issue 27's figures

Encoders: ``standin`` (DINOv2 ViT-S/14), ``clip`` (open_clip ViT-B-32 with random weights: the
same cost as the pretrained model), ``tiny``. Image sets: ``faces`` (256 px JPEG, cheap to decode)
and ``ml72`` (photos up to 4000 px, costly to decode) from ``../shared/data``, else generated.
Timings on a machine shared with other jobs are noisy: rerun before trusting a small difference.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

if not __package__:  # started as `python bench/NAME.py`: the repository root on sys.path
    import _path  # noqa: F401

from bench._bf16_agreement import (cosines, cpu_flags_line, data_folder,  # noqa: E402
                                   heldout_metrics, labelled_set, per_generator_auc, record)
from pipeline.config import Config  # noqa: E402
from pipeline.data.scan import load_image_rgb  # noqa: E402
from pipeline.model.embed import DEFAULT_MAX_PIXELS, embed_paths  # noqa: E402
from pipeline.model.encoders import (ClipWeights, DinoV2StandinEncoder, OpenClipEncoder,  # noqa: E402
                               TinyEncoder)
from pipeline.model.encoders.precision import embedding_failures  # noqa: E402
from bench._options import parse_args  # noqa: E402


def build_encoder(name: str, precision: str = "fp32"):
    if name == "standin":
        return DinoV2StandinEncoder(Config().cache_path, device="cpu", precision=precision)
    if name == "clip":
        return OpenClipEncoder("ViT-B-32", ClipWeights(None, None, "random"), device="cpu",
                               precision=precision)
    if name == "tiny":
        return TinyEncoder(precision=precision)
    raise SystemExit(f"unknown encoder {name!r}; use standin, clip or tiny")


def image_set(name: str, n: int, tmp: Path) -> list[Path]:
    folder = data_folder(name)
    if folder.exists():
        files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
        return files[:n]
    rng = np.random.default_rng(0)  # no shared data: generated 256 px JPEGs
    out = []
    for i in range(n):
        path = tmp / f"gen{i:04d}.jpg"
        Image.fromarray((rng.random((256, 256, 3)) * 255).astype(np.uint8)).save(path, quality=95)
        out.append(path)
    return out


def rate(n: int, seconds: float) -> float:
    return n / seconds if seconds > 0 else float("inf")


def time_naive(encoder, paths) -> float:
    start = time.perf_counter()
    with torch.inference_mode():
        for p in paths:
            encoder.embed(encoder.preprocess(load_image_rgb(p, DEFAULT_MAX_PIXELS))[None])
    return rate(len(paths), time.perf_counter() - start)


def time_forward(encoder, tensors: torch.Tensor, batch_size: int) -> tuple[float, np.ndarray]:
    outs = []
    start = time.perf_counter()
    with torch.inference_mode():
        for i in range(0, len(tensors), batch_size):
            outs.append(encoder.embed(tensors[i:i + batch_size]).numpy())
    return rate(len(tensors), time.perf_counter() - start), np.concatenate(outs)


def time_embed_paths(encoder, paths, batch_size: int, workers: int) -> float:
    with tempfile.TemporaryDirectory() as cache:
        start = time.perf_counter()
        result = embed_paths(encoder, paths, Path(cache), batch_size=batch_size,
                             num_workers=workers)
        seconds = time.perf_counter() - start
    assert not result.failures, result.failures[:3]
    return rate(len(paths), seconds)


class _Decoded(torch.utils.data.Dataset):
    def __init__(self, paths, preprocess):
        self.paths, self.preprocess = paths, preprocess

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        return self.preprocess(load_image_rgb(self.paths[i], DEFAULT_MAX_PIXELS))


def time_dataloader(encoder, paths, batch_size: int, workers: int) -> float:
    start = time.perf_counter()
    loader = torch.utils.data.DataLoader(_Decoded(paths, encoder.preprocess), batch_size=batch_size,
                                         num_workers=workers, prefetch_factor=2 if workers else None)
    with torch.inference_mode():
        for batch in loader:
            encoder.embed(batch)
    return rate(len(paths), time.perf_counter() - start)


def bench_one(enc_name: str, data: str, args, tmp: Path) -> dict | None:
    encoder = build_encoder(enc_name)
    paths = image_set(data, args.n, tmp)
    naive_paths = paths[:min(len(paths), args.naive_n)]
    tensors = torch.stack([encoder.preprocess(load_image_rgb(p, DEFAULT_MAX_PIXELS)) for p in paths])
    print(f"\n== {enc_name} ({encoder.info.model}) on {data}: {len(paths)} images "
          f"(naive on the first {len(naive_paths)}), batch {args.batch_size}, "
          f"{args.workers} decode workers")
    with torch.inference_mode():
        encoder.embed(tensors[:2])  # warm-up
    for threads in [] if args.skip_baselines else args.threads:
        torch.set_num_threads(threads)
        naive = time_naive(encoder, naive_paths)
        forward, _ = time_forward(encoder, tensors, args.batch_size)
        ours = time_embed_paths(encoder, paths, args.batch_size, args.workers)
        loader = time_dataloader(encoder, paths, args.batch_size, args.workers)
        print(f"torch threads {threads}: naive {naive:7.1f}  forward {forward:7.1f}  "
              f"embed_paths {ours:7.1f}  dataloader {loader:7.1f} img/s | "
              f"embed_paths/naive {ours / naive:4.2f}x  embed_paths/forward {ours / forward:4.2f}  "
              f"dataloader/embed_paths {loader / ours:4.2f}")
    if len(args.precisions) > 1:
        return compare_precisions(enc_name, data, args, tensors)
    return None


def torch_int8_forward(enc_name: str, tensors: torch.Tensor, batch_size: int) -> float:
    """Images/s of torch's own dynamic int8 (``quantize_dynamic`` of the Linear layers), the
    alternative to ONNX Runtime's that ``int8_onnx.py`` was chosen against."""
    encoder = build_encoder(enc_name, "fp32")
    module = encoder.model.visual if hasattr(encoder.model, "visual") else encoder.model
    quantised = torch.ao.quantization.quantize_dynamic(module, {torch.nn.Linear}, dtype=torch.qint8)
    if module is encoder.model:
        encoder.model = quantised
    else:
        encoder.model.visual = quantised
        encoder._forward = quantised
    with torch.inference_mode():
        encoder.embed(tensors[:2])
        rate_, _ = time_forward(encoder, tensors, batch_size)
    return rate_


def compare_precisions(enc_name: str, data: str, args, tensors: torch.Tensor) -> dict | None:
    """Each of ``args.precisions`` against fp32 in the same run: forward speed on ``tensors``, then
    ``embed_paths`` on every image of the set (chunks alternating between precisions, so that load
    from other jobs hits all alike), per-image cosine to fp32, held-out accuracy / AUC of two
    probes and per-generator AUC of the head. Returns the figures by precision (None without the
    real set)."""
    threads = args.threads[-1]
    torch.set_num_threads(threads)
    encoders = {p: build_encoder(enc_name, p) for p in args.precisions}
    forward = {p: 0.0 for p in encoders}
    print(f"\n== precisions on {enc_name}, {data}: torch threads {threads}, load average at start "
          f"{os.getloadavg()[0]:.2f}")
    with torch.inference_mode():
        for enc in encoders.values():
            enc.embed(tensors[:2])  # warm-up (bf16 kernels, the int8 export, on first use)
        for start in range(0, len(tensors), args.batch_size):  # interleaved, batch by batch
            for p, enc in encoders.items():
                t0 = time.perf_counter()
                enc.embed(tensors[start:start + args.batch_size])
                forward[p] += time.perf_counter() - t0
    rates = {p: len(tensors) / s for p, s in forward.items()}
    print(f"  forward on {len(tensors)} images, batch {args.batch_size}: " + ", ".join(
        f"{p} {r:.1f} img/s ({r / rates['fp32']:.2f}x)" for p, r in rates.items()))
    if args.torch_int8:
        r = torch_int8_forward(enc_name, tensors, args.batch_size)
        print(f"  torch dynamic int8 (Linear layers) forward {r:.1f} img/s ({r / rates['fp32']:.2f}x)")
    folder = data_folder(data)
    if encoders["fp32"].agreement_key is None:
        print("  (random weights: cost only, their agreement on real images would mean nothing)")
        return None
    if not folder.exists():
        print(f"  ({folder} absent: no agreement figures on real images)")
        return None
    labelled = labelled_set(folder)
    n = len(labelled.paths)
    rows = {p: [] for p in encoders}
    seconds = {p: 0.0 for p in encoders}
    for start in range(0, n, args.agreement_chunk):  # whole set, precisions alternating by chunk
        chunk = labelled.paths[start:start + args.agreement_chunk]
        for p, enc in encoders.items():
            t0 = time.perf_counter()
            result = embed_paths(enc, chunk, None, batch_size=args.batch_size, num_workers=args.workers)
            seconds[p] += time.perf_counter() - t0
            assert not result.failures, result.failures[:3]
            rows[p].append(result.embeddings)
    emb = {p: np.concatenate(r) for p, r in rows.items()}
    metrics = {p: heldout_metrics(e, labelled) for p, e in emb.items()}
    generators = {p: per_generator_auc(e, labelled) for p, e in emb.items()}
    print(f"  embed_paths on all {n} images: " + ", ".join(
        f"{p} {n / s:.2f} img/s ({seconds['fp32'] / s:.2f}x)" for p, s in seconds.items())
        + f"; load average at end {os.getloadavg()[0]:.2f}")
    held = int(labelled.heldout.sum())
    for p in encoders:
        m = metrics[p]
        gens = " ".join(f"{g} {a:.4f}" for g, a in generators[p].items())
        print(f"  {p:<5} held-out ({held}) logistic acc {m['logistic']['accuracy']:.4f} AUC "
              f"{m['logistic']['auc']:.4f} | head acc {m['head']['accuracy']:.4f} AUC "
              f"{m['head']['auc']:.4f} | per-generator AUC {gens}")
    figures = {}
    for p in encoders:
        if p == "fp32":
            continue
        cos = cosines(emb["fp32"], emb[p])
        print(f"  {p} cosine to fp32: min {cos.min():.6f}, median {np.median(cos):.6f}")
        figures[p] = {"images": n, "cosine_min": float(cos.min()), "cosine_median": float(np.median(cos)),
                      "speedup": round(seconds["fp32"] / seconds[p], 3),
                      "forward_speedup": round(forward["fp32"] / forward[p], 3),
                      "img_s": {q: round(n / seconds[q], 2) for q in ("fp32", p)},
                      "fp32_fingerprint": encoders["fp32"].info.fingerprint,
                      "heldout": {probe: {q: metrics[q][probe] for q in ("fp32", p)}
                                  for probe in metrics["fp32"]},
                      "per_generator": {g: {q: generators[q].get(g) for q in ("fp32", p)}
                                        for g in generators["fp32"]}}
    return {"set": labelled, "figures": figures, "encoder": encoders["fp32"]}


def judge_and_record(results: dict, write: bool) -> None:
    """Combine faces (cosine, probes, speed) with the demo set (per-generator AUC, cosine) per
    precision, print the verdict of ``precision.py`` and, with ``write``, store it."""
    faces, demo = results.get("faces"), results.get("demo")
    if faces is None:
        print("\nverdict: needs --data faces (the agreement is judged on real face photos)")
        return
    for precision, fig in faces["figures"].items():
        entry = {**fig, "per_generator": {}}
        if demo is not None:
            d = demo["figures"][precision]
            entry["per_generator"] = d["per_generator"]
            entry["cosine_min"] = min(fig["cosine_min"], d["cosine_min"])
            entry["cosine_min_by_set"] = {"faces": fig["cosine_min"], "demo": d["cosine_min"]}
        else:
            del entry["per_generator"]
        fails = embedding_failures(entry, precision)
        print(f"\nverdict {precision}: " + ("agrees with fp32 and is faster" if not fails else "; ".join(fails)))
        if write:
            section = {"bf16": "embedding", "int8": "int8_embedding"}.get(precision)
            if section:
                if demo is not None:
                    entry["per_generator_data"] = f"demo ({len(demo['set'].paths)} images, " \
                                                  f"{int(demo['set'].heldout.sum())} held out)"
                record(faces["encoder"], section, entry, faces["set"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=256, help="images per set")
    ap.add_argument("--naive-n", type=int, default=64, help="images for the one-at-a-time baseline")
    ap.add_argument("--encoder", default="standin,clip", help="comma list: standin, clip, tiny")
    ap.add_argument("--data", default="faces,ml72", help="comma list of sets under ../shared/data")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--workers", type=int, default=2, help="decode threads / DataLoader processes")
    ap.add_argument("--threads", default="1,2", help="comma list of torch intra-op thread counts")
    ap.add_argument("--precisions", default="fp32",
                    help="comma list starting with fp32 (e.g. fp32,bf16,int8): compare each with fp32, "
                         "speed and agreement on real images")
    ap.add_argument("--bf16", action="store_true", help="the same as --precisions fp32,bf16")
    ap.add_argument("--torch-int8", action="store_true",
                    help="also time torch's dynamic int8 of the Linear layers (forward only)")
    ap.add_argument("--agreement-chunk", type=int, default=128,
                    help="images per alternating chunk of the agreement pass")
    ap.add_argument("--skip-baselines", action="store_true",
                    help="skip the naive / forward / embed_paths / dataloader table")
    ap.add_argument("--write-agreement", action="store_true",
                    help="store the figures (faces, with the demo set's per-generator AUC) in "
                         "pipeline/model/encoders/precision_agreement.json")
    args = parse_args(ap, quick={"n": 128, "naive_n": 16, "batch_size": 32, "encoder": "standin",
                                 "data": "faces", "threads": "2"})
    args.threads = [int(t) for t in args.threads.split(",")]
    args.precisions = ["fp32", "bf16"] if args.bf16 else args.precisions.split(",")
    if args.precisions[0] != "fp32":
        raise SystemExit("--precisions must start with fp32, the baseline")
    print(f"{cpu_flags_line()}; torch {torch.__version__}; load average "
          f"{os.getloadavg()[0]:.2f} (other jobs on this machine distort timings)")
    with tempfile.TemporaryDirectory() as tmp:
        for enc_name in args.encoder.split(","):
            results = {data: bench_one(enc_name, data, args, Path(tmp)) for data in args.data.split(",")}
            if len(args.precisions) > 1 and enc_name == "standin":
                judge_and_record({k: v for k, v in results.items() if v}, args.write_agreement)


if __name__ == "__main__":
    main()
