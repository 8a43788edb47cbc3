"""Bounded load test of the shared server on loopback: N simulated analysts for T seconds.

Each analyst is one browser page load (``tests.shared.dash_client.DashSession``: the same HTTP
requests Dash's renderer sends, background jobs polled every 0.3 s as the app asks) that repeats,
with a short pause between actions:

* ``page``       load the page, its callback list and the representation view of the run;
* ``cell``       click a cell: router callback, image-grid callback, the grid's job if the cell was
                 never prepared, then the grid's sprite picture;
* ``select``     box-select 1-4 images of the open cell: router, attention callback, the maps' job
                 if needed, then one overlay picture;
* ``concepts``   open the concept view of the cell: router, concepts callback, its job if needed,
                 then one concept patch;
* ``thumbnail``  fetch one image thumbnail.

It reports per action the count, the errors (HTTP errors, timeouts, error messages in the answer)
and the p50/p95/max latency of the whole action as the analyst waits for it.

Without ``--url`` it builds a small generated data set, runs the pipeline on it (tiny encoder,
``configs/test.yaml``) and starts the real shared server (Redis, Celery, gunicorn; needs
``redis-server``) on free 127.0.0.1 ports, and stops it at the end. With ``--url`` it loads an
already running server, which must be on loopback. Bounded: at most 50 analysts, 600 seconds and
200,000 actions; it stops by itself.

Run: ``python bench/load.py`` (defaults: 20 analysts, 60 s; ``--quick``: 5 analysts, 15 s).
Figures on a shared 2-core machine are pessimistic: the analysts, the web server and the workers
share the same two cores.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path
from urllib.parse import urlparse

if not __package__:  # started as `python bench/NAME.py`: the repository root on sys.path
    import _path  # noqa: F401

from app import ids  # noqa: E402
from app.jobpanel import JobPanel  # noqa: E402
from bench._options import parse_args  # noqa: E402
from tests.shared.dash_client import DashError, DashSession  # noqa: E402

REQUEST = {name: JobPanel.ids.request(name) for name in (ids.IMAGES_JOB, ids.ATTN_JOB, ids.CONCEPTS_JOB)}

MAX_ANALYSTS, MAX_SECONDS, MAX_ACTIONS = 50, 600, 200_000
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
ACTIONS = ("page", "cell", "select", "concepts", "thumbnail")
WEIGHTS = (0.05, 0.3, 0.3, 0.15, 0.2)
ERROR_MARK = "fx-error"


class Recorder:
    """Latencies and errors per action, shared by the analyst threads."""

    def __init__(self):
        self.lock = threading.Lock()
        self.times: dict[str, list[float]] = defaultdict(list)
        self.errors: dict[str, list[str]] = defaultdict(list)
        self.actions = 0

    def add(self, action: str, seconds: float, error: str | None) -> None:
        with self.lock:
            self.actions += 1
            if error is None:
                self.times[action].append(seconds)
            else:
                self.errors[action].append(error)

    def table(self) -> list[dict]:
        rows = []
        for action in ACTIONS:
            t = sorted(self.times.get(action, []))
            n = len(t) + len(self.errors.get(action, []))
            if not n:
                continue
            q = (lambda p: t[min(len(t) - 1, int(round(p * (len(t) - 1))))] if t else float("nan"))
            rows.append({"action": action, "count": n, "errors": len(self.errors.get(action, [])),
                         "p50_ms": 1000 * q(0.5), "p95_ms": 1000 * q(0.95),
                         "max_ms": 1000 * (t[-1] if t else float("nan")),
                         "mean_ms": 1000 * (statistics.fmean(t) if t else float("nan"))})
        return rows


def _customdata(figure: dict) -> list:
    return [c for trace in (figure or {}).get("data", []) for c in (trace.get("customdata") or [])]


class Analyst:
    """One simulated analyst: a page load and a loop of actions until ``deadline``."""

    def __init__(self, url: str, auth, rec: Recorder, deadline: float, seed: int, think: float):
        self.url, self.auth, self.rec, self.deadline = url, auth, rec, deadline
        self.rng = random.Random(seed)
        self.think = think
        self.s: DashSession | None = None
        self.run: str | None = None
        self.cells: list[int] = []
        self.cell: int | None = None
        self.images: list[int] = []
        self.state = {"shell-run-store.data": None, "shell-cell-store.data": None,
                      "shell-selection-store.data": None, "shell-view-store.data": None}

    # -- helpers ---------------------------------------------------------------------------------
    def route(self, trigger: str, value) -> dict:
        """The router callback for one user event; keeps the app-wide stores like the page does."""
        out = self.s.call("shell-run-store.data", {**self.state, trigger: value}, [trigger]) or {}
        for key in self.state:
            cid = key.rsplit(".", 1)[0]
            if cid in out:
                self.state[key] = out[cid]["data"]
        return out

    def job(self, output: str, request_store: str, request) -> dict:
        result = self.s.call_background(output, {f"{request_store}.data": request},
                                        [f"{request_store}.data"], poll=0.3, timeout=300)
        return result.response or {}

    def fetch(self, path: str) -> None:
        r = self.s.get(path)
        if r.status != 200:
            raise DashError(f"GET {path} answered {r.status}", r.status)

    def view(self, output: str, values: dict, trigger: str, request_store: str) -> dict:
        """A view's render callback, then its background job when the render asked for one."""
        out = self.s.call(output, values, [trigger]) or {}
        request = (out.get(request_store) or {}).get("data")
        if request:
            out = self.job(output, request_store, request)
        self._check(out)
        return out

    # -- actions ---------------------------------------------------------------------------------
    def page(self) -> None:
        self.s = DashSession(self.url, self.auth).open()
        self.cell, self.images = None, []  # a new page load starts with no cell open
        self.state = dict.fromkeys(self.state)
        self.fetch("/_dash-layout")
        self.route("shell-url-location.search", "")
        self.run = self.state["shell-run-store.data"]
        if not self.run:
            raise DashError("the server has no run to show")
        out = self.s.call("representation-cells-graph.figure", {"shell-run-store.data": self.run},
                          ["shell-run-store.data"])
        self.cells = sorted({int(c[0] if isinstance(c, list) else c)
                             for c in _customdata(out["representation-cells-graph"]["figure"])})

    def open_cell(self) -> None:
        cell = self.rng.choice(self.cells)
        self.route("representation-cells-graph.clickData", {"points": [{"customdata": [cell]}]})
        out = self.view("images-grid-graph.figure", self.state, "shell-cell-store.data",
                        REQUEST[ids.IMAGES_JOB])
        figure = out["images-grid-graph"]["figure"]
        self.images = [int(i) for i in _customdata(figure)]
        sprite = re.search(r"/files/sprite/[^\"']+\.jpg", json.dumps(figure))
        if not sprite or not self.images:
            raise DashError(f"cell {cell}: no grid in the answer")
        self.fetch(sprite.group(0))
        self.cell = cell

    def select(self) -> None:
        if not self.images:
            self.open_cell()
        chosen = self.rng.sample(self.images, min(len(self.images), self.rng.randint(1, 4)))
        self.route("images-grid-graph.selectedData", {"points": [{"customdata": i} for i in chosen]})
        out = self.view("attention-content-div.children",
                        {**self.state, f"{REQUEST[ids.ATTN_JOB]}.data": None},
                        "shell-selection-store.data", REQUEST[ids.ATTN_JOB])
        urls = re.findall(r"/files/attn/[^\"']+\.jpg", json.dumps(out))
        if not urls:
            raise DashError(f"images {chosen}: no maps in the answer")
        self.fetch(self.rng.choice(urls))

    def concepts(self) -> None:
        if self.cell is None:
            self.open_cell()
        self.route("images-view-radio.value", "concepts")
        out = self.view("concepts-content-div.children",
                        {**self.state, f"{REQUEST[ids.CONCEPTS_JOB]}.data": None},
                        "shell-view-store.data", REQUEST[ids.CONCEPTS_JOB])
        urls = re.findall(r"/files/concept/[0-9A-Za-z_.\-]+/\d+/\d+/\d+", json.dumps(out))
        if not urls:
            raise DashError(f"cell {self.cell}: no concept patch in the answer "
                            f"{json.dumps(out)[:300]}")
        self.fetch(urls[0])
        self.route("images-view-radio.value", "images")

    def thumbnail(self) -> None:
        pool = self.images or list(range(8))
        self.fetch(f"/files/thumb/{self.run}/{self.rng.choice(pool)}.jpg")

    @staticmethod
    def _check(out: dict) -> None:
        text = json.dumps(out)
        if ERROR_MARK in text:
            raise DashError("error shown: " + text[text.index(ERROR_MARK) - 200:][:400])

    # -- loop ------------------------------------------------------------------------------------
    def timed(self, action: str) -> None:
        t0 = time.perf_counter()
        error = None
        try:
            getattr(self, {"cell": "open_cell"}.get(action, action))()
        except Exception as e:  # every failure is counted with its message
            error = f"{type(e).__name__}: {e}"[:300]
            if self.s is not None:
                self.s.close()
        self.rec.add(action, time.perf_counter() - t0, error)

    def loop(self) -> None:
        self.timed("page")
        while time.monotonic() < self.deadline and self.rec.actions < MAX_ACTIONS:
            if not self.cells:
                self.timed("page")
                time.sleep(1)
                continue
            action = self.rng.choices(ACTIONS, WEIGHTS)[0]
            self.timed(action)
            time.sleep(self.rng.uniform(0.5, 1.5) * self.think)
        if self.s is not None:
            self.s.close()


