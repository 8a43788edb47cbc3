"""Where a run's time goes (issue 27): stage seconds from the progress reports, the encoder's
forward timed wherever it runs, and the projection's regulariser with its own gradient."""
from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from pipeline.model.embed import embed_pil
from pipeline.model.projection import isometry_gap
from pipeline.model.stopwatch import Stopwatch
from pipeline.stage_times import StageTimes, timing_words


def test_stage_seconds_run_from_a_stages_first_report_to_the_next_ones():
    seen = []
    times = StageTimes()
    report = times.wrap(lambda *a: seen.append(a))
    report("scan", 0, 1)
    time.sleep(0.05)
    report("scan", 1, 1)  # later reports of a stage do not start it again
    report("embed", 0, 10)
    time.sleep(0.1)
    report("embed", 10, 10)
    summary = times.summary(forward_seconds=0.08, forward_images=10)
    assert seen == [("scan", 0, 1), ("scan", 1, 1), ("embed", 0, 10), ("embed", 10, 10)]  # passed on
    stages = dict(summary["stages"])
    assert [s for s, _ in summary["stages"]] == ["scan", "embed"]
    assert 0.05 <= stages["scan"] < 0.09
    assert 0.1 <= stages["embed"] < 0.14
    assert summary["seconds"] >= sum(stages.values()) - 1e-3
    assert summary["forward_share"] == pytest.approx(0.08 / summary["seconds"], abs=2e-3)  # rounded


def test_timing_words_say_the_forward_share_and_rate():
    words = timing_words({"seconds": 400.0, "forward_seconds": 364.0, "forward_images": 11168,
                          "forward_share": 0.91})
    assert words == "400 s, 91.0% of it in the encoder's forward (11,168 images; 30.7 images/s in the forward)"
    assert timing_words(None) is None and timing_words({}) is None  # runs made before the timing


def test_stopwatch_sums_its_blocks_and_counts_what_they_did():
    watch = Stopwatch()
    for _ in range(2):
        with watch:
            time.sleep(0.03)
    watch.add(1.0, 5)
    assert 1.06 <= watch.seconds < 1.1 and watch.items == 5


def test_embed_pil_times_only_the_forward_and_counts_images(tiny, monkeypatch):
    from PIL import Image
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)) for _ in range(7)]
    expected = embed_pil(tiny, images, batch_size=3)
    slow_preprocess = tiny.preprocess

    def preprocess(im):  # 20 ms per image outside the forward: must not count as forward
        time.sleep(0.02)
        return slow_preprocess(im)

    monkeypatch.setattr(tiny, "preprocess", preprocess)
    watch = Stopwatch()
    out = embed_pil(tiny, images, batch_size=3, forward_watch=watch)
    np.testing.assert_array_equal(out, expected)  # the same rows, in order, with the prefetch
    assert watch.items == 7
    assert watch.seconds < 0.1  # 7 x 20 ms of preprocessing stayed outside


def test_isometry_gap_is_the_frobenius_norm_with_its_exact_gradient():
    w = torch.randn(6, 9, dtype=torch.float64, requires_grad=True)
    expected = torch.linalg.norm(torch.eye(6, dtype=torch.float64) - w @ w.T)
    assert float(isometry_gap(w).detach()) == pytest.approx(float(expected.detach()), rel=1e-12)
    assert torch.autograd.gradcheck(isometry_gap, (w,))
    q = torch.linalg.qr(torch.randn(9, 6, dtype=torch.float64))[0].T  # orthonormal rows: no gap
    assert float(isometry_gap(q)) == pytest.approx(0.0, abs=1e-12)


def test_a_run_records_its_stages_and_every_forward_it_made(tmp_path):
    """The data set's images and the projection's word images (trained on the data) all count."""
    from pipeline.config import REPO_ROOT, load_config
    from pipeline.model.projection_training import TRAIN_VOCAB
    from pipeline.runner import run_pipeline
    from tests.integration.test_pipeline_tiny import make_dataset

    cfg = load_config(REPO_ROOT / "configs" / "test.yaml", [
        f"data.root={make_dataset(tmp_path / 'd', n_per_class=20, salt=False)}", f"runs_dir={tmp_path / 'runs'}",
        f"cache_dir={tmp_path / 'cache'}", "projection.train_on=data"])
    meta = run_pipeline(cfg).read_meta()
    t, proj = meta["timing"], meta["metrics"]["projection"]
    word_images = proj["n_train_pairs"] + TRAIN_VOCAB + proj["n_eval_pairs"]
    # each image once: those the projection reads were embedded first, and the data set's embedding
    # took them from the cache (here the projection reads all 40)
    assert t["forward_images"] == meta["data"]["n_images"] + word_images == 40 + word_images
    assert meta["embedding"] == {**meta["embedding"], "computed": 0, "cached": 40}
    assert meta["embedding"]["forward_seconds"] < t["forward_seconds"] <= t["seconds"]
    # the projection's sample and word images go first, its fit beside the embedding; the timing is
    # taken as the write begins
    assert [s for s, _ in t["stages"]] == ["scan", "encoder", "projection", "embed", "checks", "projection fit",
                                           "head", "cells"]
    assert 0 < t["forward_share"] < 1


