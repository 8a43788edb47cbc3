"""Benchmark ``pipeline.model.embed.embed_paths`` against baselines measured in the same run.

For each encoder and image set it prints images/second of:

* ``naive``        one image at a time: open, preprocess, encode (no batching, no overlap);
* ``forward``      the model alone on pre-decoded batches (the ceiling for ``embed_paths``);
* ``embed_paths``  the real function with a fresh temporary cache (decode threads + batching);
* ``dataloader``   the same pipeline with torch DataLoader worker processes instead of threads;

for each torch intra-op thread count in ``--threads``, then the ratios ``embed_paths / naive``
(target >= 2) and ``embed_paths / forward`` (target >= 0.85: decoding hidden behind compute).

``--bf16`` compares CPU bf16 autocast with fp32 in the same run (issue 17; target >= 1.8x for the
stand-in): the forward pass on the ``--n`` decoded images, then ``embed_paths`` on *every* image of
the set, in chunks that alternate between the two precisions so that load from other jobs hits
both alike. Agreement: per-image cosine of the two embeddings (threshold 0.999), and held-out
accuracy / AUC of a logistic probe and of the pipeline's head fit on each precision's embeddings
with the pipeline's split (within 0.01). ``--write-agreement`` stores the figures of the faces set
in ``pipeline/model/encoders/precision_agreement.json``, where ``encoder.precision: auto`` reads them
(``pipeline/model/encoders/precision.py``); random-weight encoders are never stored.

Usage::

    python -m bench.embed --n 256 --encoder standin,clip --batch-size 64
    python -m bench.embed --n 64 --encoder tiny --data faces   # a smoke run of the harness
    python bench/embed.py --quick   # make bench: the stand-in on 128 faces, 2 threads (~1 min)
    python bench/embed.py --encoder standin --data faces --bf16 --skip-baselines --write-agreement

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

from bench._bf16_agreement import (DATA_ROOT, cosines, heldout_metrics, labelled_set,  # noqa: E402
                                   machine, record)
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
    folder = DATA_ROOT / name
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


def bench_one(enc_name: str, data: str, args, tmp: Path) -> None:
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
    if args.bf16:
        compare_bf16(enc_name, data, args, tensors)


def compare_bf16(enc_name: str, data: str, args, tensors: torch.Tensor) -> None:
    """bf16 autocast against fp32 in the same run: speed, embedding cosine, held-out metrics."""
    threads = args.threads[-1]
    torch.set_num_threads(threads)
    encoders = {"fp32": build_encoder(enc_name, "fp32"), "bf16": build_encoder(enc_name, "bf16")}
    forward = {p: 0.0 for p in encoders}
    with torch.inference_mode():
        for enc in encoders.values():
            enc.embed(tensors[:2])  # warm-up (bf16 kernels are created on first use)
        for start in range(0, len(tensors), args.batch_size):  # interleaved, batch by batch
            for p, enc in encoders.items():
                t0 = time.perf_counter()
                enc.embed(tensors[start:start + args.batch_size])
                forward[p] += time.perf_counter() - t0
    print(f"\nbf16 vs fp32, {enc_name}, torch threads {threads}, load average "
          f"{os.getloadavg()[0]:.1f}: forward on {len(tensors)} images {len(tensors) / forward['bf16']:.1f} "
          f"vs {len(tensors) / forward['fp32']:.1f} img/s ({forward['fp32'] / forward['bf16']:.2f}x)")
    folder = DATA_ROOT / data
    if not folder.exists():
        print(f"  ({folder} absent: no agreement figures on real images)")
        return
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
    cos = cosines(emb["fp32"], emb["bf16"])
    by_precision = {p: heldout_metrics(e, labelled) for p, e in emb.items()}
    heldout = {probe: {p: by_precision[p][probe] for p in encoders} for probe in by_precision["fp32"]}
    figures = {"images": n, "cosine_min": float(cos.min()), "cosine_median": float(np.median(cos)),
               "heldout": heldout, "speedup": round(seconds["fp32"] / seconds["bf16"], 3),
               "forward_speedup": round(forward["fp32"] / forward["bf16"], 3),
               "img_s": {p: round(n / s, 2) for p, s in seconds.items()},
               "fp32_fingerprint": encoders["fp32"].info.fingerprint}
    print(f"  embed_paths on all {n} images of {data}: bf16 {figures['img_s']['bf16']} vs fp32 "
          f"{figures['img_s']['fp32']} img/s ({figures['speedup']:.2f}x; target 1.8x), load average "
          f"{machine()['load_average']}")
    print(f"  cosine bf16 vs fp32: min {cos.min():.6f}, median {np.median(cos):.6f} (threshold 0.999)")
    for probe, pair in heldout.items():
        print(f"  {probe:<8} held-out accuracy fp32 {pair['fp32']['accuracy']:.4f} bf16 "
              f"{pair['bf16']['accuracy']:.4f}   AUC fp32 {pair['fp32']['auc']:.4f} bf16 "
              f"{pair['bf16']['auc']:.4f}   ({int(labelled.heldout.sum())} held-out images)")
    fails = embedding_failures(figures)
    print("  verdict: " + ("bf16 agrees with fp32 and is faster" if not fails else "; ".join(fails)))
    if args.write_agreement:
        record(encoders["fp32"], "embedding", figures, labelled)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=256, help="images per set")
    ap.add_argument("--naive-n", type=int, default=64, help="images for the one-at-a-time baseline")
    ap.add_argument("--encoder", default="standin,clip", help="comma list: standin, clip, tiny")
    ap.add_argument("--data", default="faces,ml72", help="comma list of sets under ../shared/data")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--workers", type=int, default=2, help="decode threads / DataLoader processes")
    ap.add_argument("--threads", default="1,2", help="comma list of torch intra-op thread counts")
    ap.add_argument("--bf16", action="store_true",
                    help="compare CPU bf16 autocast with fp32 (speed and agreement)")
    ap.add_argument("--agreement-chunk", type=int, default=128,
                    help="images per alternating bf16/fp32 chunk of the agreement pass")
    ap.add_argument("--skip-baselines", action="store_true",
                    help="skip the naive / forward / embed_paths / dataloader table")
    ap.add_argument("--write-agreement", action="store_true",
                    help="store the faces figures in pipeline/model/encoders/precision_agreement.json")
    args = parse_args(ap, quick={"n": 128, "naive_n": 16, "batch_size": 32, "encoder": "standin",
                                 "data": "faces", "threads": "2"})
    args.threads = [int(t) for t in args.threads.split(",")]
    print(f"cores visible: {os.cpu_count()}, torch {torch.__version__}; load average "
          f"{os.getloadavg()[0]:.1f} (other jobs on this machine distort timings)")
    with tempfile.TemporaryDirectory() as tmp:
        for enc_name in args.encoder.split(","):
            for data in args.data.split(","):
                bench_one(enc_name, data, args, Path(tmp))


if __name__ == "__main__":
    main()
