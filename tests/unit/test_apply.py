"""Scoring new images with a finished run (``pipeline.generalise.apply``) and the run's cross-generator matrix
(``pipeline.generalise.run_matrix``), on a real run of a generated data set with the tiny encoder."""
from __future__ import annotations

import csv
import io
import shutil

import numpy as np
import pytest
from PIL import Image

from pipeline.generalise import apply as apply_module
from pipeline.generalise import crossgen as crossgen_module
from pipeline.generalise.apply import apply_run
from pipeline.cli.main import main as cli_main
from pipeline.config import REPO_ROOT, load_config
from pipeline.generalise.crossgen import cross_generator_matrix
from pipeline.data.scan import UNLABELLED
from pipeline.model.run_models import clear_cache, load_run_models
from pipeline.generalise.run_matrix import cached_matrix, run_matrix
from pipeline.runner import run_pipeline
from pipeline.store.run_store import MATRIX, RunStore
from tests.fixtures_runs import make_dataset

HEAD_FIGURES = ("n", "n_real", "n_fake", "accuracy", "real_accuracy", "fake_accuracy", "ap", "auc")


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> RunStore:
    """A tiny-encoder run of 48 generated images (2 generators x 2 categories x real/fake)."""
    tmp = tmp_path_factory.mktemp("apply")
    data = make_dataset(tmp / "data")
    cfg = load_config(REPO_ROOT / "configs" / "test.yaml", [f"data.root={data}", f"runs_dir={tmp / 'runs'}",
                                                            f"cache_dir={tmp / 'cache'}", "cells.n_cells=4"])
    clear_cache()
    return run_pipeline(cfg)


def write_manifest(path, rows, with_labels=True):
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "label", "generator", "category"] if with_labels else ["path"])
        for r in rows:
            w.writerow([r["path"], "fake" if r["label"] else "real", r["generator"], r["category"]]
                       if with_labels else [r["path"]])
    return path


def heldout_rows(run):
    return [(i, r) for i, r in enumerate(run.read_records()) if r["split"] == "heldout"]


def test_applying_a_run_to_its_own_heldout_images_reproduces_its_predictions_and_metrics(run):
    held = heldout_rows(run)
    manifest = write_manifest(run.data_root() / "heldout.csv", [r for _, r in held])
    clear_cache()  # the run's models are loaded afresh by this apply
    applied = apply_run(run.path, manifest, name="own-heldout")
    meta = applied.read_meta()

    rows = [i for i, _ in held]
    run_prob = 1 / (1 + np.exp(-run.load_array("logit")[rows].astype(np.float64)))
    got_prob = 1 / (1 + np.exp(-applied.load_array("logit").astype(np.float64)))
    assert [r["path"] for r in applied.read_records()] == [r["path"] for _, r in held]
    np.testing.assert_allclose(got_prob, run_prob, atol=1e-5, rtol=0)
    np.testing.assert_allclose(applied.load_array("z16"), run.load_array("z16")[rows], atol=1e-5)
    expected = run.read_meta()["metrics"]["head"]
    assert {k: meta["metrics"][k] for k in HEAD_FIGURES} == {k: expected[k] for k in HEAD_FIGURES}
    assert meta["metrics"]["per_generator"] == expected["per_generator"]
    assert set(meta["metrics"]["per_generator"]) == {"gan", "diffusion"}
    # every image was embedded by the run: nothing is embedded again, the encoder is never loaded
    assert meta["data"]["n_embedded"] == 0
    assert load_run_models(run.path, lazy_encoder=True).encoder.is_loaded is False

    # the run's own images land in their own cells (nearest centroid of converged k-means) ...
    records = applied.read_records()
    run_cells = [r["cell"] for _, r in held]
    assert np.mean([a["cell"] == c for a, c in zip(records, run_cells)]) >= 0.9
    # ... inside their cell's glyph, and the set's cells.json tallies them
    drawn = {c["id"]: c for c in run.read_cells()["cells"]}
    for r in records:
        c = drawn[r["cell"]]
        assert np.hypot(r["x"] - c["x"], r["y"] - c["y"]) <= c["r"] + 1e-6  # x, y rounded to 6 decimals
    cells = applied.read_cells()["cells"]
    assert [c["id"] for c in cells] == sorted(drawn)
    assert sum(c["n"] for c in cells) == len(held)
    for c in cells:
        mine = [r for r in records if r["cell"] == c["id"]]
        assert c["real_correct"] == sum(r["label"] == 0 and r["correct"] == 1 for r in mine)
        assert c["fake_wrong"] == sum(r["label"] == 1 and r["correct"] == 0 for r in mine)
        assert (c["accuracy"] is None) == (not mine)
    assert "own-heldout" in [s.name for s in run.applied_sets()]


