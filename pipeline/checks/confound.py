"""From a flagged file-fact confound to the re-encoding that equalises it.

The shortcut check (:mod:`pipeline.checks.shortcuts`) flags file facts that alone predict the label
and names each flag's fact group (``pipeline.data.filefacts.FactColumn.group``). A controlled
re-encoding (``data.reencode``, :class:`pipeline.reencode_spec.ReencodeSpec`) makes some groups the
same for every image: any spec equalises format, compression and colour mode; a spec with a size
also equalises the size. :func:`choose_reencoding` picks the spec that covers what was flagged:

* size flagged -> both classes to one square size: the smaller class's typical (median) short
  side, capped at the encoder's input scale (:data:`SIZE_CAP`), so that no class is upscaled much;
* format, compression (JPEG quality, tables, subsampling) or colour mode flagged -> both classes
  JPEG at one quality (:data:`pipeline.reencode_spec.DEFAULT_JPEG_QUALITY`);
* both -> ``jpeg:Q:S``. A size-only confound also gets ``jpeg:Q:S``: resizing means re-encoding.

Metadata flags are left alone: the encoder sees pixels, never EXIF or text chunks. Pure: it reads
the checks and the facts it is given, nothing else.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from pipeline.reencode_spec import DEFAULT_JPEG_QUALITY, ReencodeSpec

SIZE_CAP = 256  # the encoders' input scale (224 / 256 px): a larger common size adds nothing
SIZE_FLOOR = 32  # below this the images say little; the spec itself allows 8
REENCODABLE = ("size", "format", "compression", "mode")  # groups a re-encoding can equalise
ALL_FACTS = "all"  # the flag of all facts together (shortcuts.py)


@dataclass(frozen=True)
class ConfoundFix:
    """The re-encoding that equalises a run's flagged file facts, and why in one sentence."""

    spec: str  # e.g. "jpeg:90:256", parseable by ReencodeSpec.parse
    groups: tuple[str, ...]  # the flagged fact groups it equalises
    reason: str  # "every fake is 559x559, reals vary: both classes re-encoded as JPEG 90 at 256x256"

    @property
    def parsed(self) -> ReencodeSpec:
        return ReencodeSpec.parse(self.spec)


def flagged_groups(checks: Mapping | None) -> tuple[str, ...]:
    """The re-encodable fact groups the run's shortcut check flags (overall or for one generator),
    in :data:`REENCODABLE` order. A flag of all facts together counts for the groups of the facts
    it used, when no single fact was flagged."""
    sc = (checks or {}).get("shortcuts") or {}
    found: set[str] = set()
    for result in [sc, *(sc.get("per_generator") or {}).values()]:
        flags = result.get("flags") or []
        found |= {f.get("group") for f in flags if f.get("group") != ALL_FACTS}
        if any(f.get("group") == ALL_FACTS for f in flags) and not any(f.get("group") != ALL_FACTS for f in flags):
            groups = {e["fact"]: e.get("group") for e in result.get("facts") or []}
            found |= {groups.get(name) for name in (result.get("all_facts") or {}).get("facts") or []}
    return tuple(g for g in REENCODABLE if g in found)


def _number(v) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return float("nan")


def _size_words(cls: str, sizes: list[tuple[int, int]]) -> str:
    """"every fake is 559x559", "80% of reals are 64x48", "reals vary"."""
    if not sizes:
        return f"no {cls} has a known size"
    (w, h), count = Counter(sizes).most_common(1)[0]
    share = count / len(sizes)
    if share >= 0.9995:
        return f"every {cls} is {w}x{h}"
    if share >= 0.5:
        return f"{share:.0%} of {cls}s are {w}x{h}"
    return f"{cls}s vary"


def common_size(facts: Sequence[Mapping], labels: Sequence[int], cap: int = SIZE_CAP) -> tuple[int, str]:
    """(side of the common square, the classes' sizes in words).

    The side is the smaller of the two classes' median short sides, at most ``cap`` and at least
    :data:`SIZE_FLOOR` (or that median, when smaller): no class is enlarged beyond its typical size.
    """
    by_class: dict[int, list[tuple[int, int]]] = {0: [], 1: []}
    for row, label in zip(facts, labels):
        w, h = _number(row.get("width")), _number(row.get("height"))
        if np.isfinite(w) and np.isfinite(h) and w > 0 and h > 0 and int(label) in by_class:
            by_class[int(label)].append((int(w), int(h)))
    shorts = [float(np.median([min(s) for s in sizes])) for sizes in by_class.values() if sizes]
    if not shorts:
        raise ValueError("no image has a known width and height: cannot choose a common size")
    typical = int(min(shorts))
    side = max(min(typical, cap), min(SIZE_FLOOR, typical), 8)
    words = f"{_size_words('fake', by_class[1])}, {_size_words('real', by_class[0])}"
    return side, words


