"""Configuration loading and artifact storage."""
from __future__ import annotations

import numpy as np
import pytest

from pipeline.config import load_config
from pipeline.store import ArtifactError, RunStore, read_records_csv, write_records_csv


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
    digest = store.save_array("z16", arr)
    assert np.array_equal(store.load_array("z16", expected_sha256=digest), arr)
    assert not [p for p in store.path.iterdir() if p.name.endswith(".tmp")]
    raw = bytearray((store.path / "z16.npy").read_bytes())
    raw[-1] ^= 0xFF
    (store.path / "z16.npy").write_bytes(bytes(raw))
    with pytest.raises(ArtifactError, match="checksum"):
        store.load_array("z16", expected_sha256=digest)


def test_records_roundtrip_with_unicode(tmp_path):
    rows = [{"id": "a", "path": "ünï code/x,y.png", "label": 1, "prob_fake": 0.25, "cell": 3}]
    write_records_csv(tmp_path / "r.csv", rows)
    back = read_records_csv(tmp_path / "r.csv")
    assert back[0]["path"] == "ünï code/x,y.png" and back[0]["label"] == 1 and back[0]["prob_fake"] == 0.25


def test_damaged_names_every_corrupted_or_missing_file(tmp_path):
    from pipeline.store import sha256_file
    store = RunStore(tmp_path / "run")
    checksums = {"z16.npy": store.save_array("z16", np.zeros((2, 16), np.float32))}
    write_records_csv(store.path / "records.csv", [{"id": "a", "path": "a.png", "label": 0}])
    store.write_cells({"cells": []})
    for name in ("records.csv", "cells.json"):
        checksums[name] = sha256_file(store.path / name)
    store.write_meta({"checksums": checksums})
    assert store.damaged() == []
    with open(store.path / "records.csv", "a") as fh:
        fh.write("b,b.png,1\n")
    (store.path / "cells.json").unlink()
    problems = store.damaged()
    assert len(problems) == 2
    assert any("records.csv fails its checksum" in p for p in problems)
    assert any("cells.json is missing" in p for p in problems)
    assert store.damaged(["z16.npy"]) == []
