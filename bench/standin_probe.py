"""How much of the demo set's real/fake signal can the DINOv2 stand-in see? Linear probes.

Issue 3 asks for detection on the demo set "well above chance" with the stand-in. This measures
the ceiling of the stand-in's features, independently of the pipeline's head: logistic
regressions (standardised features, C in 0.01 / 0.1 / 1) fit on the demo set's train split and
scored on its held-out split (by source photo), for features taken from every block:

* CLS token, mean of the patch tokens, per-channel spread (std) of the patch tokens;
* with the encoder's own preprocessing (shorter side to 224, bicubic) and with a 224 centre crop
  of the 256 px images (no resampling, which might keep more of the generators' pixel traces);
* the pipeline's embedding (CLS of blocks 4, 6, 8, 12) with and without mean patch tokens.

Each set is scored with three C values on the held-out split, overall and per generator (all
held-out reals against that generator's fakes); the best of them is an optimistic ceiling, which is
what the question needs (no choice of features or regularisation does better). The last lines give
that ceiling for each generator separately.

Usage: python bench/standin_probe.py [--preprocess resize,crop] [--quick]   (builds the demo set if
missing; ~4 min on 2 cores, about half of it with ``--quick``: the encoder's own preprocessing only)
"""
from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

if not __package__:  # started as `python bench/NAME.py`: the repository root on sys.path
    import _path  # noqa: F401

from bench._options import parse_args  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402
from torchvision import transforms  # noqa: E402

EMBED = [3, 5, 7, 11]  # pipeline.model.encoders.dinov2_standin.EMBED_BLOCKS


def block_features(encoder, paths, preprocess, batch_size=32):
    """(CLS, mean patch, patch std) of every block after the final norm: 3 x (N, 12, 384)."""
    m = encoder.model
    cls, mean, std = [], [], []
    for i in range(0, len(paths), batch_size):
        batch = torch.stack([preprocess(Image.open(p).convert("RGB")) for p in paths[i:i + batch_size]])
        with torch.inference_mode():
            x = m.norm_pre(m.patch_drop(m._pos_embed(m.patch_embed(batch))))
            c, a, s = [], [], []
            for block in m.blocks:
                x = block(x)
                xn = m.norm(x)
                c.append(xn[:, 0])
                a.append(xn[:, 1:].mean(1))
                s.append(xn[:, 1:].std(1))
        cls.append(torch.stack(c, 1).numpy())
        mean.append(torch.stack(a, 1).numpy())
        std.append(torch.stack(s, 1).numpy())
    return np.concatenate(cls), np.concatenate(mean), np.concatenate(std)


