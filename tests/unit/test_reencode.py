"""Controlled re-encoding: spec parsing, every image out the same way, a separate embedding cache."""
from __future__ import annotations

import dataclasses
import pickle

import numpy as np
import pytest
from PIL import Image

from pipeline.config import DataConfig, from_dict, to_dict
from pipeline.data.scan import load_image_rgb
from pipeline.model.embed import cache_fingerprint, embed_paths
from pipeline.reencode_spec import ReencodeSpec


@pytest.mark.parametrize("text,expected", [
    ("jpeg:90:256", ReencodeSpec("jpeg", 90, 256)), ("JPG:75", ReencodeSpec("jpeg", 75, None)),
    ("jpeg", ReencodeSpec("jpeg", 90, None)), ("jpeg::128", ReencodeSpec("jpeg", 90, 128)),
    ("png", ReencodeSpec("png", None, None)), ("png:224", ReencodeSpec("png", None, 224)),
    (None, None), ("", None)])
def test_spec_parsing(text, expected):
    assert ReencodeSpec.parse(text) == expected


@pytest.mark.parametrize("text,match", [("gif", "expected jpeg"), ("jpeg:101", "1..100"), ("jpeg:x", "bad re-encoding"),
                                        ("png:90:1", "expected jpeg"), ("jpeg:90:2", "8..8192")])
def test_bad_specs_say_what_is_expected(text, match):
    with pytest.raises(ValueError, match=match):
        ReencodeSpec.parse(text)


def test_the_config_rejects_a_bad_spec_at_load_time():
    assert from_dict({"data": {"reencode": "jpeg:90:256"}}).data.reencode == "jpeg:90:256"
    with pytest.raises(ValueError, match="bad re-encoding spec 'jpeg:ninety'"):
        DataConfig(reencode="jpeg:ninety")


def test_the_config_holds_the_parsed_spec_outside_its_fingerprint():
    cfg = from_dict({"data": {"reencode": "jpeg:90:256"}})
    assert cfg.data.reencode_spec == ReencodeSpec("jpeg", 90, 256)
    assert cfg.data.reencode_spec is cfg.data.reencode_spec  # parsed once
    assert DataConfig().reencode_spec is None
    assert dataclasses.replace(cfg.data, reencode="png").reencode_spec == ReencodeSpec("png")
    assert pickle.loads(pickle.dumps(cfg)).data.reencode_spec == cfg.data.reencode_spec
    assert "reencode_spec" not in to_dict(cfg)["data"]  # saved config and fingerprints: the string only
    assert cfg.fingerprint("data") == from_dict({"data": {"reencode": "jpeg:90:256"}}).fingerprint("data")
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.data.reencode_spec = None


def test_the_data_package_names_the_same_spec():
    from pipeline.data import reencode

    assert reencode.ReencodeSpec is ReencodeSpec


def test_keys_and_words():
    assert ReencodeSpec.parse("jpeg:90:256").key == "jpeg-q90-s256"
    assert ReencodeSpec.parse("png").key == "png-full"
    assert ReencodeSpec.parse("jpeg:90:256").words == "JPEG quality 90, 256x256"
    assert "size" in ReencodeSpec.parse("png:64").neutralised_groups()
    assert "size" not in ReencodeSpec.parse("jpeg:80").neutralised_groups()


def _scene(w, h) -> Image.Image:
    """A smooth picture (gradients and a disc) that survives resizing recognisably."""
    yy, xx = np.mgrid[0:h, 0:w] / max(w, h)
    r = (np.hypot(xx - 0.5 * w / max(w, h), yy - 0.5 * h / max(w, h)) < 0.25) * 200
    return Image.fromarray(np.stack([xx * 255, yy * 255, r], -1).astype(np.uint8))


def test_a_png_and_a_big_jpeg_of_one_picture_come_out_alike(tmp_path):
    _scene(300, 200).save(tmp_path / "small.png")
    _scene(600, 400).save(tmp_path / "big.jpg", quality=70, subsampling=0)
    a, b = (load_image_rgb(tmp_path / n) for n in ("small.png", "big.jpg"))
    assert a.size != b.size
    spec = ReencodeSpec.parse("jpeg:90:128")
    ra, rb = spec(a), spec(b)
    assert ra.size == rb.size == (128, 128) and ra.mode == rb.mode == "RGB"
    diff = np.abs(np.asarray(ra, float) - np.asarray(rb, float)).mean()
    assert diff < 3.0, diff
    assert np.array_equal(np.asarray(ReencodeSpec.parse("png")(a)), np.asarray(a))  # PNG is lossless
    assert not np.array_equal(np.asarray(ReencodeSpec.parse("jpeg:90")(a)), np.asarray(a))


