"""The run a bench measures when none is named: the offline demo's (stand-in), built when missing."""
from __future__ import annotations

from pathlib import Path

from pipeline.config import REPO_ROOT, load_config


def demo_run() -> Path:
    from pipeline.data.demo.builtin import ensure_demo_config
    from pipeline.runner import run_pipeline

    cfg = load_config(REPO_ROOT / "configs" / "default.yaml", ["encoder.name=dinov2_standin"])
    return run_pipeline(ensure_demo_config(cfg, log=print)).path