def run_load(url: str, auth, analysts: int, seconds: float, think: float, seed: int = 0) -> Recorder:
    host = urlparse(url).hostname
    if host not in LOOPBACK:
        raise SystemExit(f"refusing to load {url}: only loopback servers (127.0.0.1) are load-tested")
    analysts, seconds = min(analysts, MAX_ANALYSTS), min(seconds, MAX_SECONDS)
    rec = Recorder()
    deadline = time.monotonic() + seconds
    threads = [threading.Thread(target=Analyst(url, auth, rec, deadline, seed + i, think).loop,
                                daemon=True) for i in range(analysts)]
    for i, t in enumerate(threads):
        t.start()
        time.sleep(min(0.1, seconds / 50))  # a short ramp: not all pages in the same millisecond
    for t in threads:
        t.join(max(1.0, deadline - time.monotonic()) + 330)  # a job in flight may finish (300 s cap)
    return rec


def _own_server(args):
    """A generated run and a shared server on free loopback ports; returns (stack, tmp)."""
    from app.shared_stack import SharedStack, free_port
    from pipeline.config import REPO_ROOT, load_config
    from tests.fixtures_runs import make_dataset, run_pipeline_cli

    tmp = Path(tempfile.mkdtemp(prefix="faxplainer-load-"))
    data = make_dataset(tmp / "data", n_per_folder=args.images_per_folder)
    t0 = time.perf_counter()
    run_id = run_pipeline_cli(data, tmp / "runs", tmp / "cache")
    print(f"run {run_id}: {8 * args.images_per_folder} images in {time.perf_counter() - t0:.0f} s",
          file=sys.stderr)
    from werkzeug.security import generate_password_hash

    (tmp / "users").write_text(f"analyst:{generate_password_hash('load-test-password')}\n")
    os.environ["FAXPLAINER_USERS_FILE"] = str(tmp / "users")
    cfg = load_config(REPO_ROOT / "configs" / "test.yaml", [
        f"runs_dir={tmp / 'runs'}", f"cache_dir={tmp / 'cache'}", "server.mode=shared",
        "server.host=127.0.0.1", f"server.port={free_port()}",
        f"server.redis_url=redis://127.0.0.1:{free_port()}/0",
        f"server.web_workers={args.web_workers}", f"server.job_workers={args.job_workers}"])
    stack = SharedStack(cfg, run_id=run_id, state_dir=tmp / "state").start()
    return stack, tmp


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--analysts", type=int, default=20, help=f"at most {MAX_ANALYSTS}")
    parser.add_argument("--seconds", type=float, default=60, help=f"at most {MAX_SECONDS}")
    parser.add_argument("--think", type=float, default=1.0, help="mean pause between actions (s)")
    parser.add_argument("--url", default=None, help="a running server on loopback (else one is started)")
    parser.add_argument("--user", default="analyst")
    parser.add_argument("--password-env", default="FAXPLAINER_PASSWORD",
                        help="environment variable holding the password (with --url)")
    parser.add_argument("--images-per-folder", type=int, default=25,
                        help="size of the generated run: 8 folders x this many images")
    parser.add_argument("--web-workers", type=int, default=3)
    parser.add_argument("--job-workers", type=int, default=2)
    parser.add_argument("--json", default=None, help="also write the figures to this file")
    parser.add_argument("--keep", action="store_true", help="keep the generated run and the logs")
    args = parse_args(parser, {"analysts": 5, "seconds": 15, "images_per_folder": 10}, argv)
    if not 1 <= args.analysts <= MAX_ANALYSTS or not 1 <= args.seconds <= MAX_SECONDS:
        parser.error(f"--analysts 1..{MAX_ANALYSTS} and --seconds 1..{MAX_SECONDS}")

    stack, tmp = None, None
    if args.url:
        password = os.environ.get(args.password_env)
        if password is None:
            parser.error(f"set ${args.password_env} to the password of --user {args.user}")
        url, auth = args.url.rstrip("/"), (args.user, password)
    else:
        stack, tmp = _own_server(args)
        url, auth = stack.url, ("analyst", "load-test-password")
    try:
        t0 = time.perf_counter()
        rec = run_load(url, auth, args.analysts, args.seconds, args.think)
        wall = time.perf_counter() - t0
    finally:
        if stack is not None:
            stack.stop()
        if tmp is not None and not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    rows = rec.table()
    total_errors = sum(r["errors"] for r in rows)
    print(f"\n{args.analysts} analysts, {args.seconds:.0f} s ({wall:.0f} s with the last jobs), "
          f"{rec.actions} actions, {total_errors} errors, {os.cpu_count()} CPU cores")
    print(f"{'action':<10} {'count':>6} {'errors':>6} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}")
    for r in rows:
        print(f"{r['action']:<10} {r['count']:>6} {r['errors']:>6} {r['p50_ms']:>8.0f} "
              f"{r['p95_ms']:>8.0f} {r['max_ms']:>8.0f}")
    for action, errors in rec.errors.items():
        for e in sorted(set(errors))[:3]:
            print(f"  {action} error: {e}")
    if args.json:
        Path(args.json).write_text(json.dumps({"analysts": args.analysts, "seconds": args.seconds,
                                               "actions": rec.actions, "errors": total_errors,
                                               "rows": rows}, indent=1))
    return 1 if total_errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
