"""The dimension atlas of a run: what each of the 16 dimensions looks at, over a fixed sample of
held-out images, with the images where it is highest and lowest and a sentence in words.
Torch-free: the result's description, its reading and the words (computing it:
:func:`pipeline.explain.atlas_jobs.get_atlas`).

Reading a learned direction by the data set images that activate it most and least is Olah et
al.'s "dataset examples" (Feature Visualization, 2017); the profile numbers are
:mod:`pipeline.explain.profiles`'.

The atlas is a derived result (``<run>/atlas/atlas.json``, :class:`pipeline.store.derived.Derived`)
keyed by the run's models, the relevance settings, the sample (seeded, balanced real/fake among
the held-out images) and the files of the sampled images.

Its JSON (``read_atlas``/``get_atlas``)::

    {"key", "n_images" (profiled), "n_real", "n_fake", "image_indices", "skipped": [{"index", "message"}],
     "names_available": bool (CLIP text tower), "vocabulary": [words] or None,
     "dimensions": [{"dim", "label" ("d7"), "n_images", "subject_share", "border_share",
                     "textured_share", "concentration", "subject_area", "mean_contribution",
                     "towards_fake", "verdict", "evidence_share", "evidence_subject",
                     "evidence_background", "evidence_verdict" (the blur test,
                     pipeline.explain.region_evidence), "fake_high_towards_fake" (float or None: of the
                     sample's fakes on which z_k is at least its median, the share pushed to fake),
                     "top": [{"index", "id", "label", "z", "contribution", "subject_share"}],
                     "bottom": [...same...], "sentence": str,
                     "names": [{"word", "score"}] or None}]}
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Sequence

import numpy as np

from pipeline.data.as_run import balanced_sample
from pipeline.explain.profiles import BORDER_FRACTION, DimensionSummary, count_sentence, evidence_count_sentence, \
    summarise
from pipeline.explain.region_evidence import BLUR_SIGMA, EVIDENCE_VERSION
from pipeline.explain.results import faithfulness_labels, file_key, image_paths
from pipeline.explain.subject_mask import MASK_VERSION
from pipeline.store.derived import Derived
from pipeline.store.run_store import open_store

ATLAS_FILE = "atlas/atlas.json"
ATLAS_VERSION = 4  # bump when the atlas's fields, numbers or words change (2: verdicts against the
# subject's area; 3: "looks at the background", as the verdict is about density, not majority;
# 4: the blur test, where a dimension's evidence is)
ATLAS_IMAGES = 64  # held-out images profiled (half real, half fake)
ATLAS_EXAMPLES = 4  # images shown per dimension at each end (highest, lowest)
BORDER_AREA = 1 - (1 - 2 * BORDER_FRACTION) ** 2


def atlas_sample(records: list[dict], n_images: int = ATLAS_IMAGES, seed: int = 0) -> list[int]:
    """Record indices of the atlas's sample: held-out images, half real and half fake, seeded (all
    images when the run has no held-out split, e.g. an applied set)."""
    heldout = [i for i, r in enumerate(records) if r.get("split") == "heldout"]
    return balanced_sample(faithfulness_labels(records), n_images, seed, among=heldout or None)


def atlas_result(run_dir: str | Path, n_images: int = ATLAS_IMAGES, seed: int = 0, *,
                 records: list[dict] | None = None) -> Derived:
    """The atlas of the run as a derived result; ``inputs["indices"]`` is its sample."""
    store = open_store(run_dir)
    records = store.read_records() if records is None else records
    indices = atlas_sample(records, n_images, seed)
    return Derived(run_dir, ATLAS_FILE,
                   {"v": ATLAS_VERSION, "mask_v": MASK_VERSION, "evidence_v": EVIDENCE_VERSION, "seed": seed, "indices": indices,
                    "relevance": dataclasses.asdict(store.config().relevance),
                    "files": [file_key(p) for p in image_paths(store, records, indices)]})


def read_atlas(run_dir: str | Path, n_images: int = ATLAS_IMAGES, seed: int = 0) -> dict | None:
    """The kept atlas if it is current, else None; never computes (torch-free)."""
    return atlas_result(run_dir, n_images, seed).read()


def build_atlas(profiles: Sequence, records: list[dict], names: list | None = None,
                vocabulary: Sequence[str] | None = None) -> dict:
    """The atlas's JSON (without ``key``) from the sample's ``ImageProfile``s (and the CLIP-only
    names per dimension, if any)."""
    profiles = list(profiles)
    summaries = summarise(profiles)
    z = np.stack([p.z for p in profiles]) if profiles else np.zeros((0, 0))
    c = np.stack([p.contributions for p in profiles]) if profiles else np.zeros((0, 0))
    labels = np.array([int(records[p.index].get("label", -1)) for p in profiles])
    dims = []
    for s in summaries:
        k = s.dim
        order = np.argsort(-z[:, k], kind="stable")

        def example(j: int) -> dict:
            p = profiles[j]
            r = records[p.index]
            return {"index": p.index, "id": r["id"], "label": int(r.get("label", -1)), "z": float(z[j, k]),
                    "contribution": float(c[j, k]), "subject_share": float(p.subject[k])}

        high_fakes = (labels == 1) & (z[:, k] >= np.median(z[:, k]))
        entry = {**s.to_dict(),
                 "fake_high_towards_fake": float((c[high_fakes, k] > 0).mean()) if high_fakes.any() else None,
                 "top": [example(j) for j in order[:ATLAS_EXAMPLES]],
                 "bottom": [example(j) for j in order[::-1][:ATLAS_EXAMPLES]],
                 "names": names[k] if names is not None else None}
        entry["sentence"] = dimension_sentence(entry)
        dims.append(entry)
    return {"n_images": len(profiles), "image_indices": [p.index for p in profiles],
            "n_real": int((labels == 0).sum()), "n_fake": int((labels == 1).sum()),
            "names_available": names is not None, "vocabulary": list(vocabulary) if names is not None else None,
            "dimensions": dims}


def dimension_sentence(entry: dict) -> str:
    """e.g. "d7: looks at the background (74% of its relevance on 56% of the image), textured regions (66%), concentrated
    (top 10% of patches hold 38%); pushes towards fake in 81% of the fakes it is high on"."""
    def pct(x: float) -> str:
        return f"{100 * x:.0f}%"

    subject, area = entry["subject_share"], entry["subject_area"]
    where = {"subject": f"looks at the subject ({pct(subject)} of its relevance on {pct(area)} of the image)",
             "background": f"looks at the background ({pct(1 - subject)} of its relevance on {pct(1 - area)} "
                           f"of the image)",
             "mixed": f"subject and background alike (subject: {pct(subject)} of its relevance on {pct(area)} "
                      f"of the image)"}[entry["verdict"]]
    t = entry["textured_share"]
    texture = (f"textured regions ({pct(t)})" if t >= 0.55 else f"flat regions (textured {pct(t)})" if t <= 0.45
               else f"textured and flat alike (textured {pct(t)})")
    conc = entry["concentration"]
    spread = (f"concentrated (top 10% of patches hold {pct(conc)})" if conc >= 0.3
              else f"spread out (top 10% of patches hold {pct(conc)})")
    parts = [where, *evidence_words(entry), texture, f"border {pct(entry['border_share'])}", spread]
    push = entry.get("fake_high_towards_fake")
    tail = (f"pushes towards fake in {pct(push)} of the fakes it is high on" if push is not None
            else f"pushes towards fake on {pct(entry['towards_fake'])} of the images")
    names = entry.get("names")
    named = f"; looks like {', '.join(n['word'] for n in names)} (CLIP)" if names else ""
    return f"{entry['label']}: {', '.join(parts)}; {tail} (mean contribution {entry['mean_contribution']:+.3f})" + named


