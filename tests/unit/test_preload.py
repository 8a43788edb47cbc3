"""Local mode imports the job stack once, before serving, so its forked jobs start loaded."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from pipeline.config import REPO_ROOT

# A forked job (as DiskcacheManager starts one) after the preload: what it finds loaded, and
# whether torch still computes on both threads and backpropagates in the fork (no inherited pool).
FORKED_JOB = textwrap.dedent("""
    import json, sys
    from app.jobs.managers import preload_job_stack
    took = preload_job_stack()
    from multiprocess import Process, Queue

    def job(out):
        loaded = {m: m in sys.modules for m in ("torch", "timm", "sklearn.cluster",
                                                "pipeline.explain.cache", "pipeline.runner")}
        import torch
        torch.set_num_threads(2)
        a = torch.randn(512, 512, requires_grad=True)
        (a @ a).sum().backward()
        out.put({"loaded": loaded, "grad_ok": bool(torch.isfinite(a.grad).all())})

    q = Queue()
    p = Process(target=job, args=(q,))
    p.start()
    p.join(timeout=120)
    print(json.dumps({"took": took, "exitcode": p.exitcode, **(q.get(timeout=5) if p.exitcode == 0 else {})}))
""")


def test_a_job_forked_after_the_preload_finds_the_stack_loaded_and_torch_working():
    r = subprocess.run([sys.executable, "-c", FORKED_JOB], cwd=REPO_ROOT, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["exitcode"] == 0, out  # a fork that inherited a torch thread pool would hang here
    assert all(out["loaded"].values()), out["loaded"]
    assert out["grad_ok"] and out["took"] > 0


def _serve(monkeypatch, *args):
    """``python -m app`` with the server replaced: returns (preloaded?, served?)."""
    import app.jobs.managers
    import app.main
    from app.__main__ import main

    calls = []

    class FakeApp:
        def run(self, **_kwargs):
            calls.append("serve")

    monkeypatch.setattr(app.main, "create_app", lambda cfg, run=None: FakeApp())
    monkeypatch.setattr(app.jobs.managers, "preload_job_stack", lambda: calls.append("preload") or 0.0)
    assert main(["--config", str(REPO_ROOT / "configs" / "test.yaml"), *args]) == 0
    return calls


def test_local_mode_preloads_before_it_serves_unless_told_not_to(monkeypatch):
    assert _serve(monkeypatch) == ["preload", "serve"]
    assert _serve(monkeypatch, "--set", "server.preload_job_stack=false") == ["serve"]
