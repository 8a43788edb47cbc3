"""Two runs side by side (issue 23.7): ``compare_rows`` (the data), ``compare_lines`` (the text
``pipeline compare`` prints, unchanged), ``cell_shift_rows`` and ``cmd_compare`` itself."""
from __future__ import annotations

import json

from pipeline.checks.validity import cell_shift_rows, compare_lines, compare_rows
from pipeline.cli.main import main

META_A = {"run_id": "run-a", "config": {"data": {}},
          "metrics": {"head": {"accuracy": 0.9, "auc": 0.95, "n": 20, "ci95": {"auc": [0.9, 1.0]},
                               "per_generator": {"gan": {"auc": 0.8, "ci95": {"auc": [0.6, 0.95]}},
                                                 "sd": {"auc": 1.0}}}},
          "checks": {"shortcuts": {"flags": [{"reason": "image size alone separates real from fake"}]}}}
META_B = {"run_id": "run-b-reencoded", "config": {"data": {"reencode": "jpeg:90:256"}},
          "metrics": {"head": {"accuracy": 0.7, "n": 20, "per_generator": {"gan": {"auc": 0.6}}}}, "checks": {}}

EXPECTED = [  # the text of compare_lines before its data part was factored out (the same)
    "                                     run-a run-b-reencoded",
    "re-encoding                            off     jpeg:90:256",
    "held-out accuracy                    0.900           0.700",
    "held-out real_accuracy                   –               –",
    "held-out fake_accuracy                   –               –",
    "held-out ap                              –               –",
    "held-out auc                         0.950               –",
    "held-out n                              20              20",
    "  gan AUC                            0.800           0.600",
    "  sd AUC                             1.000               –",
    "flagged checks                           1               0",
    "  run-a: image size alone separates real from fake",
]


def test_compare_rows_carry_values_and_intervals():
    rows = compare_rows(META_A, META_B)
    assert rows["names"] == ["run-a", "run-b-reencoded"] and rows["reencode"] == ["off", "jpeg:90:256"]
    auc = next(r for r in rows["metrics"] if r["key"] == "auc")
    assert auc == {"key": "auc", "a": 0.95, "b": None, "ci_a": [0.9, 1.0], "ci_b": None}
    assert rows["generators"][0] == {"generator": "gan", "a": 0.8, "b": 0.6, "ci_a": [0.6, 0.95], "ci_b": None}
    assert rows["flags"] == [["image size alone separates real from fake"], []]


def test_compare_lines_print_the_same_text_as_before():
    assert compare_lines(META_A, META_B) == EXPECTED


def test_cell_shift_rows_follow_run_a_cells_into_run_b():
    a = [{"path": "0_real/a.jpg", "label": "0", "pred": "1", "cell": "0"},
         {"path": "1_fake/b.jpg", "label": "1", "pred": "1", "cell": "0"},
         {"path": "1_fake/c.jpg", "label": "1", "pred": "1", "cell": "1"},
         {"path": "1_fake/gone.jpg", "label": "1", "pred": "0", "cell": "2"}]
    b = [{"path": "0_real/a.jpg", "pred": "0"}, {"path": "1_fake/b.jpg", "pred": "1"},
         {"path": "1_fake/c.jpg", "pred": "0"}]
    rows = cell_shift_rows(a, b)
    assert rows == [
        {"cell": 0, "n": 2, "n_real": 1, "n_fake": 1, "n_in_b": 2, "fake_share_a": 1.0, "fake_share_b": 0.5},
        {"cell": 1, "n": 1, "n_real": 0, "n_fake": 1, "n_in_b": 1, "fake_share_a": 1.0, "fake_share_b": 0.0},
        {"cell": 2, "n": 1, "n_real": 0, "n_fake": 1, "n_in_b": 0, "fake_share_a": 0.0, "fake_share_b": None}]


def test_cmd_compare_prints_the_compare_lines_only(tmp_path, capsys):
    for meta in (META_A, META_B):
        folder = tmp_path / meta["run_id"]
        folder.mkdir()
        (folder / "meta.json").write_text(json.dumps(meta))
    assert main(["compare", str(tmp_path / "run-a"), str(tmp_path / "run-b-reencoded")]) == 0
    assert capsys.readouterr().out.splitlines() == EXPECTED
