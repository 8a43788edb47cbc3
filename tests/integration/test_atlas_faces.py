"""On real face photos (../shared/data/faces: FFHQ reals, StyleGAN2 fakes), the stand-in's maps of
held-out fakes are profiled on the subject (the face), with the subject mask from DINOv2's patch
features: the dimensions that carry the decision put more relevance per pixel on the face than on
the background, by the verdict's margin (odds ratio >= 1.25), and the mask covers a face-sized part
of a portrait. The blur test agrees: blurring the face moves the fakes' logit more, per pixel, than
blurring the background, by the same margin. The head is test_relevance_standin's (16 + 16 faces' stand-in embeddings, random
orthogonal projection), so that the 16 dimensions mean something. Skipped without the data.
"""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from pipeline.config import Config
from pipeline.explain.contributions import column_order
from pipeline.explain.profiles import VERDICT_ODDS, profile_image, summarise
from pipeline.explain.region_evidence import blur_test
from pipeline.explain.relevance import input_rgb, relevance_maps
from pipeline.explain.subject_features import subject_masks_of
from pipeline.explain.subject_mask import SubjectMask
# the stand-in and a head fitted on 16 + 16 faces, as the relevance tests build them
from tests.integration.test_relevance_standin import (_batch, _faces, models, pytestmark, standin,  # noqa: F401
                                                      two_torch_threads)


def test_held_out_fakes_are_profiled_on_the_face(standin, models):
    projection, head = models
    held = _batch(standin, _faces("1_fake", 100, 4))
    result = relevance_maps(standin, projection, head, held)
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
    subjects = np.stack([SubjectMask(j, *masks[j]).at(rgb.shape[1:3]) for j in range(len(rgb))])
    tests = blur_test(SimpleNamespace(encoder=standin, projection=projection, head=head, lock=standin.lock,
                                      device=standin.device), rgb, subjects, list(range(len(rgb))))
    on_face, on_rest = np.mean([t.logit_subject for t in tests]), np.mean([t.logit_background for t in tests])
    area = float(subjects.mean())
    blur_odds = (on_face / on_rest) / (area / (1 - area))
    assert blur_odds >= VERDICT_ODDS, (on_face, on_rest, area)
    print("blur test: the logit moves", round(float(on_face), 3), "(face blurred),", round(float(on_rest), 3),
          "(background blurred), odds", round(float(blur_odds), 2))
    print("subject share of the decisive dimensions",  # the figure for the note (pytest -s)
          [round(summaries[k].subject_share, 3) for k in decisive], "area", round(float(np.mean(areas)), 3),
          "all dimensions", round(float(np.mean([s.subject_share for s in summaries])), 3),
          "verdicts", [s.verdict for s in summaries].count("subject"), "of", len(summaries), "subject")
