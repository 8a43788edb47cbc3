"""The web process forks its jobs while its request threads run numpy's BLAS (the profiles'
upsampling): with threaded OpenBLAS that hangs the process at the first fork (app.jobs.fork_safety).
A child script plays the web process: two threads upsample maps as the count lines do, the main
thread forks jobs that use BLAS themselves."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

WEB_PROCESS = textwrap.dedent("""
    import json, os, sys, threading, time
    import numpy as np
    sys.path.insert(0, {repo!r})
    from pipeline.explain._bilinear import upsample
    from app.jobs.fork_safety import blas_threads, single_threaded_blas_until_fork

    before = blas_threads()
    restore = single_threaded_blas_until_fork() if sys.argv[1] == "safe" else (lambda: None)
    serving = blas_threads()
    maps, done = np.random.default_rng(0).random((16, 16, 16)), [0]

    def requests():  # a request thread reading profiles
        while True:
            upsample(maps, (224, 224))
            done[0] += 1

    for _ in range(2):
        threading.Thread(target=requests, daemon=True).start()
    child_threads = set()
    for k in range(60):
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # a job: BLAS of its own, with the threads it was given back
            a = np.random.default_rng(k).random((200, 200))
            os.write(write, str(blas_threads() if np.isfinite(a @ a).all() else -1).encode())
            os._exit(0)
        os.close(write)
        os.waitpid(pid, 0)
        child_threads.add(int(os.read(read, 16)))
        os.close(read)
        time.sleep(0.01)
    at_end = done[0]
    time.sleep(0.2)
    restore()
    print(json.dumps({{"before": before, "serving": serving, "after": blas_threads(),
                      "children": sorted(child_threads), "upsampled": at_end,
                      "still_going": done[0] > at_end}}))
""")


def run_web_process(mode: str, timeout: float) -> dict:
    script = WEB_PROCESS.format(repo=str(REPO))
    out = subprocess.run([sys.executable, "-c", script, mode], capture_output=True, text=True,
                         timeout=timeout, env={"OPENBLAS_NUM_THREADS": "2", "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_forking_jobs_while_requests_run_blas_never_hangs_the_web_process():
    # without single_threaded_blas_until_fork this hangs at the first fork (measured: 60 s timeout)
    result = run_web_process("safe", timeout=60)
    assert result["before"] == 2 and result["serving"] == 1  # the web process: one BLAS thread
    assert result["children"] == [2]  # every job got the threads back
    assert result["after"] == 2  # and so does a notebook kernel once its app is stopped
    assert result["upsampled"] > 60 and result["still_going"]  # the request threads kept working
