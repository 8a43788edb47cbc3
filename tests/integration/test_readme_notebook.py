"""README.md's "From a notebook" session runs as written: its ``python`` block, as one notebook
cell, on a generated data set with the tiny encoder (``configs/test.yaml``).

Only the placeholders change: the data set paths, and ``configs/default.yaml`` (CLIP or its
stand-in: minutes) becomes ``configs/test.yaml``. The cell's last line, ``app.show(run)``, serves
the app in a thread (no IPython kernel here); the test then opens the page over HTTP, checks that
it opens the run, and stops the server.
"""
from __future__ import annotations

import ast
import re
import urllib.error
import urllib.request

import pytest

from pipeline.config import REPO_ROOT
from tests.fixtures_runs import make_dataset
from tests.helpers import torch_threads
from tests.unit.test_front_door import check_served

SECTION = "## From a notebook"


def notebook_block(markdown: str) -> str:
    """The ``python`` block of the README's notebook section."""
    assert SECTION in markdown, f"README.md has no {SECTION!r} section"
    section = markdown.split(SECTION, 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert len(blocks) == 1, f"expected one python block under {SECTION!r}, found {len(blocks)}"
    return blocks[0]


def run_cell(source: str, namespace: dict):
    """Run ``source`` as a notebook cell does: every statement in order, and the value of the last
    one when it is an expression (what the cell would display)."""
    tree = ast.parse(source, "<README.md>")
    last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
    exec(compile(tree, "<README.md>", "exec"), namespace)
    return eval(compile(ast.Expression(last.value), "<README.md>", "eval"), namespace) if last else None


def test_the_notebook_block_is_found_and_uses_its_placeholders():
    block = notebook_block((REPO_ROOT / "README.md").read_text(encoding="utf-8"))
    for placeholder in ('"/path/to/dataset"', '"/path/to/new-images"', '"configs/default.yaml"'):
        assert placeholder in block
    assert block.rstrip().splitlines()[-1].startswith("app.show(run)")
    assert run_cell("x = 2\nx + 1", {}) == 3 and run_cell("y = 2", {}) is None


def test_readme_notebook_session_runs_as_written(tmp_path, monkeypatch, capsys):
    block = notebook_block((REPO_ROOT / "README.md").read_text(encoding="utf-8"))
    data = make_dataset(tmp_path / "data")
    new = make_dataset(tmp_path / "new-images", seed=1, n_per_folder=2)
    for placeholder, value in (("/path/to/dataset", data), ("/path/to/new-images", new),
                               ("configs/default.yaml", "configs/test.yaml")):
        block = block.replace(placeholder, str(value))
    monkeypatch.setenv("FAXPLAINER_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("FAXPLAINER_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)  # a notebook's folder: configs/test.yaml is found in the repository
    namespace: dict = {}
    with torch_threads(1):
        shown = run_cell(block, namespace)
    try:
        run, maps, scored = namespace["run"], namespace["maps"], namespace["scored"]
        assert run.meta["status"] == "complete" and len(run.records) == 48
        assert run.path.parent == tmp_path / "runs"
        out = capsys.readouterr().out
        assert f"run {run.id}" in out and "held-out accuracy" in out  # print(run.report())
        assert sorted(maps) == [0, 1, 2]
        assert all(m.maps.shape[0] == 16 and m.rgb.shape[:2] == m.aggregate.shape for m in maps.values())
        concepts = run.concepts(namespace["cell"])["concepts"]  # cached by the cell's line: read back
        assert concepts and all((run.path / p).is_file() for c in concepts for p in c["patches"])
        assert scored.is_applied and scored.id == f"{run.id}@new-images" and len(scored.records) == 16
        assert scored.metrics["n"] == 16
        assert [s.id for s in run.applied_sets] == [scored.id]
        assert f"FaXplainer on {shown.url}" in out
        check_served(shown, run.id)
    finally:
        shown.stop()
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(shown.url, timeout=5)
    shown_set = namespace["app"].show(scored, "external")  # an applied set opens as RUN@SET
    try:
        check_served(shown_set, scored.id)
    finally:
        shown_set.stop()
