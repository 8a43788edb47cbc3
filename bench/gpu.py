"""GPU readiness: the figures that matter on one H100/H200, in one script of under 5 minutes.

Sections (each printed as a table; everything again as one JSON summary at the end):

1. **embedding**: ViT-B/32 (open_clip, random weights: the cost of the real model) and the
   DINOv2 stand-in, at batch 256, in fp16 and bf16 autocast (fp32 and bf16 on a CPU), images/s of
   * ``forward``: the model alone on batches already on the device;
   * ``cpu_decode``: ``pipeline.model.embed.embed_paths`` (Pillow decoding in worker threads, pinned
     batches copied to the device), what a run does;
   * ``device_decode``: ``torchvision.io.decode_jpeg(..., device=...)`` (nvJPEG on CUDA), then
     resize / crop / normalise on the device, then the forward (``device_decode_only``: without
     the forward); the cosine of these embeddings to the ``cpu_decode`` ones says how far the two
     decoders' pixels move the embedding.
2. **relevance**: 16 maps per image, batched (one forward, one ``is_grads_batched`` backward:
   ``relevance_maps``) against one backward per dimension (``relevance_maps_sequential``).
3. **run**: a whole ``pipeline run`` on ``--files`` JPEG files (100,000) whose embeddings are
   supplied (``bench/run_100k.py``: crops of the face photos, each file's embedding its source's
   plus noise, written into the embedding cache), timed per stage.

Timings synchronise the device (``torch.cuda.synchronize``) around every measured call and follow
a warm-up. Usage::

    python bench/gpu.py                          # on the GPU machine (CUDA), < 5 min
    python bench/gpu.py --device cpu --quick     # ~1 min on 2 cores: keeps this script working
    python bench/gpu.py --json gpu.json          # also write the summary to a file

Data: the face photos of ``../shared/data/faces`` when present, else generated images.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

if not __package__:  # started as `python bench/gpu.py`: the repository root on sys.path
    import _path  # noqa: F401

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from bench._bf16_agreement import FACES, cosines  # noqa: E402
from bench.relevance import random_models  # noqa: E402
from bench.run_100k import supply_embeddings, timed_run, write_files  # noqa: E402
from pipeline.config import REPO_ROOT, Config, from_dict, load_config, to_dict  # noqa: E402
from pipeline.model.embed import embed_paths  # noqa: E402
from pipeline.explain.cache import maps_images_per_pass  # noqa: E402
from pipeline.explain.relevance import relevance_maps, relevance_maps_sequential  # noqa: E402

ENCODERS = ("vit_b32", "standin")


# -- timing ----------------------------------------------------------------------------------------

def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device):
    """(seconds, result) of ``fn()``, with the device's queued work finished on both sides."""
    sync(device)
    t0 = time.perf_counter()
    out = fn()
    sync(device)
    return time.perf_counter() - t0, out


# -- inputs ----------------------------------------------------------------------------------------

def source_images(tmp: Path, n_generated: int = 64) -> tuple[list[Path], np.ndarray]:
    """Face photos and labels (``../shared/data/faces``), else generated smooth-noise JPEGs."""
    if FACES.exists():
        paths = sorted((FACES / "0_real").glob("*.jpg")) + sorted((FACES / "1_fake").glob("*.jpg"))
        labels = np.array([int(p.parent.name == "1_fake") for p in paths])
        return paths, labels
    rng = np.random.default_rng(0)
    out = tmp / "sources"
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n_generated):
        small = (rng.random((8, 8, 3)) * 255).astype(np.uint8)
        p = out / f"gen{i:03d}.jpg"
        Image.fromarray(small).resize((256, 256), Image.BICUBIC).save(p, quality=92)
        paths.append(p)
    return paths, np.arange(n_generated) % 2


def build_encoder(name: str, device: str, precision: str):
    from pipeline.model.encoders import DinoV2StandinEncoder, OpenClipEncoder

    if name == "vit_b32":
        return OpenClipEncoder("ViT-B-32", None, device=device, precision=precision)
    return DinoV2StandinEncoder(Config().cache_path, device=device, precision=precision)


def normalisation(preprocess) -> tuple[list[float], list[float]]:
    """Mean and std of the ``Normalize`` step of an encoder's torchvision preprocessing."""
    from torchvision.transforms import Normalize

    for step in getattr(preprocess, "transforms", []):
        if isinstance(step, Normalize):
            return list(step.mean), list(step.std)
    raise ValueError(f"no Normalize step in {preprocess!r}; cannot preprocess on the device")


