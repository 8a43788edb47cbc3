"""Choose an encoder's compute precision: fp32, bf16/fp16 autocast or int8, where it is safe and faster.

``encoder.precision: auto`` means:

* on CUDA: bf16 autocast (fp16 where the GPU has no bf16), for embedding and relevance maps;
* on a CPU, for embedding (also used for concept patches), the fastest of these that passes its
  measured agreement with fp32 on real images in ``precision_agreement.json``:

  - int8 (``int8_onnx.py``: ONNX Runtime dynamic quantisation) where the CPU has int8 dot-product
    instructions (``avx512_vnni``, ``avx_vnni`` or ``amx_int8``; int8 was measured on such CPUs
    only) and the ``int8_embedding`` figures pass;
  - bf16 autocast where the CPU computes bf16 natively (``avx512_bf16`` or ``amx_bf16``; without it
    bf16 is emulated and slower than fp32) and the ``embedding`` figures pass;

* relevance maps need gradients: bf16 where the CPU has native bf16 and the ``maps`` figures pass,
  else fp32 (never int8).

Everything else is fp32.

``precision_agreement.json`` is data, written by the benchmarks that measure it on real face photos
(``../shared/data/faces``) and the demo set, with the commands stored in each entry::

    python bench/embed.py --encoder standin --data faces --precisions fp32,bf16,int8 --write-agreement
    python bench/relevance.py --bf16 --write-agreement

Its figures are judged here each time, against the thresholds of this module, so a stored verdict
can never outlive a stricter threshold. Encoders with random weights have no entry: their agreement
says nothing about real images. An entry is keyed by :attr:`Encoder.agreement_key` (which weights,
which embedding), never by precision.

Relevance maps are compared map by map with the same target only: each map explains
``sign(z_k) * z_k``, so where a dimension's value is so close to 0 that bf16 flips its sign, the two
maps explain opposite things and say nothing about bf16's accuracy. Those maps are left out (and
counted); too many left out (more than :data:`MAPS_LEFT_OUT_MAX`) fails the gate.

The choice and its reason go into ``EncoderInfo.extra`` (``precision``, ``maps_precision``,
``precision_reason``), which every run stores in ``meta.json``.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

AGREEMENT_FILE = Path(__file__).with_name("precision_agreement.json")
PRECISIONS = ("fp32", "bf16", "fp16", "int8")
NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")  # /proc/cpuinfo names (Linux)
INT8_DOT_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")  # int8 dot products in hardware
SECTIONS = {"embedding": "bf16", "int8_embedding": "int8", "maps": "bf16"}  # table section -> precision

# What "measurably agrees with fp32" means (issues 17 and 27).
COSINE_MIN = {"bf16": 0.999, "int8": 0.995}  # per-image cosine to fp32 embeddings, worst image;
# int8 rounds every activation to 256 levels, so its embeddings move more than bf16's by
# construction: what must not move is what is decided from them (the metrics below).
METRIC_TOLERANCE = 0.01  # held-out accuracy and ROC AUC of probes trained on each, |x - fp32|
GENERATOR_AUC_TOLERANCE = 0.02  # per-generator held-out AUC of the head (demo set), |x - fp32|
SPEARMAN_MIN = 0.95  # per-dimension Spearman correlation of bf16 and fp32 relevance maps, worst map
MAPS_LEFT_OUT_MAX = 0.05  # share of maps whose target flips sign between precisions, at most
SPEEDUP_MIN = 1.1  # the precision must be at least this much faster than fp32 (same run)


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


def int8_dot_flag(flags: Iterable[str]) -> str | None:
    """The first flag in ``flags`` that says the CPU has int8 dot-product instructions, else None."""
    have = set(flags)
    return next((f for f in INT8_DOT_FLAGS if f in have), None)


def load_agreement(path: Path = AGREEMENT_FILE) -> dict:
    """The agreement table (``{agreement_key: {"embedding": {...}, "int8_embedding": {...},
    "maps": {...}}}``); {} if absent."""
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        raise ValueError(f"bf16 agreement table {path} is unreadable ({e}); restore it from git or "
                         "delete it (every encoder then stays fp32 on CPU)") from e


def embedding_failures(entry: dict | None, precision: str = "bf16") -> list[str]:
    """Why the measured embedding figures do not allow ``precision`` (empty list: they do).

    ``entry["heldout"]``: ``{probe: {precision: {"accuracy", "auc"}}}`` on faces;
    ``entry["per_generator"]`` (required for int8): ``{generator: {precision: auc}}`` on the demo set.
    """
    if not entry:
        return [f"{precision} embedding agreement not measured"]
    fails = []
    cos, floor = entry.get("cosine_min"), COSINE_MIN[precision]
    if cos is None or cos < floor:
        fails.append(f"cosine min {_fmt(cos)} < {floor}")
    probes = entry.get("heldout") or {}
    if not probes:
        fails.append("no held-out metrics")
    for probe, by_precision in sorted(probes.items()):
        for metric in ("accuracy", "auc"):
            a, b = (by_precision.get(p, {}).get(metric) for p in ("fp32", precision))
            if a is None or b is None or abs(a - b) > METRIC_TOLERANCE:
                fails.append(f"{probe} held-out {metric} fp32 {_fmt(a)} vs {precision} {_fmt(b)} "
                             f"(tolerance {METRIC_TOLERANCE})")
    generators = entry.get("per_generator") or {}
    if precision == "int8" and not generators:
        fails.append("no per-generator AUC on the demo set")
    for generator, by_precision in sorted(generators.items()):
        a, b = by_precision.get("fp32"), by_precision.get(precision)
        if a is None or b is None or abs(a - b) > GENERATOR_AUC_TOLERANCE:
            fails.append(f"{generator} held-out AUC fp32 {_fmt(a)} vs {precision} {_fmt(b)} "
                         f"(tolerance {GENERATOR_AUC_TOLERANCE})")
    fails += _speed_failures(entry, precision)
    return fails


def maps_failures(entry: dict | None) -> list[str]:
    """Why the measured relevance-map figures do not allow bf16 (empty list: they do).

    Judged on maps of the same target (``spearman_min_same_sign``): a map whose dimension changes
    sign between fp32 and bf16 explains the opposite target and is left out (``sign_flips``).
    """
    if not entry:
        return ["relevance-map agreement not measured"]
    maps, left_out = entry.get("maps"), entry.get("sign_flips", 0)
    rho = entry.get("spearman_min_same_sign", entry.get("spearman_min") if not left_out else None)
    fails = [] if rho is not None and rho >= SPEARMAN_MIN else [
        f"per-dimension Spearman min {_fmt(rho)} < {SPEARMAN_MIN} (maps of the same target)"]
    if left_out and (not maps or left_out > MAPS_LEFT_OUT_MAX * maps):
        fails.append(f"{left_out} of {maps} maps left out (their dimension changes sign), more "
                     f"than {MAPS_LEFT_OUT_MAX:.0%}")
    return fails + _speed_failures(entry, "bf16")


def maps_left_out(entry: dict | None) -> str:
    """How many maps the maps gate left out, in words ("" where none were)."""
    left_out = (entry or {}).get("sign_flips", 0)
    return f"{left_out} of {entry.get('maps')} maps left out: sign flips near 0" if left_out else ""


def _speed_failures(entry: dict, precision: str) -> list[str]:
    speedup = entry.get("speedup")
    if speedup is None or speedup < SPEEDUP_MIN:
        return [f"{precision} speed-up {_fmt(speedup)} < {SPEEDUP_MIN}x"]
    return []


def _fmt(value) -> str:
    return f"{value:.4g}" if isinstance(value, (int, float)) else str(value)


def choose_precision(requested: str, device_type: str, agreement_key: str | None, *,
                     flags: Iterable[str] | None = None, table: dict | None = None,
                     cuda_bf16: bool | None = None) -> PrecisionChoice:
    """Resolve ``encoder.precision`` for one encoder on one device.

    Parameters
    ----------
    requested : ``auto``, ``fp32``, ``bf16``, ``fp16`` or ``int8``. Anything but ``auto`` is obeyed
        as is for embedding; maps follow it, except int8 (maps need gradients: fp32).
        ``EMBED/MAPS`` (:func:`pinned`) obeys both: a run's recorded choice, reloaded later.
    device_type : ``"cpu"`` or ``"cuda"``.
    agreement_key : the encoder's key in the agreement table; None for random weights.
    flags : CPU flags (default: this machine's, :func:`cpu_flags`).
    table : agreement table (default: :func:`load_agreement`).
    cuda_bf16 : whether the GPU supports bf16 (default: ask torch).
    """
    if "/" in requested:
        embed, _, maps = requested.partition("/")
        if embed not in PRECISIONS or maps not in PRECISIONS or maps == "int8":
            raise ValueError(f"a pinned precision is EMBED/MAPS with EMBED in {PRECISIONS} and MAPS "
                             f"fp32, bf16 or fp16, not {requested!r}")
        if embed == "int8" and device_type != "cpu":
            raise ValueError(f"precision int8 is a CPU path (ONNX Runtime); not on {device_type}")
        return PrecisionChoice(embed, maps, f"embedding {embed}, maps {maps}: the run's recorded choice")
    if requested not in ("auto",) + PRECISIONS:
        raise ValueError(f"precision must be auto, fp32, bf16, fp16 or int8, not {requested!r}")
    if requested == "int8":
        if device_type != "cpu":
            raise ValueError(f"precision int8 is a CPU path (ONNX Runtime); use auto or bf16 on {device_type}")
        return PrecisionChoice("int8", "fp32", "int8: set by encoder.precision (maps fp32: they need gradients)")
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
    flags = set(cpu_flags() if flags is None else flags)
    bf16_flag, int8_flag = native_bf16_flag(flags), int8_dot_flag(flags)
    if bf16_flag is None and int8_flag is None:
        return PrecisionChoice("fp32", "fp32", "fp32: this CPU has no native bf16 (none of "
                               f"{', '.join(NATIVE_BF16_FLAGS)}) and no int8 dot products (none of "
                               f"{', '.join(INT8_DOT_FLAGS)}) among its flags")
    if agreement_key is None:
        return PrecisionChoice("fp32", "fp32", "fp32: random weights, so no agreement with fp32 on "
                               "real images can be measured for this encoder")
    entry = (load_agreement() if table is None else table).get(agreement_key)
    if entry is None:
        return PrecisionChoice("fp32", "fp32", f"fp32: agreement with fp32 was never measured "
                               f"for {agreement_key} ({AGREEMENT_FILE.name})")
    candidates, said = [], [f"CPU has {', '.join(f for f in (bf16_flag, int8_flag) if f)}"]
    for section, precision, flag in (("int8_embedding", "int8", int8_flag),
                                     ("embedding", "bf16", bf16_flag)):
        if flag is None:
            said.append(f"embedding not {precision} (no CPU flag for it)")
            continue
        fails = embedding_failures(entry.get(section), precision)
        if fails:
            said.append(f"embedding not {precision} ({'; '.join(fails)})")
        else:
            candidates.append((entry[section]["speedup"], precision))
    embed = max(candidates)[1] if candidates else "fp32"
    if candidates:
        said.insert(1, f"embedding {embed} (agrees with fp32 and is the fastest that does, "
                       f"{max(candidates)[0]:.2f}x)")
    maps_fails = maps_failures(entry.get("maps")) if bf16_flag else ["no native bf16"]
    maps = "fp32" if maps_fails else "bf16"
    left_out = maps_left_out(entry.get("maps"))
    said.append(f"maps {maps}" + (f" ({'; '.join(maps_fails)})" if maps_fails else
                                  f" (agree with fp32 and are faster{'; ' + left_out if left_out else ''})"))
    return PrecisionChoice(embed, maps, f"{', '.join(said)}; figures in {AGREEMENT_FILE.name}")


def pinned(extra: dict) -> str | None:
    """The ``EMBED/MAPS`` precision that reproduces a run's recorded choice (``EncoderInfo.extra``),
    so that a run made under ``auto`` keeps its numbers when ``auto`` chooses otherwise later
    (a new agreement table, another CPU); None where the run recorded none."""
    embed, maps = extra.get("precision"), extra.get("maps_precision")
    if embed not in PRECISIONS:
        return None
    return f"{embed}/{maps if maps in PRECISIONS and maps != 'int8' else 'fp32'}"


def record_agreement(agreement_key: str, section: str, figures: dict,
                     path: Path = AGREEMENT_FILE) -> dict:
    """Write one measured section (:data:`SECTIONS`) of an encoder's entry; returns it.

    Called by the benchmarks only. The other sections of the entry are kept.
    """
    if section not in SECTIONS:
        raise ValueError(f"section must be one of {', '.join(SECTIONS)}, not {section!r}")
    if not agreement_key:
        raise ValueError("an encoder with random weights has no agreement key: its agreement on "
                         "real images means nothing")
    from pipeline.store.run_store import atomic_write_json

    table = load_agreement(path)
    table.setdefault(agreement_key, {})[section] = figures
    atomic_write_json(path, table)
    return table[agreement_key]
