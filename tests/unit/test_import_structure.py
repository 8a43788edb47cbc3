"""The import structure: no cycle among the modules of ``app/`` and ``pipeline/`` (counting imports
inside functions, which can hide a cycle until the day they run), and ``pipeline/`` never imports
Dash or the app."""
from __future__ import annotations

import ast
from pathlib import Path

from pipeline.config import REPO_ROOT

PACKAGES = ("app", "pipeline")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO_ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """Modules of ``app``/``pipeline`` that ``path`` imports anywhere (top level or in functions)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.add(target)
            found.update(f"{target}.{a.name}" for a in node.names)  # "from . import views"
    return {m for m in found if m.split(".")[0] in PACKAGES}


def graph() -> dict[str, set[str]]:
    files = [p for pkg in PACKAGES for p in (REPO_ROOT / pkg).rglob("*.py")]
    modules = {module_name(p): p for p in files}
    edges = {}
    for name, path in modules.items():
        # "from app.views import images" names a module; "from app.jobs.managers import view_job" a name in one
        edges[name] = {m if m in modules else m.rpartition(".")[0] for m in imports_of(path)}
        edges[name] = {m for m in edges[name] if m in modules and m != name}
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component of more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def test_finds_a_planted_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycle_in_app_or_pipeline():
    edges = graph()
    assert "app.main" in edges["app.shared.worker"] and "app.jobs.managers" in edges["app.main"]  # it sees the code
    assert cycles(edges) == []


def test_pipeline_never_imports_dash_or_the_app():
    for path in (REPO_ROOT / "pipeline").rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
            assert not [n for n in names if n.split(".")[0] in ("dash", "app", "flask")], path


# The layers, lowest first: a module may import its own package and any lower layer, never a
# higher one, nor another package of its own layer. A package's __init__ (the front door) may
# import anything below it; `import pipeline.x` always runs pipeline/__init__ first, so an edge to
# a top package's __init__ is no dependency.
LAYERS = [
    ["pipeline.reencode_spec"],
    ["pipeline.config"],
    ["pipeline.data"],
    ["pipeline.store"],
    ["pipeline.model"],
    ["pipeline.represent"],
    ["pipeline.explain", "pipeline.checks"],
    ["pipeline.report"],  # the findings sheet shows what explain and checks produce
    ["pipeline.projection_stage", "pipeline.stage_times"],  # pieces of a run
    ["pipeline.runner"],
    ["pipeline.generalise"],
    ["pipeline.cli"],
    ["pipeline.api"],  # the front door's functions print as the commands do
    ["pipeline.__main__"],
    ["app.figures"],
    ["app.state"],
    ["app.files"],
    ["app.jobs"],
    ["app.access", "app.views"],
    ["app.layout"],
    ["app.main"],
    ["app.shared", "app.__main__", "app.notebook"],
]
TOPS = ("pipeline", "app")


def layer_of(module: str) -> tuple[int, str]:
    """(rank, package) of a module: its subpackage's layer, or its own for a top-level module."""
    for rank, packages in enumerate(LAYERS):
        for package in packages:
            if module == package or module.startswith(package + "."):
                return rank, package
    raise AssertionError(f"{module} is in no layer: add its package to LAYERS")


def layer_violations(edges: dict[str, set[str]]) -> list[str]:
    bad = []
    for source, targets in edges.items():
        if source in TOPS:
            continue  # the front doors re-export lazily from every layer
        rank, package = layer_of(source)
        for target in targets - set(TOPS):
            their_rank, their_package = layer_of(target)
            if their_package != package and their_rank >= rank:
                bad.append(f"{source} ({package}) imports {target} ({their_package}), "
                           f"{'a higher' if their_rank > rank else 'a same'} layer")
    return sorted(bad)


def test_finds_a_planted_layer_violation():
    edges = {"pipeline.store.run_store": {"pipeline.explain.cache"},
             "pipeline.explain.cache": {"pipeline.checks.validity"},
             "pipeline.model.head": {"pipeline.config"}}
    assert layer_violations(edges) == [
        "pipeline.explain.cache (pipeline.explain) imports pipeline.checks.validity (pipeline.checks), a same layer",
        "pipeline.store.run_store (pipeline.store) imports pipeline.explain.cache (pipeline.explain), a higher layer"]


def test_lower_layers_never_import_upper_ones():
    edges = graph()
    assert all(layer_of(m) for m in edges if m not in TOPS)  # every module has a layer
    assert layer_violations(edges) == []


def test_the_config_imports_only_leaf_modules():
    """``pipeline.config`` is imported by every package, so it imports none of them (only leaf
    modules that import nothing from ``pipeline``, like the re-encoding spec it parses)."""
    edges = graph()
    assert edges["pipeline.config"] == {"pipeline.reencode_spec"}
    assert edges["pipeline.reencode_spec"] == set()


# The web process reads a run's atlas, profiles and subject masks without torch (imported, torch
# costs seconds and hundreds of MB per worker); computing them (atlas_jobs) is the jobs' business.
TORCH_FREE_READERS = ("pipeline.explain.atlas", "pipeline.explain.profiles", "pipeline.explain.subject_mask")


def test_the_atlas_readers_never_import_torch():
    import subprocess
    import sys
    code = ("import sys; import " + ", ".join(TORCH_FREE_READERS) +
            "; print(sorted(m for m in ('torch', 'timm', 'open_clip') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT, check=True)
    assert out.stdout.strip() == "[]"
    assert "pipeline.explain.atlas_jobs" in graph()["pipeline.cli.atlas"]  # the job side is where torch is
