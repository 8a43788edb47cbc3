"""Where a dimension reads its evidence: the blur test on the subject and on the background.

A relevance map says where the class token gathers its information from (Chefer et al.'s rollout
follows the attention), which is not always where the evidence that moves a dimension lies: on the
atlas golden sets (``tests/integration/test_atlas_golden.py``) the decisive dimensions' maps sit on
the subject whether the fakes differ on the subject or only in the background's texture. So each
profiled image also gets a causal test: its model input with the subject blurred, and with the
background blurred (Gaussian, ``BLUR_SIGMA`` pixels of the model input), each through the run's
encoder, projection and head; ``|z_k(blurred) - z_k(image)|`` is how much dimension k depends on
the fine detail of that region. Blur is the "meaningful perturbation" of Fong & Vedaldi (ICCV
2017): it removes detail (noise, upsampling patterns, compression blocks: what forensics looks for)
and keeps the region's colours and shapes, so the image stays an image of the same scene. Fine
detail is what this measures: a dimension that reads a subject's colour moves under neither blur
(``profiles`` then calls its evidence "none").

Kept per image as a derived result (``<run>/evidence/<image id>.npz``), keyed by the run's models,
the model input and the subject mask. Reading is torch-free; computing imports torch.
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from pipeline.explain.results import arrays_digest, per_image_name
from pipeline.store.derived import Derived

EVIDENCE_VERSION = 1  # bump when the test's meaning changes
BLUR_SIGMA = 2.0  # pixels of the model input: removes detail finer than ~4 px, keeps shapes and colours
PASS_IMAGES = 16  # model inputs per forward (each image sends three)


@dataclass(frozen=True, eq=False)
class RegionEvidence:
    """One image's blur test: how far each dimension (and the logit) moves when a region is blurred.

    Attributes
    ----------
    index : the image's row in ``records.csv``.
    subject, background : (K,) float32, ``|z_k(region blurred) - z_k(image)|``.
    logit_subject, logit_background : the same for the real/fake logit.
    """

    index: int
    subject: np.ndarray
    background: np.ndarray
    logit_subject: float
    logit_background: float


def blur_test(models, rgbs: np.ndarray, subjects: np.ndarray, indices: Sequence[int],
              sigma: float = BLUR_SIGMA) -> list[RegionEvidence]:
    """The blur test of N images.

    Parameters
    ----------
    models : ``RunModels`` (encoder, projection, head) of the run.
    rgbs : (N, H, W, 3) uint8 model inputs (``KeptMaps.rgb``: what the maps were computed on).
    subjects : (N, H, W) bool subject masks at that size (``SubjectMask.at``).
    indices : the images' rows, one per input.
    """
    import torch
    import torchvision.transforms.functional as TF

    from pipeline.explain.relevance import model_input

    if not len(rgbs):
        return []
    x = torch.from_numpy(np.ascontiguousarray(rgbs)).permute(0, 3, 1, 2).float() / 255
    blurred = TF.gaussian_blur(x, kernel_size=2 * int(np.ceil(3 * sigma)) + 1, sigma=sigma)
    region = torch.from_numpy(np.ascontiguousarray(subjects)).unsqueeze(1)
    variants = torch.stack([x, torch.where(region, blurred, x), torch.where(region, x, blurred)], 1)
    flat = model_input(models.encoder, variants.flatten(0, 1))
    z_parts, logit_parts = [], []
    with models.lock, torch.inference_mode():
        for s in range(0, len(flat), 3 * PASS_IMAGES):
            z, logit = models.head(models.projection(models.encoder.embed(flat[s:s + 3 * PASS_IMAGES].to(models.device))))
            z_parts.append(z.float().cpu().numpy())
            logit_parts.append(logit.float().reshape(-1).cpu().numpy())
    z = np.concatenate(z_parts).reshape(len(rgbs), 3, -1)
    logit = np.concatenate(logit_parts).reshape(len(rgbs), 3)
    return [RegionEvidence(int(i), np.abs(z[n, 1] - z[n, 0]).astype(np.float32),
                           np.abs(z[n, 2] - z[n, 0]).astype(np.float32),
                           float(abs(logit[n, 1] - logit[n, 0])), float(abs(logit[n, 2] - logit[n, 0])))
            for n, i in enumerate(indices)]


# -- kept results -------------------------------------------------------------------------------------

def evidence_name(image_id: str) -> str:
    return per_image_name("evidence", image_id)


def evidence_derived(run_dir: str | Path, index: int, image_id: str, rgb: np.ndarray,
                     subject: np.ndarray) -> Derived:
    """Image ``index``'s blur test as a derived result (keyed by the run's models, its model input
    and its subject mask at that size)."""
    def load(data: bytes, key: str) -> RegionEvidence | None:
        with np.load(io.BytesIO(data), allow_pickle=False) as f:
            if str(f["key"]) != key:
                return None
            return RegionEvidence(int(index), f["subject"].astype(np.float32), f["background"].astype(np.float32),
                                  float(f["logit"][0]), float(f["logit"][1]))

    def dump(e: RegionEvidence, key: str) -> bytes:
        buf = io.BytesIO()
        np.savez_compressed(buf, key=np.array(key), subject=e.subject, background=e.background,
                            logit=np.array([e.logit_subject, e.logit_background], np.float64))
        return buf.getvalue()

    return Derived(run_dir, evidence_name(image_id),
                   {"v": EVIDENCE_VERSION, "sigma": BLUR_SIGMA, "input": arrays_digest(rgb, subject)},
                   dump=dump, load=load)


__all__ = ["BLUR_SIGMA", "EVIDENCE_VERSION", "RegionEvidence", "blur_test", "evidence_derived", "evidence_name"]