def device_decode_batches(encoder, paths: list[Path], batch_size: int):
    """Yield device batches: files read on the host, decoded by ``decode_jpeg`` on the device,
    then the encoder's resize (shorter side, bicubic), centre crop and normalisation there."""
    from torchvision.io import decode_jpeg, read_file
    from torchvision.transforms.v2 import functional as TF

    size = encoder.info.image_size
    mean, std = normalisation(encoder.preprocess)
    for start in range(0, len(paths), batch_size):
        data = [read_file(str(p)) for p in paths[start:start + batch_size]]
        images = decode_jpeg(data, device=encoder.device)
        batch = torch.stack([TF.center_crop(TF.resize(im, size, interpolation=TF.InterpolationMode.BICUBIC,
                                                      antialias=True), size) for im in images])
        yield TF.normalize(batch.float().div_(255), mean, std)


# -- sections --------------------------------------------------------------------------------------

def embedding_section(args, files: list[Path], device: torch.device, skipped: dict) -> list[dict]:
    rows = []
    for name in ENCODERS:
        for precision in args.precisions:
            try:
                encoder = build_encoder(name, str(device), precision)
            except Exception as e:  # the stand-in's weights may be absent on a bare machine
                skipped[f"embedding {name}"] = f"{type(e).__name__}: {e}"
                break
            rows.append(embedding_row(encoder, name, precision, files, args))
            print_row(rows[-1])
            del encoder
            if device.type == "cuda":
                torch.cuda.empty_cache()
    return rows


def embedding_row(encoder, name: str, precision: str, files: list[Path], args) -> dict:
    device, bs = encoder.device, args.batch_size
    warm = files[:2]
    embed_paths(encoder, warm, None, batch_size=bs, num_workers=args.workers)  # warm-up
    t_cpu, cpu_result = timed(lambda: embed_paths(encoder, files, None, batch_size=bs,
                                                  num_workers=args.workers), device)
    if cpu_result.failures:
        raise RuntimeError(f"embedding failed for {cpu_result.failures[:3]}")
    with torch.inference_mode():
        list(device_decode_batches(encoder, warm, bs))  # warm-up (nvJPEG handles, kernels)
        t_decode, batches = timed(lambda: list(device_decode_batches(encoder, files, bs)), device)
        # forward alone, on the batches decoded on the device just before
        t_fwd, out = timed(lambda: torch.cat([encoder.embed(b) for b in batches]), device)
    cos = cosines(out.float().cpu().numpy(), cpu_result.embeddings)
    n = len(files)
    return {"encoder": name, "precision": precision, "images": n, "batch": bs,
            "forward_img_s": round(n / t_fwd, 1), "cpu_decode_img_s": round(n / t_cpu, 1),
            "device_decode_img_s": round(n / (t_decode + t_fwd), 1),
            "device_decode_only_img_s": round(n / t_decode, 1), "decode_workers": args.workers,
            "device_vs_cpu_decode_cosine_min": round(float(cos.min()), 5)}


def relevance_section(args, device: torch.device, skipped: dict) -> list[dict]:
    rows = []
    for name in ENCODERS:
        try:
            encoder = build_encoder(name, str(device), args.maps_precision)
        except Exception as e:
            skipped[f"relevance {name}"] = f"{type(e).__name__}: {e}"
            continue
        projection, head = random_models(encoder.info.embed_dim)  # timing does not need trained weights
        projection, head = projection.to(device), head.to(device)
        size = encoder.info.image_size
        x = torch.randn(args.map_images, 3, size, size, generator=torch.Generator().manual_seed(0))
        per_pass = min(args.map_images, args.images_per_pass)
        if not args.quick:  # warm-up (a smoke run does not need exact timings)
            relevance_maps(encoder, projection, head, x[:per_pass], images_per_pass=per_pass)
        t_batched, batched = timed(lambda: relevance_maps(encoder, projection, head, x,
                                                          images_per_pass=per_pass), device)
        t_seq, seq = timed(lambda: relevance_maps_sequential(encoder, projection, head, x,
                                                             images_per_pass=per_pass), device)
        diff = float(np.abs(batched.patch_maps - seq.patch_maps).max() / np.abs(seq.patch_maps).max())
        rows.append({"encoder": name, "precision": args.maps_precision, "images": args.map_images,
                     "images_per_pass": per_pass,
                     "batched_s_per_image": round(t_batched / args.map_images, 4),
                     "per_dimension_s_per_image": round(t_seq / args.map_images, 4),
                     "ratio": round(t_seq / t_batched, 2), "max_relative_difference": diff})
        print_row(rows[-1])
        del encoder
    return rows


