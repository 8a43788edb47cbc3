"""Relevance maps of the DINOv2 stand-in on real face photos (FFHQ / StyleGAN2).

A small real/fake head is fitted on stand-in embeddings of 32 faces, so the 16 dimensions and
the logit mean something. Then:

* deletion check (Chefer et al.'s perturbation test): masking a dimension's most relevant 20 %
  of patches moves that dimension more than masking 20 % at random;
* golden: a GAN face pasted in the middle of a blank grey canvas (half the area) gets most of
  its aggregate and per-dimension relevance on the face, not on the blank border.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pipeline.config import Config
from pipeline.model.encoders import DinoV2StandinEncoder, StandinUnavailableError
from pipeline.explain.faithfulness import deletion_check
from pipeline.model.head import DistilledHead
from pipeline.model.projection import ProjectionModule
from pipeline.explain.relevance import relevance_maps
from tests.helpers import torch_threads

FACES = Path(__file__).resolve().parents[3] / "shared" / "data" / "faces"

pytestmark = [
    pytest.mark.slow, pytest.mark.realdata,
    pytest.mark.skipif(not FACES.exists(), reason=f"{FACES} is absent"),
]


@pytest.fixture(scope="module", autouse=True)
def two_torch_threads():
    with torch_threads(2):
        yield


@pytest.fixture(scope="module")
def standin():
    try:
        return DinoV2StandinEncoder(Config().cache_path, device="cpu")
    except StandinUnavailableError as e:
        pytest.skip(f"stand-in weights unavailable: {e}")


def _faces(label: str, start: int, n: int) -> list[Path]:
    return sorted((FACES / label).iterdir())[start:start + n]


def _batch(encoder, paths) -> torch.Tensor:
    return torch.stack([encoder.preprocess(Image.open(p).convert("RGB")) for p in paths])


@pytest.fixture(scope="module")
def models(standin):
    """Orthogonal random projection (embedding -> 256) and a head fitted on 16 real + 16 fake faces."""
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
    assert ((head.transform(features)[1] > 0) == labels).mean() >= 0.9  # the head learned something
    return projection, head.torch_module()


def test_deletion_check_on_real_photos(standin, models):
    projection, head = models
    x = _batch(standin, _faces("0_real", 100, 3) + _faces("1_fake", 100, 3))
    result = relevance_maps(standin, projection, head, x)
    report = deletion_check(standin, projection, head, x, result, fraction=0.2, n_random=3, seed=0)
    summary = report.summary()
    # Relevant patches move their dimension more than random ones: on average, for most
    # dimensions, and in most images.
    assert summary["mean_gain"] > 0, summary
    assert (report.gain > 0).sum() >= 12, report.gain
    assert summary["mean_win_rate"] >= 0.6, report.win_rate


def test_golden_gan_face_on_blank_border(standin, models):
    projection, head = models
    face = Image.open(_faces("1_fake", 150, 1)[0]).convert("RGB").resize((158, 158), Image.BICUBIC)
    canvas = Image.new("RGB", (224, 224), (128, 128, 128))
    canvas.paste(face, (33, 33))
    inside = np.zeros((224, 224), dtype=bool)
    inside[33:191, 33:191] = True
    assert abs(inside.mean() - 0.5) < 0.01
    r = relevance_maps(standin, projection, head, standin.preprocess(canvas)[None])
    aggregate = np.abs(r.aggregate[0])
    assert aggregate[inside].sum() / aggregate.sum() > 0.7
    per_dim = r.maps[0][:, inside].sum(1) / r.maps[0].reshape(16, -1).sum(1)
    assert np.all(per_dim > 0.65), per_dim
