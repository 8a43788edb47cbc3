"""``scan(..., allow_unlabelled=True)``: images without labels are kept only when asked for, and a
label is never guessed (pipeline.generalise.apply scores folders of suspicious images with a run)."""
from __future__ import annotations

import pytest
from PIL import Image

from pipeline.config import DataConfig
from pipeline.data.scan import UNLABELLED, scan
from pipeline.store.run_store import AppliedStore


def _img(path, colour=(90, 120, 200)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (24, 20), colour).save(path)


def test_a_folder_without_label_folders_is_unlabelled_only_when_allowed(tmp_path):
    _img(tmp_path / "a.png")
    _img(tmp_path / "batch" / "0_fake_looking" / "b.png")  # a folder name is no label
    _img(tmp_path / "gen" / "1_fake" / "c.png")  # a real label folder still labels
    (tmp_path / "notes.txt").write_text("not an image")
    with pytest.raises(ValueError, match="no usable images"):
        scan(DataConfig(root=str(tmp_path / "batch")))
    result = scan(DataConfig(root=str(tmp_path)), allow_unlabelled=True)
    labels = {r.path: (r.label, r.generator, r.category) for r in result.records}
    assert labels == {"a.png": (UNLABELLED, "", ""), "batch/0_fake_looking/b.png": (UNLABELLED, "", ""),
                      "gen/1_fake/c.png": (1, "gen", "")}
    assert result.bad == [{"path": "notes.txt", "reason": "not an image file extension"}]
    # without the flag the same folder gives only the labelled image, as a run sees it
    assert [r.path for r in scan(DataConfig(root=str(tmp_path))).records] == ["gen/1_fake/c.png"]


def test_a_manifest_may_lack_labels_only_when_allowed_and_bad_labels_stay_bad(tmp_path):
    for name in ("a", "b", "c", "d"):
        _img(tmp_path / f"{name}.png")
    (tmp_path / "nolabel.csv").write_text("path,generator\na.png,x\nb.png,\n")
    (tmp_path / "some.csv").write_text("path,label\na.png,fake\nb.png,\nc.png,maybe\nd.png,0\n")
    with pytest.raises(ValueError, match="at least 'path' and 'label'"):
        scan(DataConfig(manifest=str(tmp_path / "nolabel.csv")))
    result = scan(DataConfig(manifest=str(tmp_path / "nolabel.csv")), allow_unlabelled=True)
    assert [(r.path, r.label, r.generator) for r in result.records] == [("a.png", UNLABELLED, "x"),
                                                                        ("b.png", UNLABELLED, "")]
    result = scan(DataConfig(manifest=str(tmp_path / "some.csv")), allow_unlabelled=True)
    assert [(r.path, r.label) for r in result.records] == [("a.png", 1), ("b.png", UNLABELLED), ("d.png", 0)]
    assert [b["path"] for b in result.bad] == ["c.png"] and "bad label 'maybe'" in result.bad[0]["reason"]
    strict = scan(DataConfig(manifest=str(tmp_path / "some.csv")))
    assert [r.path for r in strict.records] == ["a.png", "d.png"]
    assert {b["path"] for b in strict.bad} == {"b.png", "c.png"}


def test_an_applied_sets_missing_label_reads_back_as_unlabelled(tmp_path):
    store = AppliedStore(tmp_path / "set")
    store.path.mkdir()
    store.write_records([{"id": "1", "path": "a.png", "label": None, "prob_fake": 0.7, "pred": 1,
                          "correct": None, "cell": 2, "x": 0.5, "y": -0.25, "distance": 1.5, "far": 0},
                         {"id": "2", "path": "b.png", "label": 0, "prob_fake": 0.2, "pred": 0,
                          "correct": 1, "cell": 0, "x": -1.0, "y": 0.0, "distance": 0.5, "far": 1}])
    text = (store.path / "records.csv").read_text().splitlines()
    assert text[1].startswith("1,a.png,,")  # written empty, not as a guessed 0
    a, b = store.read_records()
    assert (a["label"], a["correct"], a["cell"], a["x"]) == (UNLABELLED, -1, 2, 0.5)
    assert (b["label"], b["correct"], b["far"]) == (0, 1, 1)
