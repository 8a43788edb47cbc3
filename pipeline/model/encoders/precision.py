"""Choose an encoder's compute precision: fp32, or bf16/fp16 autocast where it is safe and faster.

``encoder.precision: auto`` means:

* on CUDA: bf16 autocast (fp16 where the GPU has no bf16), for embedding and relevance maps;
* on a CPU: bf16 autocast only where the CPU computes bf16 natively (the ``avx512_bf16`` or
  ``amx_bf16`` flag; without it bf16 is emulated and slower than fp32) **and** the encoder is listed
  in ``bf16_agreement.json`` with figures that pass the thresholds below. Embedding (also used for
  concept patches) and relevance maps are judged separately: one may be bf16 while the other stays
  fp32. Everything else is fp32.

``bf16_agreement.json`` is data, written by the benchmarks that measure it on real face photos
(``../shared/data/faces``) with the commands stored in each entry::

    python bench/embed.py --encoder standin --data faces --bf16 --write-agreement
    python bench/relevance.py --bf16 --write-agreement

Its figures are judged here each time, against the thresholds of this module, so a stored verdict
can never outlive a stricter threshold. Encoders with random weights have no entry: their agreement
says nothing about real images. An entry is keyed by :attr:`Encoder.agreement_key` (which weights,
which embedding), never by precision.

The choice and its reason go into ``EncoderInfo.extra`` (``precision``, ``maps_precision``,
``precision_reason``), which every run stores in ``meta.json``.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

AGREEMENT_FILE = Path(__file__).with_name("bf16_agreement.json")
PRECISIONS = ("fp32", "bf16", "fp16")
NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")  # /proc/cpuinfo names (Linux)

# What "measurably agrees with fp32" means (issue 17).
COSINE_MIN = 0.999  # per-image cosine between bf16 and fp32 embeddings, worst image
METRIC_TOLERANCE = 0.01  # held-out accuracy and ROC AUC of probes trained on each, |bf16 - fp32|
SPEARMAN_MIN = 0.95  # per-dimension Spearman correlation of bf16 and fp32 relevance maps, worst map
SPEEDUP_MIN = 1.1  # bf16 must be at least this much faster (same run), or fp32 stays


@dataclass(frozen=True)
class PrecisionChoice:
    """Precision of the embedding forward (``embed``) and of relevance maps (``maps``), and why."""

    embed: str
    maps: str
    reason: str


def cpu_flags(cpuinfo: str | None = None) -> set[str]:
    """CPU feature flags from ``/proc/cpuinfo`` text (read from the file when None).

    Returns an empty set where the file is absent (not Linux) or has no ``flags`` line, so such a
    CPU is treated as having no native bf16.
    """
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(errors="replace")
        except OSError:
            return set()
    for line in cpuinfo.splitlines():
        name, sep, value = line.partition(":")
        if sep and name.strip() in ("flags", "Features"):  # x86 / ARM spelling
            return set(value.split())
    return set()


def native_bf16_flag(flags: Iterable[str]) -> str | None:
    """The first flag in ``flags`` that says the CPU computes bf16 natively, else None."""
    have = set(flags)
    return next((f for f in NATIVE_BF16_FLAGS if f in have), None)


def load_agreement(path: Path = AGREEMENT_FILE) -> dict:
    """The agreement table (``{agreement_key: {"embedding": {...}, "maps": {...}}}``); {} if absent."""
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        raise ValueError(f"bf16 agreement table {path} is unreadable ({e}); restore it from git or "
                         "delete it (every encoder then stays fp32 on CPU)") from e


def embedding_failures(entry: dict | None) -> list[str]:
    """Why the measured embedding figures do not allow bf16 (empty list: they do)."""
    if not entry:
        return ["embedding agreement not measured"]
    fails = []
    cos = entry.get("cosine_min")
    if cos is None or cos < COSINE_MIN:
        fails.append(f"cosine min {_fmt(cos)} < {COSINE_MIN}")
    probes = entry.get("heldout") or {}
    if not probes:
        fails.append("no held-out metrics")
    for probe, by_precision in sorted(probes.items()):
        for metric in ("accuracy", "auc"):
            a, b = (by_precision.get(p, {}).get(metric) for p in ("fp32", "bf16"))
            if a is None or b is None or abs(a - b) > METRIC_TOLERANCE:
                fails.append(f"{probe} held-out {metric} fp32 {_fmt(a)} vs bf16 {_fmt(b)} "
                             f"(tolerance {METRIC_TOLERANCE})")
    fails += _speed_failures(entry)
    return fails


def maps_failures(entry: dict | None) -> list[str]:
    """Why the measured relevance-map figures do not allow bf16 (empty list: they do)."""
    if not entry:
        return ["relevance-map agreement not measured"]
    rho = entry.get("spearman_min")
    fails = [] if rho is not None and rho >= SPEARMAN_MIN else [
        f"per-dimension Spearman min {_fmt(rho)} < {SPEARMAN_MIN}"]
    return fails + _speed_failures(entry)


def _speed_failures(entry: dict) -> list[str]:
    speedup = entry.get("speedup")
    if speedup is None or speedup < SPEEDUP_MIN:
        return [f"bf16 speed-up {_fmt(speedup)} < {SPEEDUP_MIN}x"]
    return []


def _fmt(value) -> str:
    return f"{value:.4g}" if isinstance(value, (int, float)) else str(value)


def choose_precision(requested: str, device_type: str, agreement_key: str | None, *,
                     flags: Iterable[str] | None = None, table: dict | None = None,
                     cuda_bf16: bool | None = None) -> PrecisionChoice:
    """Resolve ``encoder.precision`` for one encoder on one device.

    Parameters
    ----------
    requested : ``auto``, ``fp32``, ``bf16`` or ``fp16``. Anything but ``auto`` is obeyed as is,
        for embedding and maps alike.
    device_type : ``"cpu"`` or ``"cuda"``.
    agreement_key : the encoder's key in the agreement table; None for random weights.
    flags : CPU flags (default: this machine's, :func:`cpu_flags`).
    table : agreement table (default: :func:`load_agreement`).
    cuda_bf16 : whether the GPU supports bf16 (default: ask torch).
    """
    if requested not in ("auto",) + PRECISIONS:
        raise ValueError(f"precision must be auto, fp32, bf16 or fp16, not {requested!r}")
    if requested != "auto":
        return PrecisionChoice(requested, requested, f"{requested}: set by encoder.precision")
    if device_type == "cuda":
        if cuda_bf16 is None:
            import torch
            cuda_bf16 = torch.cuda.is_bf16_supported()
        p = "bf16" if cuda_bf16 else "fp16"
        return PrecisionChoice(p, p, f"{p} autocast: the default on CUDA")
    if device_type != "cpu":
        return PrecisionChoice("fp32", "fp32", f"fp32: no mixed precision chosen for {device_type}")
    flag = native_bf16_flag(cpu_flags() if flags is None else flags)
    if flag is None:
        return PrecisionChoice("fp32", "fp32", "fp32: this CPU has no native bf16 "
                               f"(none of {', '.join(NATIVE_BF16_FLAGS)} among its flags)")
    if agreement_key is None:
        return PrecisionChoice("fp32", "fp32", "fp32: random weights, so no bf16 agreement on real "
                               "images can be measured for this encoder")
    entry = (load_agreement() if table is None else table).get(agreement_key)
    if entry is None:
        return PrecisionChoice("fp32", "fp32", f"fp32: bf16 agreement with fp32 was never measured "
                               f"for {agreement_key} ({AGREEMENT_FILE.name})")
    embed_fails, maps_fails = embedding_failures(entry.get("embedding")), maps_failures(entry.get("maps"))
    embed, maps = ("fp32" if embed_fails else "bf16"), ("fp32" if maps_fails else "bf16")
    parts = [f"CPU has {flag}",
             f"embedding {embed}" + (f" ({'; '.join(embed_fails)})" if embed_fails else
                                     " (agrees with fp32 and is faster)"),
             f"maps {maps}" + (f" ({'; '.join(maps_fails)})" if maps_fails else
                               " (agree with fp32 and are faster)")]
    return PrecisionChoice(embed, maps, f"{', '.join(parts)}; figures in {AGREEMENT_FILE.name}")


def record_agreement(agreement_key: str, section: str, figures: dict,
                     path: Path = AGREEMENT_FILE) -> dict:
    """Write one measured section (``embedding`` or ``maps``) of an encoder's entry; returns it.

    Called by the benchmarks only. The other section of the entry is kept.
    """
    if section not in ("embedding", "maps"):
        raise ValueError(f"section must be 'embedding' or 'maps', not {section!r}")
    if not agreement_key:
        raise ValueError("an encoder with random weights has no agreement key: its agreement on "
                         "real images means nothing")
    from pipeline.store.run_store import atomic_write_json

    table = load_agreement(path)
    table.setdefault(agreement_key, {})[section] = figures
    atomic_write_json(path, table)
    return table[agreement_key]