def evidence_words(entry: dict) -> list[str]:
    """The blur test in words, e.g. ["its evidence is in the background's fine detail (blurring
    the subject (42% of the image) moves it by 0.02, the background (58%) by 2.10)"]; [] without a
    blur test. The verdict is per pixel, so the areas are said with the moves."""
    verdict = entry.get("evidence_verdict")
    if verdict is None:
        return []
    area = entry["subject_area"]
    moves = (f"blurring the subject ({100 * area:.0f}% of the image) moves it by {entry['evidence_subject']:.2f}, "
             f"the background ({100 * (1 - area):.0f}%) by {entry['evidence_background']:.2f}")
    return [{"subject": f"its evidence is in the subject's fine detail ({moves})",
             "background": f"its evidence is in the background's fine detail ({moves})",
             "mixed": f"its evidence is in the fine detail of both ({moves})",
             "none": f"reads no fine detail ({moves})"}[verdict]]


def atlas_lines(atlas: dict) -> list[str]:
    """The atlas as text: a header, then one sentence per dimension (the CLI's output), the
    dimensions that weigh most on the logit first, each with its highest and lowest images."""
    dims = atlas["dimensions"]
    lines = [f"dimension atlas: {atlas['n_images']} held-out images ({atlas.get('n_real', 0)} real, "
             f"{atlas.get('n_fake', 0)} fake); shares are of each map's relevance mass",
             count_sentence(atlas_summaries(atlas), f"the {atlas['n_images']} images")]
    if (blur := evidence_count_sentence(atlas_summaries(atlas), f"the {atlas['n_images']} images")) is not None:
        lines.append(f"{blur} (Gaussian blur, sigma {BLUR_SIGMA:g} px of the model input; where the map is "
                     "and where the evidence is can differ: the map follows the attention)")
    if dims:
        lines.append(f"subject mask covers {100 * dims[0]['subject_area']:.0f}% of an image on average "
                     f"(a flat map's subject share); border band {100 * BORDER_AREA:.0f}%, textured half by construction")
    if atlas.get("skipped"):
        lines.append(f"skipped {len(atlas['skipped'])} unreadable image(s)")
    for d in sorted(dims, key=lambda d: -abs(d["mean_contribution"])):
        lines.append(d["sentence"])
        lines.append("    highest: " + ", ".join(_example_text(e) for e in d["top"]))
        lines.append("    lowest:  " + ", ".join(_example_text(e) for e in d["bottom"]))
    return lines


def _example_text(e: dict) -> str:
    label = {0: "real", 1: "fake"}.get(e["label"], "?")
    return f"{e['id']} ({label}, z {e['z']:+.2f})"


def _summary(entry: dict) -> DimensionSummary:
    return DimensionSummary(**{f.name: entry.get(f.name, f.default) for f in dataclasses.fields(DimensionSummary)})


def atlas_summaries(atlas: dict) -> list[DimensionSummary]:
    """The atlas's dimensions as :class:`DimensionSummary` (for :func:`count_sentence` in the app
    and the findings sheet)."""
    return [_summary(d) for d in atlas.get("dimensions", [])]


__all__ = ["ATLAS_EXAMPLES", "ATLAS_FILE", "ATLAS_IMAGES", "ATLAS_VERSION", "atlas_lines", "atlas_result",
           "atlas_summaries",
           "atlas_sample", "build_atlas", "dimension_sentence", "evidence_words", "read_atlas"]