def run_section(args, work: Path, sources: list[Path], labels: np.ndarray, skipped: dict) -> dict:
    """A run on ``args.files`` files with supplied embeddings (``bench/run_100k.py``)."""
    from pipeline.model.encoders import shared_encoder

    base_cfg = load_config(REPO_ROOT / "configs" / ("test.yaml" if args.quick else "standin.yaml"))
    cache = work / "cache"  # the projection is cached per data set: a fresh cache trains it anew
    weights = Config().cache_path / "weights"
    if weights.is_dir() and not (cache / "weights").exists():
        cache.mkdir(parents=True, exist_ok=True)
        (cache / "weights").symlink_to(weights.resolve())
    values = to_dict(base_cfg)
    values.update(runs_dir=str(work / "runs"), cache_dir=str(cache))
    values["data"] = {**values["data"], "root": str(work / "files"), "manifest": None}
    values["encoder"] = {**values["encoder"], "device": args.device}
    cfg = from_dict(values)
    try:
        encoder = shared_encoder(cfg.encoder, cfg.cache_path)
    except Exception as e:
        skipped["run"] = f"{type(e).__name__}: {e}"
        return {}
    t_files, files = timed(lambda: write_files(work / "files", sources, labels, args.files, seed=0),
                           torch.device("cpu"))
    t_base, base = timed(lambda: embed_paths(encoder, sources, None, batch_size=args.batch_size,
                                             num_workers=args.workers).embeddings, encoder.device)
    t_supply, _ = timed(lambda: supply_embeddings(cfg, files, base, seed=0), torch.device("cpu"))
    _, total, stages = timed_run(cfg)
    row = {"encoder": encoder.info.name, "files": args.files, "run_s": round(total, 1),
           "stages_s": {s: round(t, 1) for s, t in stages.items()},
           "setup_s": {"write_files": round(t_files, 1), "embed_sources": round(t_base, 1),
                       "supply_embeddings": round(t_supply, 1)}}
    print_row(row)
    return row


def print_row(row: dict) -> None:
    print("  " + "  ".join(f"{k}={v}" for k, v in row.items()), flush=True)


# -- main ------------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--quick", action="store_true", help="small sizes (CPU smoke run, ~1 min)")
    ap.add_argument("--json", type=Path, help="also write the summary here")
    ap.add_argument("--work", type=Path, help="folder for generated files (default: a temporary one)")
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda but CUDA is not available; use --device cpu --quick")
    quick, cuda = args.quick, device.type == "cuda"
    args.batch_size = 8 if quick else 256
    args.images = 8 if quick else 4096  # embedding section, distinct files
    args.workers = min(8, os.cpu_count() or 1) if cuda else 2
    args.precisions = ("fp16", "bf16") if cuda else ("fp32", "bf16")
    args.maps_precision = "bf16" if cuda else "fp32"
    args.map_images = 1 if quick else 16
    args.images_per_pass = maps_images_per_pass(device)  # what the pipeline uses
    args.files = 400 if quick else 100_000
    sys.stdout.reconfigure(line_buffering=True)

    summary = {"device": torch.cuda.get_device_name(device) if cuda else f"cpu ({os.cpu_count()} cores)",
               "quick": quick, "torch": torch.__version__, "load_average_start": round(os.getloadavg()[0], 2),
               "skipped": {}, "seconds": {}}
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        sources, labels = source_images(work)
        t0 = time.perf_counter()
        files = [p for p, _ in write_files(work / "embed-files", sources, labels, args.images, seed=1)]
        print(f"\n== embedding: {len(files)} JPEG files, batch {args.batch_size}, device {device}")
        summary["embedding"] = embedding_section(args, files, device, summary["skipped"])
        summary["seconds"]["embedding"] = round(time.perf_counter() - t0, 1)

        t0 = time.perf_counter()
        print(f"\n== relevance: 16 maps per image, {args.map_images} image(s), {args.maps_precision}")
        summary["relevance"] = relevance_section(args, device, summary["skipped"])
        summary["seconds"]["relevance"] = round(time.perf_counter() - t0, 1)

        t0 = time.perf_counter()
        print(f"\n== run: {args.files:,} files with supplied embeddings")
        summary["run"] = run_section(args, work / "run", sources, labels, summary["skipped"])
        summary["seconds"]["run"] = round(time.perf_counter() - t0, 1)
    summary["seconds"]["total"] = round(time.perf_counter() - t_start, 1)
    summary["load_average_end"] = round(os.getloadavg()[0], 2)
    for what, why in summary["skipped"].items():
        print(f"skipped {what}: {why}")
    text = json.dumps(summary, indent=1)
    print("\nJSON summary:\n" + text)
    if args.json:
        args.json.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
