"""Configuration loading and artifact storage."""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from pipeline.config import load_config
from pipeline.data.scan import PathRefused, Record
from pipeline.store.run_store import (RECORD_FIELDS, RUN_COLUMNS, ArtifactError, RunStore, read_records_csv,
                            write_records_csv, write_run)


def test_yaml_base_overrides_and_fingerprint(tmp_path):
    (tmp_path / "base.yaml").write_text("head:\n  dim: 16\n  ortho_weight: 0.1\n")
    (tmp_path / "child.yaml").write_text("base: base.yaml\nhead:\n  ortho_weight: 0.5\n"
                                         "data:\n  generators: [a, b]\n")
    cfg = load_config(tmp_path / "child.yaml", ["cells.n_cells=12"])
    assert cfg.head.ortho_weight == 0.5 and cfg.head.dim == 16 and cfg.cells.n_cells == 12
    assert cfg.data.generators == ("a", "b")
    same = load_config(tmp_path / "child.yaml", ["cells.n_cells=12"])
    other = load_config(tmp_path / "child.yaml", ["cells.n_cells=13"])
    assert cfg.fingerprint() == same.fingerprint() != other.fingerprint()
    assert cfg.fingerprint("head") == other.fingerprint("head")


def test_unknown_key_is_named(tmp_path):
    (tmp_path / "bad.yaml").write_text("head:\n  dimm: 3\n")
    with pytest.raises(ValueError, match=r"dimm.*head"):
        load_config(tmp_path / "bad.yaml")


def test_arrays_checksummed_and_atomic(tmp_path):
    store = RunStore(tmp_path / "run")
    arr = np.arange(12, dtype=np.float32).reshape(3, 4)
    store.save_array("z16", arr)
    assert np.array_equal(store.load_array("z16"), arr)
    assert not [p for p in store.path.iterdir() if p.name.endswith(".tmp")]
    store.write_meta({"run_id": "run"})  # the checksum recorded at write time goes into meta.json
    assert "z16.npy" in RunStore(store.path).read_meta()["checksums"]
    raw = bytearray((store.path / "z16.npy").read_bytes())
    raw[-1] ^= 0xFF
    (store.path / "z16.npy").write_bytes(bytes(raw))
    for reader in (store, RunStore(store.path)):  # this writer, and a reader of the folder
        with pytest.raises(ArtifactError, match="checksum"):
            reader.load_array("z16")


def test_records_roundtrip_with_unicode(tmp_path):
    rows = [{"id": "a", "path": "ünï code/x,y.png", "label": 1, "prob_fake": 0.25, "cell": 3}]
    write_records_csv(tmp_path / "r.csv", rows)
    back = read_records_csv(tmp_path / "r.csv")
    assert back[0]["path"] == "ünï code/x,y.png" and back[0]["label"] == 1 and back[0]["prob_fake"] == 0.25


def test_record_columns_come_from_one_definition_and_old_runs_read_with_defaults(tmp_path):
    scan_columns = [f.name for f in dataclasses.fields(Record)]
    assert RECORD_FIELDS == scan_columns + [c for c in RUN_COLUMNS if c not in scan_columns]
    # a records.csv of an older version: fewer columns, in another order
    (tmp_path / "old.csv").write_text("path,id,label,cell\nx.png,a,1,2\n")
    [row] = read_records_csv(tmp_path / "old.csv")
    assert row["label"] == 1 and row["cell"] == 2 and row["generator"] == "" and row["width"] == 0
    assert math.isnan(row["prob_fake"]) and row["pred"] == 0 and row["split"] == ""


def test_damaged_names_every_corrupted_or_missing_file(tmp_path):
    store = RunStore(tmp_path / "run")
    store.save_array("z16", np.zeros((2, 16), np.float32))
    store.write_records([{"id": "a", "path": "a.png", "label": 0}])
    store.write_cells({"cells": []})
    store.write_meta({"run_id": "run"})
    assert sorted(store.read_meta()["checksums"]) == ["cells.json", "records.csv", "z16.npy"]
    assert store.damaged() == []
    with open(store.path / "records.csv", "a") as fh:
        fh.write("b,b.png,1\n")
    (store.path / "cells.json").unlink()
    problems = store.damaged()
    assert len(problems) == 2
    assert any("records.csv fails its checksum" in p for p in problems)
    assert any("cells.json is missing" in p for p in problems)
    assert store.damaged(["z16.npy"]) == []
    with pytest.raises(ArtifactError, match="records.csv fails its checksum"):
        RunStore(store.path).read_records()


def test_amending_a_run_keeps_its_checksums_current(tmp_path):
    store = write_run(tmp_path / "run", meta={"run_id": "run"}, records=[{"id": "a", "path": "a.png",
                                                                        "label": 0}],
                      cells={"cells": []}, arrays={"z16": np.zeros((1, 16), np.float32)})
    RunStore(store.path).write_records([{"id": "a", "path": "b.png", "label": 1}])
    assert RunStore(store.path).read_records()[0]["path"] == "b.png"  # no false checksum alarm
    assert not (tmp_path / ".run.partial").exists()


def test_image_path_stays_under_the_data_root(tmp_path):
    root = tmp_path / "data"
    (root / "a").mkdir(parents=True)
    (root / "a" / "x.png").write_bytes(b"x")
    (tmp_path / "secret.png").write_bytes(b"s")
    (root / "a" / "link.png").symlink_to(tmp_path / "secret.png")
    records = [{"id": str(i), "path": p, "label": 0} for i, p in
               enumerate(["a/x.png", "../secret.png", str(tmp_path / "secret.png"), "a/link.png"])]
    store = write_run(tmp_path / "run", meta={"data": {"root": str(root)}}, records=records,
                      cells={"cells": []}, arrays={})
    assert store.image_path(0) == (root / "a" / "x.png").resolve()
    for i in (1, 2, 3, 4, -1, "0"):
        with pytest.raises(PathRefused):
            store.image_path(i)
