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
and the p50/p95/max latency of the whole action as the analyst waits for it; and, for the actions
that needed a background job, how that time splits: **waiting** in the queue (from the moment the
analyst asked until the job started, which the job records in its panel's timing store,
``app.jobs.panel``) and **computing** (the job's own duration); the rest is the web requests and
polling. Each simulated analyst logs in as a user of their own (``analyst01``, ...), as a lab team
does; the heavy queue's one-waiting-job-per-analyst rule (``app.jobs.fair_queue``) is per user.

Servers:

* default: a small generated data set, a run with the tiny random encoder (``configs/test.yaml``),
  every job cheap;
* ``--standin demo`` (or ``--standin PATH`` to a data set, e.g. ``/work/shared/data/faces``, or to
  a run folder made before): a run made with the stand-in encoder (DINOv2 ViT-S/14, ``configs/standin.yaml``), so relevance maps and
  concepts cost what they cost with a real encoder. The run is made (or reused) in the usual runs
  folder, then copied without any derived file into the bench's own folders: the view cache is
  cold (no relevance map or concept yet). Each cell's grid is made with the run, as the app does
  for the runs it makes (``app.files.cell_grids``; ``--grids-on-demand``: not, so that each is made
  when first opened);
* ``--url``: an already running server, which must be on loopback.

Without ``--url`` it starts the real shared server (Redis, Celery, gunicorn; needs
``redis-server``) on free 127.0.0.1 ports and stops it at the end. Bounded: at most 50 analysts,
600 seconds and 200,000 actions; it stops by itself (jobs still running at the end are waited for,
up to ``--job-timeout``).

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

from app.files import urls  # noqa: E402
from app.state import ids  # noqa: E402
from app.jobs.panel import JobPanel  # noqa: E402
from bench._options import parse_args  # noqa: E402
from tests.shared.dash_client import DashError, DashSession  # noqa: E402

REQUEST = {name: JobPanel.ids.request(name) for name in (ids.IMAGES_JOB, ids.ATTN_JOB, ids.CONCEPTS_JOB)}
TIMING = {name: f"{name}-job-timing-store" for name in REQUEST}  # app.jobs.panel.JobPanel.ids.timing

MAX_ANALYSTS, MAX_SECONDS, MAX_ACTIONS = 50, 600, 200_000
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
ACTIONS = ("page", "cell", "select", "concepts", "thumbnail")
WEIGHTS = (0.05, 0.3, 0.3, 0.15, 0.2)
ERROR_MARK = "fx-error"


def quantile(values: list[float], p: float) -> float:
    t = sorted(values)
    return t[min(len(t) - 1, int(round(p * (len(t) - 1))))] if t else float("nan")


class Recorder:
    """Latencies, job waits and errors per action, shared by the analyst threads."""

    def __init__(self):
        self.lock = threading.Lock()
        self.times: dict[str, list[float]] = defaultdict(list)
        self.errors: dict[str, list[str]] = defaultdict(list)
        self.waits: dict[str, list[float]] = defaultdict(list)  # asked -> job started
        self.computes: dict[str, list[float]] = defaultdict(list)  # job started -> job done
        self.untimed: dict[str, int] = defaultdict(int)  # actions whose jobs carried no timing
        self.actions = 0

    def add(self, action: str, seconds: float, error: str | None,
            jobs: list[tuple[float, float] | None] = ()) -> None:
        with self.lock:
            self.actions += 1
            if error is None:
                self.times[action].append(seconds)
                if jobs and None in jobs:  # a server whose jobs record no timing (older code)
                    self.untimed[action] += 1
                elif jobs:  # an action's jobs one after the other (e.g. a cell's grid, its concepts)
                    self.waits[action].append(sum(w for w, _ in jobs))
                    self.computes[action].append(sum(c for _, c in jobs))
            else:
                self.errors[action].append(error)

    def table(self) -> list[dict]:
        rows = []
        for action in ACTIONS:
            t = self.times.get(action, [])
            n = len(t) + len(self.errors.get(action, []))
            if not n:
                continue
            w, c = self.waits.get(action, []), self.computes.get(action, [])
            rows.append({"action": action, "count": n, "errors": len(self.errors.get(action, [])),
                         "p50_ms": 1000 * quantile(t, 0.5), "p95_ms": 1000 * quantile(t, 0.95),
                         "max_ms": 1000 * (max(t) if t else float("nan")),
                         "mean_ms": 1000 * (statistics.fmean(t) if t else float("nan")),
                         "jobs": len(w) + self.untimed.get(action, 0),
                         "wait_p50_ms": 1000 * quantile(w, 0.5), "wait_p95_ms": 1000 * quantile(w, 0.95),
                         "compute_p50_ms": 1000 * quantile(c, 0.5),
                         "compute_p95_ms": 1000 * quantile(c, 0.95),
                         "wait_mean_ms": 1000 * (statistics.fmean(w) if w else float("nan")),
                         "compute_mean_ms": 1000 * (statistics.fmean(c) if c else float("nan"))})
        return rows


def _customdata(figure: dict) -> list:
    return [c for trace in (figure or {}).get("data", []) for c in (trace.get("customdata") or [])]


class Analyst:
    """One simulated analyst: a page load and a loop of actions until ``deadline``."""

    def __init__(self, url: str, auth, rec: Recorder, deadline: float, seed: int, think: float,
                 job_timeout: float = 300):
        self.url, self.auth, self.rec, self.deadline = url, auth, rec, deadline
        self.rng = random.Random(seed)
        self.think, self.job_timeout = think, job_timeout
        self.jobs: list[tuple[float, float] | None] = []  # (wait, compute) of this action's jobs
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
        """Start the job, poll it as the page does (0.3 s), and note how long it waited in the
        queue and computed (the job's timing store: when it started, how long it took)."""
        asked = time.time()
        body, handles = self.s.start_background(output, {f"{request_store}.data": request},
                                                [f"{request_store}.data"])
        if handles is None:
            return {}
        result = self.s.poll_background(body, handles, poll=0.3, timeout=self.job_timeout)
        name = next(n for n, r in REQUEST.items() if r == request_store)
        timing = (result.side.get(TIMING[name]) or {}).get("data")
        self.jobs.append((max(0.0, timing["started"] - asked), timing["seconds"]) if timing else None)
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
        self.fetch(urls.thumb(self.run, self.rng.choice(pool)))

    @staticmethod
    def _check(out: dict) -> None:
        text = json.dumps(out)
        if ERROR_MARK in text:
            raise DashError("error shown: " + text[text.index(ERROR_MARK) - 200:][:400])

    # -- loop ------------------------------------------------------------------------------------
    def timed(self, action: str) -> None:
        t0 = time.perf_counter()
        error = None
        self.jobs = []
        try:
            getattr(self, {"cell": "open_cell"}.get(action, action))()
        except Exception as e:  # every failure is counted with its message
            error = f"{type(e).__name__}: {e}"[:300]
            if self.s is not None:
                self.s.close()
        self.rec.add(action, time.perf_counter() - t0, error, self.jobs)

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


def analyst_auth(user: str, password: str, i: int) -> tuple[str, str]:
    """Analyst ``i``'s login: ``user`` with ``{i}`` replaced by ``i + 1`` (two digits)."""
    return user.replace("{i}", f"{i + 1:02d}"), password


def run_load(url: str, auth, analysts: int, seconds: float, think: float, seed: int = 0,
             job_timeout: float = 300) -> Recorder:
    """Run the analysts; ``auth`` is ``(user, password)``, ``{i}`` in the user naming each one's."""
    host = urlparse(url).hostname
    if host not in LOOPBACK:
        raise SystemExit(f"refusing to load {url}: only loopback servers (127.0.0.1) are load-tested")
    analysts, seconds = min(analysts, MAX_ANALYSTS), min(seconds, MAX_SECONDS)
    rec = Recorder()
    deadline = time.monotonic() + seconds
    threads = [threading.Thread(target=Analyst(url, analyst_auth(*auth, i), rec, deadline, seed + i,
                                               think, job_timeout).loop,
                                daemon=True) for i in range(analysts)]
    for i, t in enumerate(threads):
        t.start()
        time.sleep(min(0.1, seconds / 50))  # a short ramp: not all pages in the same millisecond
    for t in threads:  # a job in flight may finish
        t.join(max(1.0, deadline - time.monotonic()) + job_timeout + 30)
    return rec


OWN_USER, OWN_PASSWORD = "analyst{i}", "load-test-password"
DERIVED = ("relevance", "concepts", ".locks", "notes.json", ".notes.json.lock")  # made by the views


def tiny_run(args, tmp: Path) -> tuple[str, str]:
    """A generated data set and its run with the tiny encoder: (run id, config file)."""
    from tests.fixtures_runs import make_dataset, run_pipeline_cli

    data = make_dataset(tmp / "data", n_per_folder=args.images_per_folder)
    t0 = time.perf_counter()
    run_id = run_pipeline_cli(data, tmp / "runs", tmp / "cache")
    print(f"run {run_id}: {8 * args.images_per_folder} images in {time.perf_counter() - t0:.0f} s",
          file=sys.stderr)
    return run_id, "test.yaml"


def standin_run(args, tmp: Path) -> tuple[str, str]:
    """A run with the stand-in encoder on ``--standin`` (``demo`` or a data set), made or reused
    in the usual runs folder (or ``--standin`` names a run folder), then copied into ``tmp/runs`` without its derived files, so that
    every view starts cold: (run id, config file)."""
    from pipeline.config import REPO_ROOT, load_config, with_data
    from pipeline.data.demo.builtin import ensure_demo_config
    from pipeline.runner import run_pipeline
    from pipeline.store.run_store import RunStore

    t0 = time.perf_counter()
    if (Path(args.standin) / "meta.json").is_file():  # a run folder made before
        store = RunStore(args.standin)
    else:
        cfg = load_config(REPO_ROOT / "configs" / "standin.yaml")
        cfg = ensure_demo_config(cfg, log=lambda *_: None) if args.standin == "demo" else \
            with_data(cfg, args.standin, None, None)
        store = run_pipeline(cfg)
    shutil.copytree(store.path, tmp / "runs" / store.run_id, ignore=shutil.ignore_patterns(*DERIVED))
    print(f"run {store.run_id}: {store.read_meta()['data']['n_images']} images, stand-in encoder, "
          f"made or reused in {time.perf_counter() - t0:.0f} s; view cache cold", file=sys.stderr)
    return store.run_id, "standin.yaml"


def grids_with_the_run(args, cfg, run_id: str) -> None:
    """Every cell's grid, made with the run as the app makes them for the runs it makes
    (``app.files.cell_grids``), unless ``--grids-on-demand``: then each is made when first opened."""
    if args.grids_on_demand:
        return
    try:
        from app.files.cell_grids import grids_with_run
    except ImportError:  # a checkout from before: grids are made on demand only
        print("this checkout makes grids on demand only", file=sys.stderr)
        return
    summary = grids_with_run(cfg, run_id)
    print("grids with the run: " + (f"{summary['made']} cells in {summary['seconds']:.0f} s" if summary
                                    else "none (the run is larger than server.grids_with_run_max_images)"),
          file=sys.stderr)


def _own_server(args):
    """A run (tiny or stand-in encoder) and a shared server on free loopback ports, one user per
    analyst; returns (stack, tmp)."""
    from app.shared.stack import SharedStack, free_port
    from pipeline.config import REPO_ROOT, load_config

    tmp = Path(tempfile.mkdtemp(prefix="faxplainer-load-"))
    run_id, config = standin_run(args, tmp) if args.standin else tiny_run(args, tmp)
    from werkzeug.security import generate_password_hash

    # one cheap hash for every analyst's line: 20 first logins at once would otherwise spend the
    # first seconds in scrypt (the login cost has its own test, tests/shared/test_auth.py)
    password = generate_password_hash(OWN_PASSWORD, method="pbkdf2:sha256:1000")
    (tmp / "users").write_text("".join(f"{analyst_auth(OWN_USER, '', i)[0]}:analyst:{password}\n"
                                       for i in range(args.analysts)))
    os.environ["FAXPLAINER_USERS_FILE"] = str(tmp / "users")
    cfg = load_config(REPO_ROOT / "configs" / config, [
        f"runs_dir={tmp / 'runs'}", f"cache_dir={tmp / 'cache'}", "server.mode=shared",
        "server.host=127.0.0.1", f"server.port={free_port()}",
        f"server.redis_url=redis://127.0.0.1:{free_port()}/0",
        f"server.web_workers={args.web_workers}", f"server.job_workers={args.job_workers}",
        *([f"server.heavy_nice={args.heavy_nice}"] if args.heavy_nice is not None else [])])
    grids_with_the_run(args, cfg, run_id)
    stack = SharedStack(cfg, run_id=run_id, state_dir=tmp / "state").start()
    return stack, tmp


def print_table(rows: list[dict]) -> None:
    print(f"{'action':<10} {'count':>6} {'errors':>6} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}"
          f" {'jobs':>5} {'wait p50':>9} {'wait p95':>9} {'comp p50':>9} {'comp p95':>9}")
    for r in rows:
        ms = [r[k] for k in ("wait_p50_ms", "wait_p95_ms", "compute_p50_ms", "compute_p95_ms")]
        split = f" {r['jobs']:>5}" + "".join(f" {'-' if v != v else f'{v:.0f}':>9}" for v in ms) \
            if r["jobs"] else ""  # "-": the server's jobs record no timing
        print(f"{r['action']:<10} {r['count']:>6} {r['errors']:>6} {r['p50_ms']:>8.0f} "
              f"{r['p95_ms']:>8.0f} {r['max_ms']:>8.0f}{split}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--analysts", type=int, default=20, help=f"at most {MAX_ANALYSTS}")
    parser.add_argument("--seconds", type=float, default=60, help=f"at most {MAX_SECONDS}")
    parser.add_argument("--think", type=float, default=1.0, help="mean pause between actions (s)")
    parser.add_argument("--url", default=None, help="a running server on loopback (else one is started)")
    parser.add_argument("--user", default="analyst",
                        help="login with --url; '{i}' in it gives each analyst their own "
                             "(analyst{i} -> analyst01, analyst02, ...; one password for all)")
    parser.add_argument("--password-env", default="FAXPLAINER_PASSWORD",
                        help="environment variable holding the password (with --url)")
    parser.add_argument("--images-per-folder", type=int, default=25,
                        help="size of the generated run: 8 folders x this many images")
    parser.add_argument("--standin", default=None, metavar="demo|PATH",
                        help="serve a run made with the stand-in encoder on the demo set or on "
                             "this data set (or this run folder) instead of the tiny generated run "
                             "(cold view cache)")
    parser.add_argument("--grids-on-demand", action="store_true",
                        help="do not make the grids with the run: every cell's grid is made when "
                             "it is first opened (the view cache is then completely cold)")
    parser.add_argument("--heavy-nice", type=int, default=None,
                        help="server.heavy_nice of the bench's own server (default: the config's)")
    parser.add_argument("--job-timeout", type=float, default=300,
                        help="seconds an analyst waits for one job before counting an error")
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
        url, auth = stack.url, (OWN_USER, OWN_PASSWORD)
    load_before = os.getloadavg()
    try:
        t0 = time.perf_counter()
        rec = run_load(url, auth, args.analysts, args.seconds, args.think,
                       job_timeout=min(args.job_timeout, 900))
        wall = time.perf_counter() - t0
    finally:
        if stack is not None:
            stack.stop()
        if tmp is not None and not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    rows = rec.table()
    total_errors = sum(r["errors"] for r in rows)
    load_after = os.getloadavg()
    print(f"\n{args.analysts} analysts, {args.seconds:.0f} s ({wall:.0f} s with the last jobs), "
          f"{rec.actions} actions, {total_errors} errors, {os.cpu_count()} CPU cores, load average "
          f"{load_before[0]:.1f} before / {load_after[0]:.1f} after (1 min), {load_after[2]:.1f} (15 min)")
    print("latency of the whole action as the analyst waits; 'jobs': how many of the actions ran "
          "a background job, and for those the time their jobs waited in the queue and computed (ms)")
    print_table(rows)
    for action, errors in rec.errors.items():
        for e in sorted(set(errors))[:3]:
            print(f"  {action} error: {e}")
    if args.json:
        Path(args.json).write_text(json.dumps({"analysts": args.analysts, "seconds": args.seconds,
                                               "standin": args.standin, "actions": rec.actions,
                                               "errors": total_errors, "wall_s": wall,
                                               "load_before": load_before, "load_after": load_after,
                                               "rows": rows,
                                               "error_samples": {a: sorted(set(e))[:5] for a, e in
                                                                 rec.errors.items()}}, indent=1))
    return 1 if total_errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
