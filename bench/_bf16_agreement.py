"""Do bf16 autocast and int8 agree with fp32 on real images? A helper module, not a bench (private
name, nothing to run): shared by ``bench/embed.py`` and ``bench/relevance.py --bf16`` (issues 17, 27).

* :func:`labelled_set`: a real-vs-fake folder (``../shared/data/faces``) with the pipeline's own
  train / held-out split (``pipeline.data.splits``, the head's seed and hold-out fraction);
* :func:`heldout_metrics`: the same two probes fit on each precision's embeddings with that split:
  a logistic regression (``bench.standin_probe.probe_scores``) and the pipeline's 16-d head behind
  a fixed orthogonal projection (the projection's initialisation; training it needs rendered words
  and would not change the comparison);
* :func:`per_generator_auc`: held-out AUC of that head per generator (the demo set);
* :func:`data_folder`: a set under ``../shared/data``, or ``demo`` (the offline demo set in the cache);
* :func:`spearman_per_map`: rank correlation of two sets of relevance maps, map by map;
* :func:`record`: writes a measured section into ``pipeline/model/encoders/precision_agreement.json``, with
  the command line, data set, machine and load average, for ``encoder.precision: auto``.
"""
from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]

from pipeline.config import DataConfig, HeadConfig, ProjectionConfig  # noqa: E402
from pipeline.data.scan import scan  # noqa: E402
from pipeline.model.encoders.precision import (cpu_flags, int8_dot_flag,  # noqa: E402
                                               native_bf16_flag, record_agreement)
from pipeline.model.head import DistilledHead, sigmoid  # noqa: E402
from pipeline.model.metrics import binary_metrics  # noqa: E402
from pipeline.model.projection import ProjectionModule, projection_dim  # noqa: E402
from pipeline.data.splits import HELDOUT, assign_splits, validation_mask  # noqa: E402

DATA_ROOT = REPO.parent / "shared" / "data"
FACES = DATA_ROOT / "faces"


@dataclass
class LabelledSet:
    name: str
    paths: list[Path]
    labels: np.ndarray  # 0 real, 1 fake
    heldout: np.ndarray  # bool, the pipeline's held-out split
    generators: list[str]


DEMO_SET = "size400-seed0"  # the offline demo set `make serve` builds (pipeline demo-data --size 400)


def data_folder(name: str) -> Path:
    """``demo`` -> the demo set in the cache (``<cache_dir>/demo-data/size400-seed0``), else a set
    under ``../shared/data``."""
    if name == "demo":
        from pipeline.config import Config

        return Config().cache_path / "demo-data" / DEMO_SET
    return DATA_ROOT / name


def labelled_set(folder: Path) -> LabelledSet:
    """Every usable image of ``folder`` with its label and the split a run would give it."""
    scanned = scan(DataConfig(root=str(folder)))
    records = scanned.records
    labels = np.array([r.label for r in records])
    hc = HeadConfig()
    split = assign_splits(labels, [r.generator for r in records], [r.source for r in records],
                          [r.split for r in records], hc.holdout_fraction, hc.seed)
    name = "demo" if folder.name == DEMO_SET else folder.name
    return LabelledSet(name, [scanned.root / r.path for r in records], labels, split == HELDOUT,
                       [r.generator for r in records])


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity of two (N, D) arrays."""
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def fit_head(embeddings: np.ndarray, data: LabelledSet, seed: int = 0):
    """(projection module, DistilledHead) fit on the train split, as the runner fits the head."""
    torch.manual_seed(seed)
    projection = ProjectionModule(embeddings.shape[1], projection_dim(ProjectionConfig(), embeddings.shape[1])).eval()
    torch.nn.init.orthogonal_(projection.linear.weight)
    with torch.inference_mode():
        features = projection(torch.as_tensor(embeddings)).numpy()
    train = np.flatnonzero(~data.heldout)
    val = validation_mask(data.labels, train, HeadConfig.validation_fraction, seed)
    head = DistilledHead.from_config(HeadConfig(), seed=seed)
    head.fit(features[train[~val]], data.labels[train[~val]], features[train[val]],
             data.labels[train[val]])
    return projection, head


def heldout_metrics(embeddings: np.ndarray, data: LabelledSet) -> dict:
    """Held-out accuracy and AUC of the logistic probe and of the pipeline's head."""
    from bench.standin_probe import probe_scores

    y, test = data.labels, data.heldout
    score = probe_scores(embeddings, y, ~test, test, C=0.1)
    logistic = binary_metrics(y[test], sigmoid(score))
    projection, head = fit_head(embeddings, data)
    with torch.inference_mode():
        features = projection(torch.as_tensor(embeddings[test])).numpy()
    pipeline_head = binary_metrics(y[test], head.predict_proba(features))
    return {name: {"accuracy": m["accuracy"], "auc": m["auc"]}
            for name, m in (("logistic", logistic), ("head", pipeline_head))}


