"""The app's callbacks form no loop (Dash's renderer refuses to run callbacks caught in a cycle of
inputs and outputs: they silently never fire, as a deletion check that redrew the matrix once
did)."""
from __future__ import annotations

import json

from app.main import create_app
from pipeline.config import from_dict
from tests.unit.test_import_structure import cycles


def _node(component_id, prop) -> str:
    key = json.dumps(component_id, sort_keys=True) if isinstance(component_id, dict) else component_id
    return f"{key}.{prop}"


def callback_graph(app) -> dict[str, set[str]]:
    """callback -> the callbacks its outputs trigger. One callback whose input is also its own
    output (the router: the URL in, the URL out) is allowed by Dash and not an edge."""
    outputs, inputs = {}, {}
    for key, spec in app.callback_map.items():
        outs = spec["output"] if isinstance(spec["output"], list) else [spec["output"]]
        outputs[key] = {_node(_pattern(o.component_id), o.component_property) for o in outs}
        inputs[key] = {_node(_pattern(i["id"]), i["property"]) for i in spec["inputs"]}
    return {a: {b for b in inputs if b != a and outputs[a] & inputs[b]} for a in outputs}


def _pattern(component_id):
    if isinstance(component_id, dict):
        return {"type": component_id.get("type")}
    return str(component_id).split("@")[0]  # allow_duplicate outputs carry a suffix


def test_a_planted_loop_is_found():
    assert cycles({"a.data": {"b.data"}, "b.data": {"a.data"}}) == [["a.data", "b.data"]]


def test_no_callback_loop(tmp_path):
    app = create_app(from_dict({"runs_dir": str(tmp_path / "runs"), "cache_dir": str(tmp_path / "c")}))
    edges = callback_graph(app)
    assert len(edges) > 20 and any(edges.values())  # the graph holds the app's callbacks
    assert cycles(edges) == []
