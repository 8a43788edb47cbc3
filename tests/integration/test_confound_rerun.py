"""A flagged size confound, equalised (issue 23.7): on a set whose only class difference is the
image size (reals 64x48, fakes 80x80, both JPEG q90), the run flags the size, the chosen spec
resizes both classes to one square, the re-run (the app's job body, the same data with
``data.reencode`` set) no longer flags the size, the bias probe gets its ``to_size`` row, the data
checks panel offers the re-run and the compare view shows both runs."""
from __future__ import annotations

import numpy as np
import pytest

from app.state.context import AppContext
from app.views import checks, compare
from pipeline.checks.confound import flagged_groups, run_fix
from pipeline.checks.validity import flagged_fact_transforms, probe_result
from pipeline.config import REPO_ROOT, load_config
from pipeline.runner import run_pipeline
from pipeline.store.run_store import RunStore
from tests.integration.test_checks_run import N_PER_CLASS, _scene
from tests.unit.test_app_callbacks import _texts

SIZE_FACTS = {"size", "width", "height", "aspect", "pixels"}


def make_size_set(root, seed=0):
    """Scenes from one distribution, all JPEG q90: reals 64x48, fakes 80x80."""
    rng = np.random.default_rng(seed)
    for label, size in (("0_real", (64, 48)), ("1_fake", (80, 80))):
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(N_PER_CLASS):
            _scene(rng, size).save(root / label / f"{label[0]}{i:03d}.jpg", quality=90)
    return root


def _cfg(tmp_path, *extra):
    return load_config(REPO_ROOT / "configs" / "test.yaml",
                       [f"runs_dir={tmp_path / 'runs'}", f"cache_dir={tmp_path / 'cache'}",
                        "checks.near_duplicate_cos=0.99999", *extra])


def test_a_size_confound_is_equalised_by_the_chosen_reencoding(tmp_path):
    data = make_size_set(tmp_path / "sized")
    store_a = run_pipeline(_cfg(tmp_path, f"data.root={data}"))
    checks_a = store_a.read_meta()["checks"]
    flagged_a = {f["fact"] for f in checks_a["shortcuts"]["flags"]}
    assert flagged_a & SIZE_FACTS and "size" in flagged_groups(checks_a)

    fix = run_fix(store_a.path)
    assert fix.spec == "jpeg:90:48" and "size" in fix.groups  # the reals' short side
    # the file size follows the pixel count: the compression group is flagged as well
    assert fix.reason.startswith("every fake is 80x80, every real is 64x48")
    assert fix.reason.endswith(": both classes re-encoded as JPEG 90 at 48x48")
    names = [t.name for t in flagged_fact_transforms(store_a.path)]
    assert names == (["size48", "jpeg90"] if "compression" in fix.groups else ["size48"])
    assert probe_result(store_a.path).inputs["transforms"] == names

    ctx = AppContext(_cfg(tmp_path))
    style, reason, button = checks.confound_box(ctx, store_a.run_id)
    assert style == {} and button == "Re-run with both classes re-encoded (jpeg:90:48)"
    assert "every fake is 80x80" in _texts(reason)

    run_b = checks.rerun_reencoded(ctx, store_a.run_id, lambda *a: None)
    store_b = RunStore(tmp_path / "runs" / run_b)
    meta_b = store_b.read_meta()
    assert meta_b["config"]["data"]["reencode"] == "jpeg:90:48"
    assert meta_b["config"]["data"]["root"] == str(data.resolve())
    sc = meta_b["checks"]["shortcuts"]
    assert not {f["fact"] for f in sc["flags"]} & SIZE_FACTS and "size" not in flagged_groups(meta_b["checks"])
    statuses = {f["fact"]: f["status"] for f in sc["facts"]}
    assert all(statuses[name] in ("neutralised", "constant") for name in SIZE_FACTS), statuses
    assert run_fix(store_b.path) is None  # nothing left to equalise
    assert checks.confound_box(ctx, run_b)[0] == {"display": "none"}

    content = _texts(compare.comparison(ctx, store_a.run_id, run_b))
    assert store_a.run_id in content and run_b in content and "jpeg:90:48" in content
    assert "held-out AUC" in content and "fake in " + run_b in content
