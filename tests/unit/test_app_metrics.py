"""The metrics panel says what the detector's figures were measured on, per class and generator."""
from app.views.metrics import balance_words, gap_words, metrics_block
from tests.unit.test_app_callbacks import _find, _texts


def _metrics(train_accuracy=0.70):
    gen = {"n": 40, "n_real": 30, "n_fake": 10, "accuracy": 0.8, "real_accuracy": 0.9,
           "fake_accuracy": 0.5, "ap": 0.61, "auc": 0.72}
    return {"head": {"n": 80, "n_real": 60, "n_fake": 20, "accuracy": 0.75, "real_accuracy": 0.85,
                     "fake_accuracy": 0.45, "ap": 0.6, "auc": 0.7,
                     "train": {"n": 200, "accuracy": train_accuracy, "auc": 0.99},
                     "per_generator": {"gan": gen, "diffusion": {**gen, "auc": 0.55}}}}


def test_per_generator_table_has_counts_and_accuracy_per_class():
    out = metrics_block(_metrics(), {"n_real": 300, "n_fake": 100})
    [table] = _find(out, "fx-metrics-table")
    text = _texts(table)
    assert "n real n fake real acc. fake acc. accuracy AP AUC" in text
    assert "gan 30 10 90.0% 50.0% 80.0% 0.610 0.720" in text and "diffusion" in text and "0.550" in text
    summary = _texts(out)
    assert "on 80 held-out images (60 real, 20 fake; real acc. 85.0%, fake acc. 45.0%)" in summary
    assert "train: accuracy 70.0%, AUC 0.990 on 200 images" in summary
    assert "75% of the images are real" in summary  # 300 : 100 is imbalanced
    assert "more accurate on its training images" not in summary  # 70% vs 75%: no gap


def test_warnings_only_when_they_apply():
    assert balance_words(100, 100) is None and balance_words(100, 51) is None
    assert "67% of the images are fake" in balance_words(50, 100)
    assert gap_words({"accuracy": 0.99}, {"accuracy": 0.70}).startswith("the head is 29% more accurate")
    assert gap_words({"accuracy": 0.75}, {"accuracy": 0.70}) is None
    assert metrics_block({}) == []


def test_fidelity_line_sets_the_head_beside_what_the_embedding_allows():
    metrics = _metrics()
    assert "fidelity" not in _texts(metrics_block(metrics))  # runs made before the reference probe
    metrics["head"]["reference_probe"] = {"auc": 0.705, "input_dim": 1536}
    [line] = [s for s in _find(metrics_block(metrics), "fx-muted") if "fidelity" in _texts(s)]
    assert _texts(line) == ("fidelity: the embedding allows AUC 0.705 (linear probe on all 1536 "
                            "dimensions), the 16-d head reaches 0.700 (gap +0.005)")
    metrics["head"]["reference_probe"]["auc"] = 0.80  # 0.10 better than the head: a warning
    assert [s for s in _find(metrics_block(metrics), "fx-warning") if "fidelity" in _texts(s)]