def _flag_words(checks: Mapping, group: str) -> str:
    """The strongest flagged fact of ``group`` in the shortcut check's words ("every fake is PNG...")."""
    flags = ((checks or {}).get("shortcuts") or {}).get("flags") or []
    for f in flags:
        if f.get("group") == group:
            reason = f.get("reason", "")
            return reason.split("; ", 1)[1] if "; " in reason else reason
    return ""


def choose_reencoding(checks: Mapping | None, facts: Sequence[Mapping] | None, labels: Sequence[int], *,
                      quality: int = DEFAULT_JPEG_QUALITY, size_cap: int = SIZE_CAP) -> ConfoundFix | None:
    """The re-encoding that equalises the run's flagged file facts, or None when nothing a
    re-encoding can equalise is flagged.

    Parameters
    ----------
    checks : the run's ``meta.json`` ``checks`` (its ``shortcuts`` flags name fact groups).
    facts : the run's file facts per image (``facts.csv`` rows: ``width``, ``height``...), needed
        when the size is flagged.
    labels : 0 real / 1 fake per row of ``facts``.
    quality : the JPEG quality both classes are re-encoded at.
    size_cap : the largest common side (the encoder's input scale).

    Raises
    ------
    ValueError
        The size is flagged but no facts (or no image with a known size) are given.
    """
    groups = flagged_groups(checks)
    if not groups:
        return None
    what = []
    size = None
    if "size" in groups:
        if not facts:
            raise ValueError("the size is flagged but the run has no file facts (facts.csv): "
                             "cannot choose a common size")
        if len(facts) != len(labels):
            raise ValueError(f"facts ({len(facts)}) and labels ({len(labels)}) must have one entry per image")
        size, size_words = common_size(facts, labels, size_cap)
        what.append(size_words)
    for group in groups:
        if group != "size":
            words = _flag_words(checks, group)
            if words and words not in what:
                what.append(words)
    spec = f"jpeg:{quality}" + (f":{size}" if size else "")
    how = f"JPEG {quality}" + (f" at {size}x{size}" if size else " at their own sizes")
    reason = f"{'; '.join(what) or ', '.join(groups) + ' flagged'}: both classes re-encoded as {how}"
    ReencodeSpec.parse(spec)  # a bad quality or size fails here, with the spec's own words
    return ConfoundFix(spec, groups, reason)


def run_fix(run_dir) -> ConfoundFix | None:
    """:func:`choose_reencoding` for a run folder (its ``meta.json`` checks and ``facts.csv``)."""
    from pipeline.store.run_store import RunStore

    store = RunStore(run_dir)
    checks = store.read_meta().get("checks")
    if "size" not in flagged_groups(checks):
        return choose_reencoding(checks, None, [])
    records = store.read_records()
    return choose_reencoding(checks, store.read_facts(), [int(r["label"]) for r in records])


def equalising_transforms(fix: ConfoundFix | None) -> tuple:
    """Bias-probe transformations (:mod:`pipeline.checks.bias_probe`) that equalise what ``fix``
    equalises, beyond the default ones: both classes to the fix's size when the size is flagged;
    both to JPEG at the fix's quality when format, compression or mode is (unless the default
    JPEG qualities include it)."""
    from pipeline.checks.bias_probe import DEFAULT_TRANSFORMS, jpeg, to_size

    if fix is None:
        return ()
    spec = fix.parsed
    out = []
    if "size" in fix.groups and spec.size:
        out.append(to_size(spec.size))
    if set(fix.groups) & {"format", "compression", "mode"} and spec.quality is not None and \
            f"jpeg{spec.quality}" not in {t.name for t in DEFAULT_TRANSFORMS}:
        out.append(jpeg(spec.quality))
    return tuple(out)