def test_the_regularisers_products_do_not_depend_on_the_thread_count():
    """The products run on every core inside a one-thread fit: that is only safe because a matrix
    product's bits do not change with its threads (a reduction's may), so a fit on a busy or an
    idle machine trains the same projection."""
    from pipeline.model.torch_threads import torch_threads
    w = torch.randn(768, 1536, generator=torch.Generator().manual_seed(0))
    with torch_threads(1):
        one = (w @ w.T, (torch.eye(768) - w @ w.T) @ w)
    with torch_threads(2):
        two = (w @ w.T, (torch.eye(768) - w @ w.T) @ w)
    assert all(torch.equal(a, b) for a, b in zip(one, two))


def test_the_projection_fitted_ahead_is_the_one_fitted_after_the_whole_embedding(tmp_path):
    """Only the projection's sample is embedded before its fit starts (the rest of the data set is
    embedded beside the fit), with bad files in the data set: the projection is the one a plain
    sequence (embed everything, then render and fit) trains, bit for bit."""
    import numpy as np
    from pipeline.config import REPO_ROOT, load_config
    from pipeline.data.scan import scan
    from pipeline.model.embed import embed_paths_for, embed_pil
    from pipeline.model.encoders import shared_encoder
    from pipeline.model.projection_training import fit_projection, render_word_tuples, sample_rows
    from pipeline.runner import run_pipeline
    from tests.helpers import torch_threads
    from tests.integration.test_pipeline_tiny import make_dataset

    data = make_dataset(tmp_path / "d", n_per_class=40, salt=True)  # + unreadable files the scan skips
    cfg = load_config(REPO_ROOT / "configs" / "test.yaml", [
        f"data.root={data}", f"runs_dir={tmp_path / 'runs'}", f"cache_dir={tmp_path / 'cache'}",
        "projection.train_on=data", "projection.max_train_images=20"])
    with torch_threads(1):
        store = run_pipeline(cfg)
    meta = store.read_meta()
    scanned = scan(cfg.data)
    paths = [scanned.path(r) for r in scanned.records]
    n_sample = len(sample_rows(len(paths), cfg.projection))
    assert n_sample < len(paths)
    # the data set's embedding computed only what the projection's sample had not
    assert meta["embedding"]["computed"] + meta["embedding"]["cached"] == meta["data"]["n_images"]
    assert meta["embedding"]["cached"] == n_sample and meta["data"]["n_bad"] > 0

    encoder = shared_encoder(cfg.encoder, cfg.cache_path)
    clean = embed_paths_for(cfg, encoder, paths).embeddings  # everything first (cached: no forward)
    with torch_threads(1):
        tuples = render_word_tuples(encoder, paths, cfg.projection,
                                    lambda ims: embed_pil(encoder, ims, cfg.encoder.batch_size),
                                    cfg.data.max_image_pixels)
        plain, _ = fit_projection(tuples, clean, cfg.projection)
    assert np.isfinite(clean[tuples.train_rows]).all()  # no unreadable image among the rows it reads
    assert np.array_equal(store.load_torch("projection.pt")["weight"].numpy(),
                          plain.module_.linear.weight.detach().numpy())


def test_the_projection_stage_fills_one_bar_from_its_sample_to_its_word_images(tmp_path):
    """The projection's progress counts its sample's embedding, then its word images, on one total:
    a bar that fills once, never one that sits at 0 while the sample embeds."""
    from pipeline.config import REPO_ROOT, load_config
    from pipeline.model.projection_training import render_steps, sample_rows
    from pipeline.runner import run_pipeline
    from tests.integration.test_pipeline_tiny import make_dataset

    cfg = load_config(REPO_ROOT / "configs" / "test.yaml", [
        f"data.root={make_dataset(tmp_path / 'd', n_per_class=30, salt=False)}", f"runs_dir={tmp_path / 'runs'}",
        f"cache_dir={tmp_path / 'cache'}", "projection.train_on=data", "projection.max_train_images=24"])
    seen = []
    run_pipeline(cfg, progress=lambda stage, done, total: seen.append((done, total)) if stage == "projection" else None)
    n_sample = len(sample_rows(60, cfg.projection))
    assert n_sample < 60  # the sample is a part of the data set
    total = n_sample + render_steps(60, cfg.projection)
    assert {t for _, t in seen} == {total}
    done = [d for d, _ in seen]
    assert done[0] == 0 and done[-1] == total and done == sorted(done)
    assert n_sample in done  # the sample's images counted one by one up to here...
    assert any(0 < d < n_sample for d in done)  # ...not reported in one jump