def test_reencoded_embeddings_differ_and_are_cached_apart(tmp_path, tiny):
    rng = np.random.default_rng(1)
    paths = []
    for i in range(6):
        p = tmp_path / f"i{i}.png"
        Image.fromarray(rng.integers(0, 255, (40 + 4 * i, 48, 3), dtype=np.uint8)).save(p)
        paths.append(p)
    cache = tmp_path / "cache"
    spec = ReencodeSpec.parse("jpeg:50:32")
    plain = embed_paths(tiny, paths, cache, num_workers=0)
    coded = embed_paths(tiny, paths, cache, num_workers=0, transform=spec)
    assert coded.n_computed == 6 and coded.n_cached == 0  # the plain cache was not used
    assert coded.keys == plain.keys  # the content keys are the files', not the re-encoded images'
    assert not np.allclose(plain.embeddings, coded.embeddings, atol=1e-3)
    folders = sorted(d.name for d in (cache / "embeddings").iterdir())
    fp = tiny.info.fingerprint
    assert folders == sorted([fp, f"{fp}-jpeg-q50-s32"]) == sorted([fp, cache_fingerprint(fp, spec)])
    again = embed_paths(tiny, paths, cache, num_workers=0, transform=spec)
    assert again.n_cached == 6 and again.n_computed == 0
    np.testing.assert_array_equal(again.embeddings, coded.embeddings)


def test_a_transform_without_key_is_refused_and_a_failing_one_reported(tmp_path, tiny):
    Image.new("RGB", (32, 32)).save(tmp_path / "a.png")
    with pytest.raises(ValueError, match="cache key"):
        embed_paths(tiny, [tmp_path / "a.png"], tmp_path / "cache", transform=lambda im: im)

    class Broken:
        key = "broken"

        def __call__(self, im):
            raise OSError("encoder exploded")

    result = embed_paths(tiny, [tmp_path / "a.png"], tmp_path / "cache", num_workers=0, transform=Broken())
    assert result.failures == [(0, "cannot apply broken (OSError: encoder exploded)")]



def test_a_shard_fills_the_cache_the_run_reads_with_re_encoding(tmp_path):
    """``embed_paths_for`` takes every embedding setting from the config, re-encoding included, and
    both the run and a shard (``pipeline.model.shards``) embed with it: a re-encoded data set
    embedded in shards is all in the cache when the run looks (the shard once used the plain cache)."""
    from pipeline.config import REPO_ROOT, load_config
    from pipeline.data.scan import scan
    from pipeline.model.embed import embed_paths_for
    from pipeline.model.encoders import shared_encoder
    from pipeline.model.shards import embed_shard

    rng = np.random.default_rng(2)
    for label in ("0_real", "1_fake"):
        (tmp_path / "data" / label).mkdir(parents=True)
        for i in range(4):
            Image.fromarray(rng.integers(0, 255, (48, 40 + 4 * i, 3), dtype=np.uint8)).save(
                tmp_path / "data" / label / f"{i}.png")
    cfg = load_config(REPO_ROOT / "configs" / "test.yaml",
                      [f"cache_dir={tmp_path / 'cache'}", f"data.root={tmp_path / 'data'}",
                       "data.reencode=jpeg:80:32"])
    assert embed_shard(cfg, 0, 1)["computed"] == 8
    scanned = scan(cfg.data)
    paths = [scanned.path(r) for r in scanned.records]
    encoder = shared_encoder(cfg.encoder, cfg.cache_path)
    result = embed_paths_for(cfg, encoder, paths)
    assert (result.n_computed, result.n_cached) == (0, 8)
    folder = cache_fingerprint(encoder.info.fingerprint, cfg.data.reencode_spec)
    assert folder.endswith("-jpeg-q80-s32") and (cfg.cache_path / "embeddings" / folder).is_dir()
    assert embed_paths(encoder, paths, cfg.cache_path, num_workers=0).n_computed == 8  # plain: apart