def test_the_runs_own_images_fill_their_glyphs_and_few_lie_far(run):
    """Positions and 'far' are scaled by the run's own images: applied to all of them, only those
    beyond a cell's 95th percentile (about 1 in 20 per cell) are on the rim or far."""
    applied = apply_run(run.path, run.data_root(), name="all-own")
    placement = applied.read_meta()["placement"]
    sizes = [c["n"] for c in run.read_cells()["cells"]]
    most = sum(int(np.ceil(0.05 * n)) for n in sizes)
    assert applied.read_meta()["data"]["n_images"] == sum(sizes) == 48
    assert placement["n_on_rim"] <= most and placement["n_far"] <= most
    records = applied.read_records()
    drawn = {c["id"]: c for c in run.read_cells()["cells"]}
    # records.csv rounds x and y to 6 decimals: 1e-6 of slack
    inside = [(np.hypot(r["x"] - drawn[r["cell"]]["x"], r["y"] - drawn[r["cell"]]["y"]) - 1e-6) / drawn[r["cell"]]["r"]
              for r in records]
    assert max(inside) <= 1 and np.median(inside) < 0.8  # spread over the glyph, not on its rim


def test_reapplying_unchanged_data_returns_the_existing_set_and_changed_data_is_scored_again(run, monkeypatch):
    held = heldout_rows(run)
    manifest = write_manifest(run.data_root() / "again.csv", [r for _, r in held[:8]])
    first = apply_run(run.path, manifest)
    assert first.name == "again"  # default name: the manifest's
    created = first.read_meta()["created"]

    def must_not_score(*args, **kwargs):
        raise AssertionError("unchanged data was scored again")
    with monkeypatch.context() as m:
        m.setattr(apply_module, "_score_and_write", must_not_score)
        again = apply_run(run.path, manifest)
    assert again.path == first.path and again.read_meta()["created"] == created

    write_manifest(manifest, [r for _, r in held[:9]])  # one image more: another fingerprint
    changed = apply_run(run.path, manifest)
    assert changed.read_meta()["data"]["n_images"] == 9


def test_an_unlabelled_folder_gives_predictions_and_no_metrics(run, tmp_path, capsys):
    held = heldout_rows(run)[:6]
    folder = tmp_path / "suspicious"
    (folder / "batch").mkdir(parents=True)
    for n, (_, r) in enumerate(held):  # the run's own images, renamed and without labels
        shutil.copy(run.data_root() / r["path"], folder / ("batch" if n % 2 else ".") / f"img{n}.png")
    new = np.random.default_rng(1).integers(0, 255, (60, 80, 3)).astype(np.uint8)
    Image.fromarray(new).save(folder / "never-seen.png")  # needs the encoder

    assert cli_main(["apply", str(run.path), "--data", str(folder), "--name", "suspicious"]) == 0
    printed = capsys.readouterr().out
    assert "no labels: predictions only" in printed and "accuracy" not in printed
    applied = run.applied("suspicious")
    meta = applied.read_meta()
    assert meta["metrics"] is None
    assert meta["data"]["n_unlabelled"] == 7 and meta["data"]["labelled"] is False
    assert meta["data"]["n_embedded"] == 1  # the never-seen image; the run's six come from the cache
    records = {r["path"]: r for r in applied.read_records()}
    assert all(r["label"] == UNLABELLED and r["correct"] == -1 and r["generator"] == "" for r in records.values())
    run_prob = 1 / (1 + np.exp(-run.load_array("logit").astype(np.float64)))
    for n, (i, _) in enumerate(held):  # same content, same score: predictions come from the run's models
        got = records[f"batch/img{n}.png" if n % 2 else f"img{n}.png"]["prob_fake"]
        assert got == pytest.approx(run_prob[i], abs=1e-5)
    cells = applied.read_cells()["cells"]
    assert sum(c["unlabelled_pred_real"] + c["unlabelled_pred_fake"] for c in cells) == 7
    assert all(c["real_correct"] + c["real_wrong"] + c["fake_correct"] + c["fake_wrong"] == 0 for c in cells)