def probe_scores(X, y, train, score_on, C):
    """Fit standardised features + logistic regression on ``train``; scores of ``score_on``."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler
    scaler = StandardScaler().fit(X[train])
    lr = LogisticRegression(C=C, max_iter=3000).fit(scaler.transform(X[train]), y[train])
    return lr.decision_function(scaler.transform(X[score_on]))


def probe(X, y, test, C, generator):
    """Held-out AUC overall and per generator (all held-out reals vs that generator's fakes)."""
    from sklearn.metrics import roc_auc_score
    score, yt, gen = probe_scores(X, y, ~test, test, C), y[test], generator[test]
    per = {g: roc_auc_score(yt[(yt == 0) | (gen == g)], score[(yt == 0) | (gen == g)])
           for g in sorted(set(gen[yt == 1]))}
    return roc_auc_score(yt, score), per


def within_photo(X, y, source, folds=8):
    """Grouped cross-validation over all photos: (pooled AUC, median AUC within one photo).

    A gap between the two says the features separate the classes within a scene but that the
    scene itself moves the score more than the real/fake difference does.
    """
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import GroupKFold
    score = np.zeros(len(y))
    for train, val in GroupKFold(folds).split(X, y, source):
        score[val] = probe_scores(X, y, train, val, C=0.01)
    per_photo = [roc_auc_score(y[source == s], score[source == s]) for s in sorted(set(source))
                 if len(set(y[source == s])) == 2 and (source == s).sum() >= 10]
    return roc_auc_score(y, score), float(np.median(per_photo)), len(per_photo)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preprocess", default="resize,crop",
                    help="comma list: resize (the encoder's own), crop (224 centre crop, no resampling)")
    args = parse_args(ap, quick={"preprocess": "resize"}, argv=argv)
    kinds = args.preprocess.split(",")
    if not set(kinds) <= {"resize", "crop"}:
        ap.error(f"--preprocess: resize and/or crop, not {args.preprocess!r}")

    from pipeline.config import load_config
    from pipeline.data.demo.builtin import ensure_demo_config
    from pipeline.model.encoders import shared_encoder
    from pipeline.model.encoders.dinov2_standin import IMAGENET_MEAN, IMAGENET_STD

    torch.set_num_threads(2)
    cfg = ensure_demo_config(load_config("configs/standin.yaml"))
    root = Path(cfg.data.root)
    rows = list(csv.DictReader(open(root / "manifest.csv")))
    paths = [root / r["path"] for r in rows]
    y = np.array([r["label"] == "fake" for r in rows], dtype=int)
    test = np.array([r["split"] == "heldout" for r in rows])
    generator = np.array([r["generator"] for r in rows])
    source = np.array([r["source"] for r in rows])
    encoder = shared_encoder(cfg.encoder, cfg.cache_path)
    crop = transforms.Compose([transforms.CenterCrop(224), transforms.ToTensor(),
                               transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)])
    n = len(y)
    results = []
    for name, preprocess in (("resize", encoder.preprocess), ("crop", crop)):
        if name not in kinds:
            continue
        t0 = time.perf_counter()
        cls, mean, std = block_features(encoder, paths, preprocess)
        print(f"{name}: features of {n} images in {time.perf_counter() - t0:.0f} s", flush=True)
        sets = {f"{name} block {b + 1:>2} {kind}": f[:, b]
                for b in range(12) for kind, f in (("cls", cls), ("mean", mean), ("std", std))}
        sets[f"{name} embedding (CLS 4,6,8,12)"] = cls[:, EMBED].reshape(n, -1)
        sets[f"{name} embedding + mean patches"] = np.concatenate(
            [cls[:, EMBED].reshape(n, -1), mean[:, EMBED].reshape(n, -1)], axis=1)
        sets[f"{name} patch std, blocks 1-4"] = std[:, :4].reshape(n, -1)
        sets[f"{name} mean patches, blocks 1-4"] = mean[:, :4].reshape(n, -1)
        if name == "resize":
            pooled, median, n_photos = within_photo(sets[f"{name} embedding (CLS 4,6,8,12)"], y, source)
            print(f"pipeline embedding, grouped 8-fold CV over all photos: pooled AUC {pooled:.3f}, "
                  f"median AUC within one photo {median:.3f} ({n_photos} photos with >= 10 images)")
        for label, X in sets.items():
            for C in (0.01, 0.1, 1.0):
                auc, per = probe(X, y, test, C, generator)
                results.append((auc, f"{label} (C={C})", per))
    results.sort(key=lambda r: r[0], reverse=True)
    print(f"\nheld-out AUC, {len(results) // 3} feature sets x 3 C values, "
          f"{int((~test).sum())} train / {int(test.sum())} held-out images; top 10:")
    for auc, label, per in results[:10]:
        print(f"  {auc:.3f}  {label:<48} " + "  ".join(f"{g} {a:.3f}" for g, a in per.items()))
    print(f"best: {results[0][0]:.3f} ({results[0][1]})")
    print("\nper generator, the best held-out AUC over every feature set and C (optimistic ceiling):")
    for g in results[0][2]:
        auc, label = max(((per[g], label) for _, label, per in results), key=lambda r: r[0])
        print(f"  {g:<22} {auc:.3f}  ({label})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