def per_generator_auc(embeddings: np.ndarray, data: LabelledSet) -> dict[str, float]:
    """Held-out AUC of the pipeline's head, per generator (each generator's fakes with all reals)."""
    projection, head = fit_head(embeddings, data)
    test = np.flatnonzero(data.heldout)
    with torch.inference_mode():
        prob = head.predict_proba(projection(torch.as_tensor(embeddings[test])).numpy())
    y, gens = data.labels[test], np.array([data.generators[i] for i in test])
    out = {}
    for g in sorted(set(gens[y == 1])):
        rows = (y == 0) | (gens == g)
        out[g] = binary_metrics(y[rows], prob[rows])["auc"]
    return out


def spearman_per_map(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Spearman correlation of each map in ``a`` with the same map in ``b`` ((..., gh, gw) each)."""
    from scipy.stats import spearmanr

    flat_a, flat_b = a.reshape(-1, a.shape[-2] * a.shape[-1]), b.reshape(-1, b.shape[-2] * b.shape[-1])
    return np.array([spearmanr(x, y)[0] for x, y in zip(flat_a, flat_b)])


def cpu_flags_line() -> str:
    """The CPU's model and its flags that decide precisions, for a bench's first line."""
    from pipeline.model.encoders.precision import INT8_DOT_FLAGS, NATIVE_BF16_FLAGS

    flags = cpu_flags()
    shown = [f for f in ("avx2", "avx512f") + NATIVE_BF16_FLAGS + INT8_DOT_FLAGS if f in flags]
    return f"CPU {machine()['cpu']}, {os.cpu_count()} cores, flags: {' '.join(shown) or 'none of note'}"


def machine() -> dict:
    """CPU, its bf16 flag, torch threads and the load average: where a figure was measured."""
    model = next((line.split(":", 1)[1].strip() for line in _cpuinfo().splitlines()
                  if line.startswith("model name")), "unknown")
    return {"cpu": model, "bf16_flag": native_bf16_flag(cpu_flags()),
            "int8_flag": int8_dot_flag(cpu_flags()), "cores": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
            "load_average": round(os.getloadavg()[0], 2)}


def _cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return ""


def command_line() -> str:
    """This benchmark's command line, with the script relative to the repository."""
    script = Path(sys.argv[0]).resolve()
    try:
        script = script.relative_to(REPO)
    except ValueError:
        pass
    return " ".join(["python", script.as_posix()] + sys.argv[1:])


def record(encoder, section: str, figures: dict, data: LabelledSet) -> None:
    """Store measured ``figures`` for ``encoder`` (refused for random weights and non-face data)."""
    if encoder.agreement_key is None:
        print(f"  not recorded: {encoder.info.name} has random weights (no evidence on real images)")
        return
    if data.name != "faces":
        print(f"  not recorded: agreement is recorded from the faces set only, not {data.name}")
        return
    entry = {**figures, "data": f"{data.name} ({len(data.paths)} images, {int(data.heldout.sum())} "
                                f"held out)",
             "command": command_line(), "measured": time.strftime("%Y-%m-%d"), **machine()}
    record_agreement(encoder.agreement_key, section, entry)
    print(f"  recorded {section} figures for {encoder.agreement_key} in "
          "pipeline/model/encoders/precision_agreement.json")
