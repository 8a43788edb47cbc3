"""On real face photos (../shared/data/faces: FFHQ reals, StyleGAN2 fakes), the stand-in's maps of
held-out fakes are profiled on the subject (the face), with the subject mask from DINOv2's patch
features: the dimensions that carry the decision put more relevance per pixel on the face than on
the background, by the verdict's margin (odds ratio >= 1.25), and the mask covers a face-sized part
of a portrait. A head is fitted on 16 + 16 faces' stand-in embeddings (random orthogonal
projection), as in test_relevance_standin, so that the 16 dimensions mean something.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pipeline.config import Config
from pipeline.explain.contributions import column_order
from pipeline.explain.profiles import VERDICT_ODDS, profile_image, summarise
from pipeline.explain.relevance import input_rgb, relevance_maps
from pipeline.explain.subject_features import subject_masks_of
from pipeline.explain.subject_mask import SubjectMask
from pipeline.model.encoders import DinoV2StandinEncoder, StandinUnavailableError
from pipeline.model.head import DistilledHead
from pipeline.model.projection import ProjectionModule
from tests.helpers import torch_threads

FACES = Path(__file__).resolve().parents[3] / "shared" / "data" / "faces"

pytestmark = [pytest.mark.slow, pytest.mark.realdata,
              pytest.mark.skipif(not FACES.exists(), reason=f"{FACES} is absent")]


def _faces(label: str, start: int, n: int) -> list[Path]:
    return sorted((FACES / label).iterdir())[start:start + n]


def _batch(encoder, paths) -> torch.Tensor:
    return torch.stack([encoder.preprocess(Image.open(p).convert("RGB")) for p in paths])


def test_held_out_fakes_are_profiled_on_the_face():
    with torch_threads(2):
        try:
            standin = DinoV2StandinEncoder(Config().cache_path, device="cpu", precision="fp32")
        except StandinUnavailableError as e:
            pytest.skip(f"stand-in weights unavailable: {e}")
        x = _batch(standin, _faces("0_real", 0, 16) + _faces("1_fake", 0, 16))
        with torch.inference_mode():
            emb = torch.cat([standin.embed(x[i:i + 16]) for i in range(0, len(x), 16)])
        torch.manual_seed(0)
        projection = ProjectionModule(standin.info.embed_dim, 256).eval()
        torch.nn.init.orthogonal_(projection.linear.weight)
        with torch.inference_mode():
            features = projection(emb).numpy()
        labels = np.array([0] * 16 + [1] * 16)
        head = DistilledHead(max_epochs=200, patience=30, seed=0).fit(features, labels, features, labels)
        held = _batch(standin, _faces("1_fake", 100, 4))
        result = relevance_maps(standin, projection, head.torch_module(), held)
        rgb = input_rgb(standin, held)
        masks = subject_masks_of(rgb, Config().cache_path)
    profiles = [profile_image(j, result.patch_maps[j], rgb[j], SubjectMask(j, *masks[j]).at(rgb.shape[1:3]),
                              result.contributions[j], result.z[j]) for j in range(len(rgb))]
    areas = [p.subject_area for p in profiles]
    assert all(0.25 < a < 0.8 for a in areas), areas  # a face fills much, not all, of a portrait
    summaries = summarise(profiles)
    decisive = column_order(result.contributions)[:3]
    for k in decisive:
        s = summaries[k]
        odds = (s.subject_share / (1 - s.subject_share)) / (s.subject_area / (1 - s.subject_area))
        assert s.verdict == "subject" and odds >= VERDICT_ODDS, (k, s)
    print("subject share of the decisive dimensions",  # the figure for the note (pytest -s)
          [round(summaries[k].subject_share, 3) for k in decisive], "area", round(float(np.mean(areas)), 3),
          "all dimensions", round(float(np.mean([s.subject_share for s in summaries])), 3),
          "verdicts", [s.verdict for s in summaries].count("subject"), "of", len(summaries), "subject")
