"""Shortcut check on generated files with planted confounds: each is flagged with the right fact and
a reason in words; a clean set, constant facts and tiny sets flag nothing."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image, PngImagePlugin

from pipeline.data.filefacts import read_facts
from pipeline.checks.shortcuts import shortcut_check

N = 30  # per class; 70% train -> 21 per class, just above min_per_class


def _photo(w, h, rng) -> Image.Image:
    return Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8))


def _make(tmp_path, n, real_kw, fake_kw, seed=0):
    """n real + n fake files; ``*_kw(i, rng)`` -> (size, extension, save kwargs)."""
    rng = np.random.default_rng(seed)
    facts, labels = [], []
    for label, spec in ((0, real_kw), (1, fake_kw)):
        for i in range(n):
            (w, h), ext, kw = spec(i, rng)
            path = tmp_path / f"{label}_{i}.{ext}"
            _photo(w, h, rng).save(path, **kw)
            facts.append(read_facts(path))
            labels.append(label)
    labels = np.array(labels)
    splits = np.array(["heldout" if i % 10 >= 7 else "train" for i in range(n)] * 2)
    return facts, labels, splits


def _flag(result, fact):
    hit = [f for f in result["flags"] if f["fact"] == fact]
    assert hit, f"{fact} not flagged: {[f['fact'] for f in result['flags']]}"
    return hit[0]


def _entry(result, fact):
    return next(e for e in result["facts"] if e["fact"] == fact)


def test_fakes_png_reals_jpeg_flags_the_format(tmp_path):
    facts, y, s = _make(tmp_path, N, lambda i, r: ((32, 32), "jpg", {"quality": 90}),
                        lambda i, r: ((32, 32), "png", {}))
    result = shortcut_check(facts, y, s)
    flag = _flag(result, "format")
    assert flag["cv_auc"] == 1.0 and flag["heldout_auc"] == 1.0
    assert flag["reason"] == ("format alone separates real from fake: AUC 1.00; "
                              "every fake is PNG, every real is JPEG")
    assert _entry(result, "format")["histogram"] == {"bins": ["JPEG", "PNG"], "real": [N, 0], "fake": [0, N]}
    assert _entry(result, "size")["status"] == "constant" and not _entry(result, "size")["flagged"]
    json.loads(json.dumps(result, allow_nan=False))  # JSON-able, no NaN


def test_all_fakes_one_size_flags_the_image_size(tmp_path):
    facts, y, s = _make(tmp_path, N, lambda i, r: ((int(r.integers(30, 60)), int(r.integers(30, 60))), "jpg", {}),
                        lambda i, r: ((48, 40), "jpg", {}))
    result = shortcut_check(facts, y, s)
    flag = _flag(result, "size")
    assert flag["cv_auc"] >= 0.95
    assert flag["reason"].startswith("image size alone separates real from fake: AUC ")
    assert "every fake is 48x40" in flag["reason"]
    assert _entry(result, "format")["status"] == "constant"
    assert "format" not in {f["fact"] for f in result["flags"]}


def test_exif_only_on_reals_flags_exif(tmp_path):
    exif = Image.Exif()
    exif[0x010F] = "Canon"
    facts, y, s = _make(tmp_path, N, lambda i, r: ((32, 32), "jpg", {"exif": exif.tobytes()}),
                        lambda i, r: ((32, 32), "jpg", {}))
    result = shortcut_check(facts, y, s)
    assert _flag(result, "exif")["reason"].endswith("EXIF only on real images (100% vs 0%)")
    assert "every real has camera make Canon" in _flag(result, "camera_make")["reason"]


def test_prompt_chunks_only_on_fakes_flag_generator_metadata(tmp_path):
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", "a photo of a cat, Steps: 30")
    facts, y, s = _make(tmp_path, N, lambda i, r: ((32, 32), "png", {}),
                        lambda i, r: ((32, 32), "png", {"pnginfo": info}))
    result = shortcut_check(facts, y, s)
    assert _flag(result, "generator_metadata")["reason"].endswith(
        "generator text metadata (prompts, parameters) only on fake images (100% vs 0%)")
    assert "every fake has text metadata keys parameters" in _flag(result, "text_keys")["reason"]
    assert "format" not in {f["fact"] for f in result["flags"]}


def test_a_clean_set_flags_nothing(tmp_path):
    """Both classes one format, one size and one quality, content from the same distribution."""
    facts, y, s = _make(tmp_path, 40, lambda i, r: ((48, 48), "jpg", {"quality": 90}),
                        lambda i, r: ((48, 48), "jpg", {"quality": 90}))
    result = shortcut_check(facts, y, s, generators=["g"] * 80)
    assert result["status"] == "ok" and result["flags"] == []
    assert not result["all_facts"]["flagged"]
    constant = {e["fact"] for e in result["facts"] if e["status"] == "constant"}
    assert {"format", "size", "jpeg_quality", "subsampling", "exif"} <= constant
    # the facts that do vary (file size) were scored and found weak, not skipped
    assert _entry(result, "file_bytes")["status"] == "ok" and _entry(result, "file_bytes")["cv_auc"] < 0.8
    assert result["per_generator"]["g"]["flags"] == []


def test_tiny_sets_are_not_scored(tmp_path):
    facts, y, s = _make(tmp_path, 6, lambda i, r: ((32, 32), "jpg", {}), lambda i, r: ((32, 32), "png", {}))
    result = shortcut_check(facts, y, s)
    assert result["status"] == "too few" and result["flags"] == [] and "at least 20" in result["reason"]


def test_per_generator_finds_the_one_generator_with_a_confound(tmp_path):
    # fakes alternate in blocks of ten, so each generator gets 7 training images per 10
    facts, y, s = _make(tmp_path, 2 * N, lambda i, r: ((32, 32), "jpg", {}),
                        lambda i, r: ((32, 32), "png" if i // 10 % 2 else "jpg", {}))
    generators = [""] * (2 * N) + ["png_gen" if i // 10 % 2 else "jpg_gen" for i in range(2 * N)]
    result = shortcut_check(facts, y, s, generators=generators)
    # overall, half the fakes are PNG: format predicts "fake" for them only
    assert _entry(result, "format")["cv_auc"] == pytest.approx(0.75, abs=0.06)
    assert "format" in {f["fact"] for f in result["per_generator"]["png_gen"]["flags"]}
    assert result["per_generator"]["jpg_gen"]["flags"] == []
    assert result["per_generator"]["png_gen"]["n_train"]["fake"] + \
        result["per_generator"]["png_gen"]["n_heldout"]["fake"] == N


def test_only_the_combination_of_facts_separates(tmp_path):
    """Every real is (DPI 72, Canon); half the fakes (DPI 72, Nikon), half (DPI 300, Canon): each
    fact alone catches half the fakes (AUC ~0.75, below the threshold), the two together all of
    them. The EXIF strings have one length, so the file size carries nothing."""
    def kw(make, dpi):
        exif = Image.Exif()
        exif[0x010F] = make
        return {"exif": exif.tobytes(), "dpi": (dpi, dpi)}

    facts, y, s = _make(tmp_path, 2 * N, lambda i, r: ((32, 32), "jpg", kw("Canon", 72)),
                        lambda i, r: ((32, 32), "jpg", kw("Nikon", 72) if i % 2 else kw("Canon", 300)))
    result = shortcut_check(facts, y, s)
    for fact in ("camera_make", "dpi"):
        assert 0.65 <= _entry(result, fact)["cv_auc"] < 0.8 and not _entry(result, fact)["flagged"]
    assert _entry(result, "file_bytes")["cv_auc"] < 0.7
    assert result["all_facts"]["flagged"] and result["all_facts"]["cv_auc"] >= 0.95
    assert [f["fact"] for f in result["flags"]] == ["all"]
    assert result["all_facts"]["reason"].startswith("all file facts together separate real from fake: AUC 1.00")


def test_neutralised_groups_are_reported_not_flagged(tmp_path):
    facts, y, s = _make(tmp_path, N, lambda i, r: ((32, 32), "jpg", {}), lambda i, r: ((32, 32), "png", {}))
    result = shortcut_check(facts, y, s, neutralised=["format", "compression"])
    assert _entry(result, "format")["status"] == "neutralised" and result["flags"] == []
    assert "controlled re-encoding" in _entry(result, "format")["reason"]


def test_rows_give_the_same_result_as_facts_and_the_seed_fixes_it(tmp_path):
    facts, y, s = _make(tmp_path, N, lambda i, r: ((int(r.integers(30, 60)), 32), "jpg", {}),
                        lambda i, r: ((48, 32), "png", {}))
    a = shortcut_check(facts, y, s, seed=3)
    b = shortcut_check([{k: str(v) for k, v in f.to_row().items()} for f in facts], y, s, seed=3)
    assert a == b


def test_misaligned_inputs_are_an_error(tmp_path):
    facts, y, s = _make(tmp_path, 3, lambda i, r: ((8, 8), "png", {}), lambda i, r: ((8, 8), "png", {}))
    with pytest.raises(ValueError, match="one entry per image"):
        shortcut_check(facts[:-1], y, s)
