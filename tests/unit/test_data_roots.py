"""The data-roots rule of a shared server (pipeline.data.roots): what a new run may read, and the
bounded listing of the data sets under the roots."""
from __future__ import annotations

import os
import time

import pytest

from pipeline.config import from_dict
from pipeline.data.roots import (DataRootError, allowed_data_path, check_data_path, data_choices,
                                 data_roots)


def _layout(folder, *parts):
    """An empty 0_real/1_fake data set at ``folder/parts...`` (the rule reads no images)."""
    base = folder.joinpath(*parts)
    for label in ("0_real", "1_fake"):
        (base / label).mkdir(parents=True, exist_ok=True)
    return base


@pytest.fixture()
def tree(tmp_path):
    """root/ with data sets and a manifest; outside/ next to it; links from root to outside."""
    root, outside = tmp_path / "root", tmp_path / "outside"
    _layout(root, "faces")
    _layout(root, "cnn", "progan", "airplane")
    _layout(outside, "secret")
    (root / "lists").mkdir()
    (root / "lists" / "good.csv").write_text("path,label\n../faces/0_real/a.png,real\n")
    (root / "lists" / "escapes.csv").write_text("path,label\nok.png,real\n../../outside/secret/x.png,fake\n")
    (root / "lists" / "absolute.csv").write_text(f"path,label\n{outside / 'secret' / 'x.png'},fake\n")
    (root / "lists" / "notes.csv").write_text("name,comment\nx,y\n")  # a CSV, not a manifest
    os.symlink(outside / "secret", root / "link-out")
    os.symlink(root / "faces", root / "link-in")
    (root / "linked").mkdir()
    os.symlink(outside / "secret", root / "linked" / "rows")
    (root / "linked" / "manifest.csv").write_text("path,label\nrows/0_real/x.png,real\n")
    return root, outside


def test_paths_under_the_roots_are_allowed_resolved(tree):
    root, _ = tree
    assert check_data_path(root / "faces", [root]) == (root / "faces").resolve()
    assert check_data_path(root / "lists" / "good.csv", [root]) == (root / "lists" / "good.csv").resolve()
    assert check_data_path(root / "cnn" / "progan" / ".." / "progan", [root]) == (root / "cnn" / "progan")
    assert check_data_path(root / "link-in", [root]) == (root / "faces").resolve()  # stays inside
    assert check_data_path(root, [root]) == root.resolve()


def test_paths_outside_or_leaving_the_roots_are_refused_naming_the_roots(tree):
    root, outside = tree
    with pytest.raises(DataRootError, match=f"outside the data folders.*{root}"):
        check_data_path(outside / "secret", [root])
    with pytest.raises(DataRootError, match="outside the data folders"):
        check_data_path(root / ".." / "outside" / "secret", [root])
    with pytest.raises(DataRootError, match=f"through a link to {outside / 'secret'}.*{root}"):
        check_data_path(root / "link-out", [root])
    with pytest.raises(DataRootError, match="outside the data folders"):
        check_data_path("/", [root])
    with pytest.raises(DataRootError, match="no data folders are configured"):
        check_data_path(root / "faces", [])
    # a path outside is refused as outside, without saying whether it exists there
    with pytest.raises(DataRootError, match="outside") as missing_outside:
        check_data_path(outside / "nothing-here", [root])
    assert "does not exist" not in str(missing_outside.value)
    with pytest.raises(DataRootError, match="does not exist"):
        check_data_path(root / "nothing-here", [root])


def test_a_manifest_with_rows_outside_the_roots_is_refused(tree):
    root, _ = tree
    with pytest.raises(DataRootError,
                       match=r"escapes.csv line 3: '../../outside/secret/x.png' points outside"):
        check_data_path(root / "lists" / "escapes.csv", [root])
    with pytest.raises(DataRootError, match="absolute.csv line 2"):
        check_data_path(root / "lists" / "absolute.csv", [root])
    # a folder's own manifest.csv is read by the scan, so it is checked too (its rows use a link)
    with pytest.raises(DataRootError, match=r"manifest.csv line 2: 'rows/0_real/x.png' points outside"):
        check_data_path(root / "linked", [root])
    # the same manifest is fine when the link's target is a root as well
    assert check_data_path(root / "lists" / "escapes.csv", [root, tree[1]])


def test_local_mode_keeps_free_paths_and_shared_mode_checks(tree, monkeypatch):
    root, outside = tree
    monkeypatch.delenv("FAXPLAINER_DATA_ROOTS", raising=False)
    local = from_dict({})
    assert allowed_data_path(local, str(outside / "secret")) == str(outside / "secret")
    shared = from_dict({"server": {"mode": "shared", "data_roots": [str(root)]}})
    assert allowed_data_path(shared, "") == "" and allowed_data_path(shared, None) == ""
    assert allowed_data_path(shared, f"  {root / 'faces'} ") == str((root / "faces").resolve())
    with pytest.raises(DataRootError):
        allowed_data_path(shared, str(outside / "secret"))
    monkeypatch.setenv("FAXPLAINER_DATA_ROOTS", f"{outside}{os.pathsep}{root}{os.pathsep}")
    assert data_roots(shared) == (root.resolve(), outside.resolve())  # config first, no repeats
    assert allowed_data_path(shared, str(outside / "secret")) == str((outside / "secret").resolve())


def test_data_choices_lists_layouts_and_manifests_not_links(tree):
    root, outside = tree
    choices = data_choices([root, root.parent / "missing"])
    found = {(c.path.relative_to(root).as_posix() if c.path != root else ".", c.kind)
             for c in choices.items}
    # root/faces/0_real makes root a data set too (faces as its generator), as the scan reads it
    assert found == {(".", "folder"), ("faces", "folder"), ("cnn/progan/airplane", "folder"),
                     ("cnn/progan", "folder"), ("cnn", "folder"), ("lists/good.csv", "manifest"),
                     ("lists/escapes.csv", "manifest"), ("lists/absolute.csv", "manifest"),
                     ("linked", "folder")}
    assert not choices.truncated and choices.missing_roots == (root.parent / "missing",)
    assert all(outside not in c.path.parents for c in choices.items)
    labels = {c.kind: c.label for c in choices.items}
    assert labels["folder"].endswith("(0_real/1_fake folder)")
    assert labels["manifest"].endswith("(CSV manifest)")


def test_data_choices_is_bounded(tmp_path):
    root = tmp_path / "big"
    for i in range(30):
        _layout(root, f"set{i:02d}")
    deep = root.joinpath(*[f"d{i}" for i in range(8)])
    _layout(deep)
    wide = root / "wide"  # a folder of many files (like a folder of images)
    wide.mkdir()
    for i in range(3000):
        (wide / f"{i}.png").touch()
    listed = {c.path for c in data_choices([root]).items}
    assert listed == {root} | {root / f"set{i:02d}" for i in range(30)}  # not the deep one
    capped = data_choices([root], max_items=10)
    assert len(capped.items) == 10 and capped.truncated
    assert data_choices([root], max_dirs=5).truncated
    assert data_choices([root], max_entries=500).truncated
    t0 = time.perf_counter()
    data_choices([root], max_entries=500)
    assert time.perf_counter() - t0 < 5  # bounded work (generous: shared CI machine)