def test_a_folder_with_bad_files_reports_them_and_scores_the_rest(run, tmp_path):
    held = heldout_rows(run)[:6]
    folder = tmp_path / "mixed"
    for n, (_, r) in enumerate(held):
        d = folder / "newgen" / ("1_fake" if r["label"] else "0_real")
        d.mkdir(parents=True, exist_ok=True)
        shutil.copy(run.data_root() / r["path"], d / f"{n}.png")
    bad = folder / "newgen" / "1_fake"
    bad.mkdir(parents=True, exist_ok=True)
    (bad / "zero.png").write_bytes(b"")
    (bad / "notes.png").write_text("not an image")
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 30, 30)).save(buf, "JPEG")
    (bad / "truncated.jpg").write_bytes(buf.getvalue()[:200])

    applied = apply_run(run.path, folder)
    meta = applied.read_meta()
    reasons = {b["path"]: b["reason"] for b in meta["bad_files"]}
    assert set(reasons) == {"newgen/1_fake/zero.png", "newgen/1_fake/notes.png", "newgen/1_fake/truncated.jpg"}
    assert reasons["newgen/1_fake/zero.png"] == "zero-byte file"
    assert "not a readable image" in reasons["newgen/1_fake/notes.png"]
    assert "truncated" in reasons["newgen/1_fake/truncated.jpg"]
    assert meta["data"]["n_images"] == 6 and meta["data"]["n_bad"] == 3
    labels = [r["label"] for _, r in held]
    assert meta["metrics"]["n"] == 6 and meta["metrics"]["n_fake"] == sum(labels)
    assert list(meta["metrics"]["per_generator"]) == ["newgen"]


def test_a_folder_of_bad_files_only_fails_with_a_clear_message(run, tmp_path):
    folder = tmp_path / "allbad"
    folder.mkdir()
    (folder / "zero.png").write_bytes(b"")
    with pytest.raises(ValueError, match="no usable images found under .*allbad"):
        apply_run(run.path, folder)
    with pytest.raises(ValueError, match="applied set name '../up'"):
        apply_run(run.path, run.data_root() / "heldout.csv", name="../up")


def test_the_runs_matrix_is_its_features_matrix_kept_with_the_run(run, monkeypatch, capsys):
    assert cached_matrix(run.path) is None
    matrix = run_matrix(run.path)
    records = run.read_records()
    direct = cross_generator_matrix(run.load_array("features", mmap=False), [r["label"] for r in records],
                                    [r["generator"] for r in records], [r["split"] for r in records],
                                    run.config().head)
    for table in ("one", "all_but_one"):
        for g in ("gan", "diffusion"):
            for t in ("gan", "diffusion"):
                assert matrix[table][g][t]["auc"] == direct[table][g][t]["auc"]
                assert matrix[table][g][t]["misclassified"] == direct[table][g][t]["misclassified"]

    def must_not_compute(*args, **kwargs):
        raise AssertionError("the kept matrix was computed again")
    with monkeypatch.context() as m:
        m.setattr(crossgen_module, "cross_generator_matrix", must_not_compute)
        assert run_matrix(run.path) == matrix
        assert cli_main(["info", str(run.path)]) == 0
    printed = capsys.readouterr().out
    assert "cross-generator matrix" in printed and "train \\ test" in printed
    assert "applied sets" in printed and "own-heldout" in printed

    path = run.path / MATRIX
    path.write_bytes(path.read_bytes()[:-10] + b"0123456789")  # damaged: not used, computed again
    assert cached_matrix(run.path) is None
    assert run_matrix(run.path)["one"]["gan"]["gan"]["auc"] == matrix["one"]["gan"]["gan"]["auc"]


def test_the_runs_bias_probe_is_kept_once_and_recomputed_when_stale(run):
    """The bias probe goes through the run's derived results (``pipeline.store.derived``): kept,
    read back without loading models, recomputed when damaged, and sampled half real, half fake
    from the held-out images."""
    from pipeline.checks.validity import probe_path, read_probe, run_bias_probe

    class Unusable:
        lock = None

        def __getattr__(self, name):
            raise AssertionError(f"models used ({name}) although the kept probe should have answered")

    probe = run_bias_probe(run.path, n_images=6)
    records = run.read_records()
    assert len(probe["indices"]) == 6 and all(records[i]["split"] == "heldout" for i in probe["indices"])
    assert sorted(records[i]["label"] for i in probe["indices"]) == [0, 0, 0, 1, 1, 1]
    assert probe["n"] == 6 and read_probe(run.path) == probe
    assert run_bias_probe(run.path, n_images=6, models=Unusable()) == probe  # read, not computed
    path = probe_path(run.path)
    path.write_bytes(path.read_bytes().replace(b'"n": 6', b'"n": 7'))  # damaged: not trusted
    assert read_probe(run.path) is None
    again = run_bias_probe(run.path, n_images=6)
    assert again["indices"] == probe["indices"] and again["n"] == 6 and read_probe(run.path) == again
