"""A run killed with SIGKILL in the middle of embedding resumes: finished chunks are not recomputed."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import numpy as np

from pipeline.config import REPO_ROOT

from .test_pipeline_tiny import make_dataset


def _cached_keys(cache_dir) -> int:
    total = 0
    for chunk in cache_dir.glob("embeddings/*/chunk-*.npz"):
        with np.load(chunk) as z:
            total += len(z["keys"])
    return total


def test_sigkill_mid_embedding_then_resume(tmp_path):
    root = make_dataset(tmp_path / "data", n_per_class=120, salt=False)  # 240 images
    cache = tmp_path / "cache"
    cmd = [sys.executable, "-m", "pipeline", "run", "--config", str(REPO_ROOT / "configs" / "test.yaml"),
           "--data", str(root), "--set", f"runs_dir={tmp_path / 'runs'}", "--set", f"cache_dir={cache}",
           "--set", "encoder.chunk_size=16", "--set", "encoder.batch_size=8", "--set", "encoder.num_workers=0"]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while _cached_keys(cache) < 48 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be killed; make the data set larger"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = _cached_keys(cache)
    assert 48 <= done_before < 240
    assert not list((tmp_path / "runs").glob("*/meta.json"))  # no half run looks finished

    second = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stderr[-2000:]
    computed, cached = map(int, re.search(r"embeddings: (\d+) computed, (\d+) from cache", second.stderr).groups())
    # the resumed run embeds the projection's sample first (pipeline.projection_stage), so the data
    # set's embedding finds at least the killed run's images in the cache, and computes the rest
    assert cached >= done_before and computed + cached == 240
    assert _cached_keys(cache) == 240  # every image embedded exactly once over both runs
