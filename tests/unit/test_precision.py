"""Precision choice (``pipeline.model.encoders.precision``): CPU bf16 detection, the agreement table,
separate embedding and map precisions, and precision as part of the embedding cache key."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

import pipeline.model.encoders.precision as precision
from pipeline.model.embed import embed_paths
from tests.helpers import noise_pngs
from pipeline.model.encoders import TinyEncoder
from pipeline.model.encoders.dinov2_standin import AGREEMENT_KEY as STANDIN_KEY
from pipeline.model.encoders.precision import (COSINE_MIN, SPEARMAN_MIN, choose_precision, cpu_flags,
                                         load_agreement, native_bf16_flag, record_agreement)
from pipeline.model.head import HeadModule
from pipeline.model.projection import ProjectionModule
from pipeline.explain.relevance import relevance_maps, rollout_cls_rows

EPYC = ("processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC\n"
        "flags\t\t: fpu vme avx2 avx512f avx512_bf16 avx512_vnni\n\nprocessor\t: 1\n")
OLD_XEON = "model name\t: Intel Xeon\nflags\t\t: fpu avx2 avx512f avx512bw\n"
SAPPHIRE = "flags\t\t: fpu avx512f amx_tile amx_bf16 amx_int8\n"
ARM = "processor\t: 0\nFeatures\t: fp asimd bf16 i8mm\n"


def passing(**changes) -> dict:
    """An agreement entry whose figures pass every threshold; ``changes`` spoils some."""
    heldout = {"logistic": {"fp32": {"accuracy": 0.90, "auc": 0.95},
                            "bf16": {"accuracy": 0.905, "auc": 0.948}}}
    entry = {"embedding": {"cosine_min": 0.9999, "heldout": heldout, "speedup": 2.0},
             "maps": {"spearman_min": 0.99, "speedup": 1.5}}
    for dotted, value in changes.items():
        section, key = dotted.split("__")
        entry[section][key] = value
    return entry


# -- CPU detection ---------------------------------------------------------------------------------
def test_cpu_flags_parse_fake_cpuinfo():
    assert native_bf16_flag(cpu_flags(EPYC)) == "avx512_bf16"
    assert native_bf16_flag(cpu_flags(SAPPHIRE)) == "amx_bf16"
    assert native_bf16_flag(cpu_flags(OLD_XEON)) is None  # AVX-512 without bf16: emulated, slow
    assert native_bf16_flag(cpu_flags(ARM)) is None  # ARM's bf16 is not one of the x86 flags
    assert cpu_flags("") == set() and native_bf16_flag(cpu_flags("no flags here")) is None


# -- the choice ------------------------------------------------------------------------------------
def test_explicit_precision_is_obeyed_everywhere():
    for p in ("fp32", "bf16", "fp16"):
        choice = choose_precision(p, "cpu", None, flags=set(), table={})
        assert (choice.embed, choice.maps) == (p, p) and "encoder.precision" in choice.reason
    with pytest.raises(ValueError, match="precision must be"):
        choose_precision("half", "cpu", None)


def test_auto_on_cuda_uses_bf16_or_fp16():
    assert choose_precision("auto", "cuda", None, cuda_bf16=True).embed == "bf16"
    assert choose_precision("auto", "cuda", None, cuda_bf16=False).maps == "fp16"


def test_auto_on_cpu_stays_fp32_without_evidence():
    table = {"k": passing()}
    no_bf16 = choose_precision("auto", "cpu", "k", flags=cpu_flags(OLD_XEON), table=table)
    assert (no_bf16.embed, no_bf16.maps) == ("fp32", "fp32") and "no native bf16" in no_bf16.reason
    random = choose_precision("auto", "cpu", None, flags=cpu_flags(EPYC), table=table)
    assert random.embed == "fp32" and "random weights" in random.reason
    unknown = choose_precision("auto", "cpu", "other", flags=cpu_flags(EPYC), table=table)
    assert unknown.embed == "fp32" and "never measured for other" in unknown.reason


def test_auto_on_cpu_picks_bf16_only_where_figures_pass():
    flags = cpu_flags(EPYC)
    good = choose_precision("auto", "cpu", "k", flags=flags, table={"k": passing()})
    assert (good.embed, good.maps) == ("bf16", "bf16") and "avx512_bf16" in good.reason

    maps_disagree = choose_precision("auto", "cpu", "k", flags=flags,
                                     table={"k": passing(maps__spearman_min=SPEARMAN_MIN - 0.01)})
    assert (maps_disagree.embed, maps_disagree.maps) == ("bf16", "fp32")
    assert "Spearman" in maps_disagree.reason

    low_cosine = passing(embedding__cosine_min=COSINE_MIN["bf16"] - 1e-4)
    assert choose_precision("auto", "cpu", "k", flags=flags, table={"k": low_cosine}).embed == "fp32"

    worse_auc = passing()
    worse_auc["embedding"]["heldout"]["logistic"]["bf16"]["auc"] = 0.95 - 0.011
    choice = choose_precision("auto", "cpu", "k", flags=flags, table={"k": worse_auc})
    assert choice.embed == "fp32" and "auc" in choice.reason and choice.maps == "bf16"

    not_faster = choose_precision("auto", "cpu", "k", flags=flags,
                                  table={"k": passing(embedding__speedup=1.02, maps__speedup=0.9)})
    assert (not_faster.embed, not_faster.maps) == ("fp32", "fp32") and "speed-up" in not_faster.reason

    no_maps = {"k": {"embedding": passing()["embedding"]}}
    choice = choose_precision("auto", "cpu", "k", flags=flags, table=no_maps)
    assert (choice.embed, choice.maps) == ("bf16", "fp32") and "not measured" in choice.reason


def test_recorded_sections_merge_and_random_weights_are_refused(tmp_path):
    path = tmp_path / "agreement.json"
    record_agreement("k", "embedding", passing()["embedding"], path)
    record_agreement("k", "maps", passing()["maps"], path)
    assert load_agreement(path) == {"k": passing()}
    with pytest.raises(ValueError, match="random weights"):
        record_agreement(None, "maps", {}, path)
    path.write_text("{not json")
    with pytest.raises(ValueError, match="unreadable"):
        load_agreement(path)


def test_checked_in_table_lets_the_standin_use_bf16_on_a_bf16_cpu():
    """The stand-in's figures measured on the faces set (bench/embed.py, bench/relevance.py) pass,
    each with the command that reproduces it; no random-weight encoder is listed."""
    table = load_agreement()
    entry = table[STANDIN_KEY]
    for section in ("embedding", "maps"):
        assert "bench/" in entry[section]["command"] and "faces" in entry[section]["data"]
    choice = choose_precision("auto", "cpu", STANDIN_KEY, flags=cpu_flags(EPYC), table=table)
    assert choice.embed == "bf16", choice.reason
    assert not any("random" in key for key in table)


# -- encoders, cache key, maps -----------------------------------------------------------------------
@pytest.fixture()
def tiny_checkpoint(tmp_path):
    """A tiny encoder loaded from a file: real (non-random) weights, so it has an agreement key."""
    path = tmp_path / "tiny.pt"
    torch.save(TinyEncoder(seed=2).model.state_dict(), path)
    return path


def encoder_with_table(monkeypatch, tmp_path, checkpoint, entry, requested="auto"):
    monkeypatch.setattr(precision, "cpu_flags", lambda text=None: cpu_flags(EPYC))
    key = TinyEncoder(checkpoint=checkpoint, cache_dir=tmp_path / "cache").agreement_key
    monkeypatch.setattr(precision, "load_agreement", lambda path=None: {key: entry})
    return TinyEncoder(checkpoint=checkpoint, precision=requested, cache_dir=tmp_path / "cache")


def test_auto_bf16_shares_the_explicit_bf16_fingerprint(monkeypatch, tmp_path, tiny_checkpoint):
    auto = encoder_with_table(monkeypatch, tmp_path, tiny_checkpoint, passing())
    bf16 = encoder_with_table(monkeypatch, tmp_path, tiny_checkpoint, passing(), requested="bf16")
    fp32 = encoder_with_table(monkeypatch, tmp_path, tiny_checkpoint, passing(), requested="fp32")
    assert auto.agreement_key and "file:" in auto.agreement_key
    assert (auto.precision, auto.maps_precision) == ("bf16", "bf16")
    assert auto.info.fingerprint == bf16.info.fingerprint != fp32.info.fingerprint
    extra = dataclasses.asdict(auto.info)["extra"]  # what meta.json stores
    assert extra["precision"] == "bf16" and "avx512_bf16" in extra["precision_reason"]
    # maps that disagree keep fp32 and change the fingerprint (map caches are keyed by it)
    split = encoder_with_table(monkeypatch, tmp_path, tiny_checkpoint,
                               passing(maps__spearman_min=0.5))
    assert (split.precision, split.maps_precision) == ("bf16", "fp32")
    assert split.info.fingerprint not in (bf16.info.fingerprint, fp32.info.fingerprint)
    assert "Spearman" in split.info.extra["precision_reason"]


def test_precision_is_part_of_the_embedding_cache_key(tmp_path):
    paths = noise_pngs(tmp_path, 6)
    cache = tmp_path / "cache"
    fp32, bf16 = TinyEncoder(precision="fp32"), TinyEncoder(precision="bf16")
    first = embed_paths(fp32, paths, cache, num_workers=0)
    assert first.n_computed == 6
    other = embed_paths(bf16, paths, cache, num_workers=0)
    assert other.n_computed == 6 and other.n_cached == 0  # fp32 rows are never served as bf16
    assert not np.array_equal(first.embeddings, other.embeddings)
    again = embed_paths(fp32, paths, cache, num_workers=0)
    assert again.n_cached == 6 and np.array_equal(again.embeddings, first.embeddings)
    assert len(list((cache / "embeddings").iterdir())) == 2


def test_maps_run_at_maps_precision(monkeypatch, tmp_path, tiny_checkpoint):
    split = encoder_with_table(monkeypatch, tmp_path, tiny_checkpoint, passing(maps__spearman_min=0))
    fp32 = encoder_with_table(monkeypatch, tmp_path, tiny_checkpoint, passing(), requested="fp32")
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        assert torch.equal(split.embed_for_maps(x), fp32.embed(x))  # maps forward in fp32
        assert not torch.equal(split.embed(x), fp32.embed(x))  # embedding in bf16
    torch.manual_seed(0)
    proj, head = ProjectionModule(32, 32).eval(), HeadModule(32, 16).eval()
    a = relevance_maps(split, proj, head, x).patch_maps
    b = relevance_maps(fp32, proj, head, x).patch_maps
    np.testing.assert_array_equal(a, b)


def test_bf16_maps_come_out_fp32_and_close(tiny):
    bf16 = TinyEncoder(precision="bf16")
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    proj, head = ProjectionModule(32, 32).eval(), HeadModule(32, 16).eval()
    a = relevance_maps(bf16, proj, head, x)
    b = relevance_maps(tiny, proj, head, x)
    assert a.patch_maps.dtype == np.float32 and np.isfinite(a.patch_maps).all()
    assert not np.array_equal(a.patch_maps, b.patch_maps)  # bf16 did run
    # same ranking of patches, up to bf16 noise (the tiny model is random: a loose bound)
    corr = [np.corrcoef(a.patch_maps[i, k].ravel(), b.patch_maps[i, k].ravel())[0, 1]
            for i in range(2) for k in range(16)]
    assert np.median(corr) > 0.9


def test_rollout_of_bf16_attention_is_computed_in_fp32():
    gen = torch.Generator().manual_seed(0)
    probs = [torch.rand(1, 2, 5, 5, generator=gen).softmax(-1) for _ in range(3)]
    grads = [torch.randn(4, 1, 2, 5, 5, generator=gen) for _ in range(3)]
    exact = rollout_cls_rows(probs, grads)
    low = rollout_cls_rows([p.bfloat16() for p in probs], [g.bfloat16() for g in grads])
    assert low.dtype == torch.float32
    # only the inputs are rounded to bf16 (relative 2^-8), not the products of the rollout
    torch.testing.assert_close(low, exact, rtol=0.03, atol=0.01)
