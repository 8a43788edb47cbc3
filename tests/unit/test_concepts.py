"""Concepts: relevant superpixels are the ones kept, ACE cut-outs, clusters that separate what the
encoder separates, and the per-cell cache and PNG sheet."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from pipeline.explain.concepts import cut_out, extract_concepts, segment_image
from pipeline.config import Config, ConceptsConfig, EncoderConfig, to_dict
from pipeline.model.encoders import TinyEncoder
from pipeline.explain.cache import get_concepts
from pipeline.model.run_models import RunModels
from pipeline.cli.explain import cmd_concepts
from pipeline.store.sealed import is_intact, read_sealed_json
from pipeline.model.head import DistilledHead, HeadModule
from pipeline.model.projection import ProjectionModule, VisionOnlyProjection
from pipeline.store.run_store import RunStore

COLOURS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 60, 230)}


def seeded_models(seed: int = 0):
    torch.manual_seed(seed)
    projection, head = ProjectionModule(32, 32).eval(), HeadModule(32, 16).eval()
    with torch.no_grad():
        head.std.uniform_(0.02, 0.05)
    return projection, head


def disc_image(colour, rng, size=224) -> tuple[Image.Image, np.ndarray]:
    """A coloured disc at a random place on grey noise; returns the image and the disc mask."""
    bg = rng.integers(100, 150, size=(size, size, 1)).repeat(3, axis=2).astype(np.uint8)
    img = Image.fromarray(bg)
    cy, cx = rng.integers(60, size - 60, size=2)
    r = int(rng.integers(35, 50))
    ImageDraw.Draw(img).ellipse([cx - r, cy - r, cx + r, cy + r], fill=colour)
    yy, xx = np.mgrid[:size, :size]
    return img, ((yy - cy) ** 2 + (xx - cx) ** 2 <= r * r)


def test_segment_image_keeps_the_relevant_superpixels():
    rng = np.random.default_rng(0)
    img, disc = disc_image(COLOURS["red"], rng)
    kept = segment_image(np.asarray(img), disc.astype(np.float32), (15, 50, 80), keep_fraction=0.3,
                         max_segments=6)
    assert len(kept) == 6
    # best of each resolution in turn; the coarse one has a single above-average segment here
    assert [res for _, res, _ in kept] == [15, 50, 80, 50, 80, 50]
    for mask, _, score in kept[:3]:  # the best segment of each resolution lies in the disc
        assert disc[mask].mean() > 0.9
        assert np.isclose(score, disc[mask].mean())
    # nothing is kept from the background when the disc is relevant
    assert all(disc[m].mean() > 0.5 for m, _, _ in kept)


def test_cut_out_fills_with_the_mean_colour_and_crops_the_box():
    image = torch.full((3, 224, 224), 0.7)
    yy, xx = np.mgrid[:224, :224]
    mask = (yy - 60) ** 2 + (xx - 100) ** 2 <= 30 ** 2
    patch, bbox = cut_out(image, mask)
    assert bbox == (30, 70, 91, 131)
    assert patch.shape == (3, 224, 224)
    assert torch.allclose(patch[:, 112, 112], torch.full((3,), 0.7))  # centre of the disc
    assert torch.allclose(patch[:, 2, 2], torch.zeros(3), atol=1e-3)  # corner: outside the disc


def test_concepts_separate_what_the_encoder_separates(tiny):
    """Discs of three colours, the disc marked relevant: each concept holds one colour."""
    rng = np.random.default_rng(1)
    images, masks, colours = [], [], []
    for i in range(12):
        name = list(COLOURS)[i % 3]
        img, disc = disc_image(COLOURS[name], rng)
        images.append(tiny.preprocess(img))
        masks.append(disc.astype(np.float32))
        colours.append(name)
    x = torch.stack(images)
    projection, head = seeded_models()
    stages = []
    result = extract_concepts(tiny, projection, head, x, k=3, max_segments_per_image=3,
                              patches_per_concept=4, importance=np.stack(masks),
                              progress=lambda s, d, t: stages.append(s))
    assert len(result.segments) == 36 and len(result.concepts) == 3
    assert stages[0] == "relevance" and stages[-1] == "cluster"
    assert sum(c.size for c in result.concepts) == 36
    assert [c.size for c in result.concepts] == sorted((c.size for c in result.concepts), reverse=True)
    for c in result.concepts:
        seg_colours = [colours[result.segments[m].image] for m in c.members]
        assert max(seg_colours.count(n) for n in COLOURS) / len(seg_colours) >= 0.9, seg_colours
        np.testing.assert_allclose(c.profile, result.z[c.members].mean(0), rtol=1e-5)
        dist = np.linalg.norm(result.z[c.members] - result.z[c.members].mean(0), axis=1)
        assert dist[0] <= dist.max()
        assert len(c.central) == 4 and len({result.segments[m].image for m in c.central}) == 4
        for m in c.central:  # a shown patch is mostly its disc's colour
            rgb = result.patches[m].reshape(-1, 3).astype(int)
            want = np.array(COLOURS[colours[result.segments[m].image]])
            assert np.mean(np.abs(rgb - want).sum(1) < 60) > 0.5
    again = extract_concepts(tiny, projection, head, x, k=3, max_segments_per_image=3,
                             patches_per_concept=4, importance=np.stack(masks))
    np.testing.assert_array_equal(again.labels, result.labels)


def test_decision_relevance_path_runs(tiny):
    rng = np.random.default_rng(2)
    x = torch.stack([tiny.preprocess(disc_image(COLOURS["blue"], rng)[0]) for _ in range(3)])
    projection, head = seeded_models()
    result = extract_concepts(tiny, projection, head, x, k=5, max_segments_per_image=2)
    assert len(result.segments) == 6 and len(result.concepts) == 5
    assert all(0 < s.area < 1 for s in result.segments)


def write_disc_run(root: Path, n_images: int = 6, concepts: ConceptsConfig = ConceptsConfig()):
    rng = np.random.default_rng(3)
    data, run = root / "data", root / "runs" / "disc-run"
    records = []
    for i in range(n_images):
        rel = f"{'0_real' if i % 2 == 0 else '1_fake'}/img{i}.png"
        (data / rel).parent.mkdir(parents=True, exist_ok=True)
        disc_image(list(COLOURS.values())[i % 3], rng)[0].save(data / rel)
        records.append({"id": f"id{i}", "path": rel, "label": i % 2, "cell": 0 if i < 4 else 1})
    encoder = TinyEncoder(seed=0)
    projection_module, head_module = seeded_models()
    cfg = Config(encoder=EncoderConfig(name="tiny", device="cpu"), concepts=concepts)
    store = RunStore(run)
    store.write_records(records)
    store.write_meta({"run_id": "disc-run", "config": to_dict(cfg),
                      "encoder": dataclasses.asdict(encoder.info), "data": {"root": str(data)}})
    torch.save(VisionOnlyProjection.from_state({"in_dim": 32, "out_dim": 32, "weight":
                                                projection_module.linear.weight.detach()}).state(),
               run / "projection.pt")
    torch.save(DistilledHead.from_state({"in_dim": 32, "dim": 16, "state_dict":
                                         head_module.state_dict()}).state(), run / "head.pt")
    return run, RunModels(encoder, projection_module, head_module)


class Unusable:
    def __getattr__(self, name):
        raise AssertionError(f"models used ({name}) although the cache should have answered")


def test_get_concepts_caches_json_and_patches(tmp_path):
    run, models = write_disc_run(tmp_path, concepts=ConceptsConfig(k=2, patches_per_concept=3))
    seen = []
    out = get_concepts(run, 0, models=models, progress=lambda d, t, stage: seen.append((stage, d, t)))
    # each stage in words, with its own units: 4 images' maps, 4 images' segments, one clustering
    assert ("relevance maps of 4 images", 4, 4) in seen
    assert ("segments cut and embedded (images)", 4, 4) in seen
    assert seen[-1] == ("clustering the segments", 1, 1)
    assert out["cell"] == 0 and out["n_images"] == 4 and out["n_images_used"] == 4
    assert len(out["concepts"]) == 2
    assert sum(c["size"] for c in out["concepts"]) == out["n_segments"]
    records = RunStore(run).read_records()
    for c in out["concepts"]:
        # every segment's image is named, and the real/fake split of the segments adds up
        assert set(c["images"]) <= {0, 1, 2, 3} and len(c["images"]) == c["n_images"]
        assert c["segments_real"] + c["segments_fake"] == c["size"]
        assert (c["segments_real"] > 0) == any(records[i]["label"] == 0 for i in c["images"])
        assert len(c["profile"]) == 16 and len(c["patches"]) == len(c["sources"]) <= 3
        for p, src in zip(c["patches"], c["sources"]):
            assert Image.open(run / p).size == (224, 224)
            assert src["image_index"] in (0, 1, 2, 3)
    assert read_sealed_json(run / "concepts" / "cell-0.json") == json.loads(json.dumps(out))
    assert get_concepts(run, 0, models=RunModels(Unusable(), Unusable(), Unusable())) == out

    damaged = run / out["concepts"][0]["patches"][0]  # one byte of one patch changes on disk
    raw = bytearray(damaged.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    damaged.write_bytes(bytes(raw))
    with pytest.raises(AssertionError, match="models used"):  # not served from the cache
        get_concepts(run, 0, models=RunModels(Unusable(), Unusable(), Unusable()))
    assert get_concepts(run, 0, models=models) == out and is_intact(damaged)  # made again

    store = RunStore(run)
    meta = store.read_meta()
    meta["config"]["concepts"]["k"] = 3
    store.write_meta(meta)
    three = get_concepts(run, 0, models=models)
    assert len(three["concepts"]) == 3
    kept = {Path(p).name for c in three["concepts"] for p in c["patches"]}
    assert {p.name for p in (run / "concepts" / "cell-0").glob("*.png")} == kept  # stale ones gone
    with pytest.raises(ValueError, match="no images"):
        get_concepts(run, 9, models=models)


def test_cli_concepts_writes_a_sheet(tmp_path):
    run, _ = write_disc_run(tmp_path)
    path = cmd_concepts(run, 1, tmp_path / "out")
    assert path == tmp_path / "out" / "cell-1-concepts.png"
    sheet = Image.open(path)
    assert sheet.width > 224 and sheet.height > 100
