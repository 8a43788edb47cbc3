"""Start and stop the shared server: Redis, the Celery workers and the app under gunicorn.

``python -m app.shared.stack --config configs/shared.yaml`` (what ``make serve-shared`` and
``scripts/serve_shared.sh`` run) starts, each in its own process group:

1. ``redis-server`` bound to 127.0.0.1 on the port of ``server.redis_url``, its data (an
   append-only file, so queued jobs and results survive a crash) in ``<cache>/shared/redis/``.
   A non-loopback ``redis_url`` names an external Redis, which is only checked;
2. the Celery workers: ``views@host`` (``server.job_workers`` processes) for relevance maps,
   concepts and the deletion check; ``grids@host`` (``server.grid_workers`` processes, no torch)
   for cells' grids only, so that opening a cell never waits behind anyone's maps; and
   ``runs@host`` (one process) for whole runs and embedding shards (workers on other machines may
   take those too, see ``app.jobs.celery_app``). The heavy workers run at a lower CPU priority
   (``server.heavy_nice``), so the web processes and the grids are served first. Before they
   start, the unfinished tasks of workers that died with the last server are put back in their
   queues (:func:`app.jobs.celery_app.recover`);
3. gunicorn with ``server.web_workers`` processes (threads for the polling requests) on
   ``server.host:server.port``.

It refuses to start without a users file (:mod:`app.access.auth`). Logs and pid files go to
``<cache>/shared/``. Ctrl-C (or SIGTERM) stops everything, web first; a component that dies stops
the others and the launcher exits with an error, so that a supervisor (systemd) can restart it.
The tests and ``bench/load.py`` use :class:`SharedStack` to run the real thing on free ports.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

import yaml

from pipeline.config import REPO_ROOT, Config, load_config, to_dict
from pipeline.data.roots import root_warnings

from app.access.auth import UserList, users_file
from app.jobs.celery_app import make_celery, recover, redis_url
from app.jobs.celery_app import EMBED_QUEUE, GRIDS_QUEUE, RUNS_QUEUE, VIEWS_QUEUE

LOOPBACK = {"127.0.0.1", "localhost", "::1"}
STOP_GRACE_S = 15


class StackError(RuntimeError):
    """A component of the shared server could not be started."""


@dataclasses.dataclass
class Component:
    name: str
    proc: subprocess.Popen
    log: Path


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(predicate, timeout: float, what: str, component: Component | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if component is not None and component.proc.poll() is not None:
            raise StackError(f"{what}: the process exited with code {component.proc.returncode}; "
                             f"see {component.log}:\n{_tail(component.log)}")
        try:
            if predicate():
                return
        except Exception:  # not up yet
            pass
        time.sleep(0.2)
    raise StackError(f"{what}: not ready after {timeout:.0f} s" +
                     (f"; see {component.log}:\n{_tail(component.log)}" if component else ""))


def _tail(path: Path, n: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "(no log)"


class SharedStack:
    """The processes of a shared server for ``cfg`` (``cfg.server.mode`` must be ``shared``).

    Parameters
    ----------
    cfg : the configuration; it is written to ``<state>/config.yaml`` for the child processes.
    run_id : run the app opens by default.
    state_dir : pid files, logs and Redis data (default ``<cache>/shared``).
    env : extra environment variables for every child process.
    worker_target : the Celery app the workers load (``celery -A``).
    """

    def __init__(self, cfg: Config, run_id: str | None = None, state_dir: str | Path | None = None,
                 env: dict[str, str] | None = None, worker_target: str = "app.shared.worker:celery"):
        if cfg.server.mode != "shared":
            raise StackError(f"server.mode is {cfg.server.mode!r}; the shared server needs "
                             f"server.mode: shared (configs/shared.yaml)")
        self.cfg = cfg
        self.run_id = run_id
        self.state = Path(state_dir) if state_dir else Path(cfg.cache_path) / "shared"
        self.logs = self.state / "logs"
        self.extra_env = dict(env or {})
        self.components: dict[str, Component] = {}
        self.redis_url = redis_url(cfg)
        self.host = socket.gethostname()
        self.worker_target = worker_target

    # -- checks ------------------------------------------------------------------------------------
    def check(self) -> None:
        """Refuse early, with the fix, what would make a component fail later."""
        UserList(users_file(self.cfg))  # raises AuthConfigError with the fix
        for warning in root_warnings(self.cfg):
            print(f"warning: {warning}", file=sys.stderr)
        if self._local_redis() and shutil.which("redis-server") is None:
            raise StackError("redis-server is not installed (Debian/Ubuntu: apt-get install "
                             "redis-server)")
        for module in ("celery", "gunicorn", "flask_httpauth", "redis"):
            try:
                __import__(module)
            except ImportError as e:
                raise StackError(f"python package {module} is missing: pip install -r "
                                 f"requirements.txt") from e
        try:
            self.state.mkdir(parents=True, exist_ok=True)
            self.logs.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise StackError(f"cannot create the state folder {self.state}: {e}") from e
        self.stop_leftovers()

    MARKERS = {"redis": "redis-server", "web": "gunicorn", "worker-": "celery"}

    def stop_leftovers(self) -> list[str]:
        """Stop the processes a previous launcher of this state folder left running (it was
        killed without stopping them): their pid files name them. Returns their names."""
        stopped = []
        for pid_file in self.state.glob("*.pid"):
            name = pid_file.stem
            marker = next((m for prefix, m in self.MARKERS.items() if name.startswith(prefix)), None)
            try:
                pid = int(pid_file.read_text())
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            except (OSError, ValueError):
                cmdline = ""
            if marker and marker in cmdline:  # still ours (not a recycled pid)
                for sig in (signal.SIGTERM, signal.SIGKILL):
                    try:
                        os.killpg(pid, sig)
                    except ProcessLookupError:
                        break
                    deadline = time.monotonic() + STOP_GRACE_S
                    while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
                        time.sleep(0.2)
                stopped.append(name)
            pid_file.unlink(missing_ok=True)
        if stopped:
            print(f"stopped what the last launcher left running: {', '.join(stopped)}", file=sys.stderr)
        return stopped

    def _local_redis(self) -> bool:
        return (urlparse(self.redis_url).hostname or "127.0.0.1") in LOOPBACK

    # -- processes ---------------------------------------------------------------------------------
    def _env(self) -> dict[str, str]:
        config_file = self.state / "config.yaml"
        data = json.loads(json.dumps(to_dict(self.cfg)))  # tuples -> lists for YAML
        config_file.write_text(yaml.safe_dump(data, sort_keys=False))
        os.chmod(config_file, 0o600)
        env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), PYTHONUNBUFFERED="1",
                   FAXPLAINER_CONFIG=str(config_file), FAXPLAINER_REDIS_URL=self.redis_url,
                   FAXPLAINER_USERS_FILE=str(users_file(self.cfg)))
        if self.run_id:
            env["FAXPLAINER_RUN"] = self.run_id
        env.update(self.extra_env)
        return env

    def _spawn(self, name: str, cmd: list[str], stdin_text: str | None = None,
               threads: int | None = None, warm_up: bool = True) -> Component:
        log = self.logs / f"{name}.log"
        env = self._env()
        if threads:
            env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
        if not warm_up:  # app.shared.worker: no torch pre-import in its pool processes
            env["FAXPLAINER_WARM_UP"] = "0"
        with open(log, "ab") as out:
            proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.PIPE if stdin_text is not None else subprocess.DEVNULL,
                                    start_new_session=True)  # own process group: stopped as a whole
        if stdin_text is not None:
            proc.stdin.write(stdin_text.encode())
            proc.stdin.close()
        (self.state / f"{name}.pid").write_text(str(proc.pid))
        component = Component(name, proc, log)
        self.components[name] = component
        return component

    def start_redis(self) -> None:
        import redis

        if not self._local_redis():
            _wait(lambda: redis.Redis.from_url(self.redis_url).ping(), 10, "external Redis")
            return
        url = urlparse(self.redis_url)
        data = self.state / "redis"
        data.mkdir(parents=True, exist_ok=True)
        lines = ["bind 127.0.0.1", f"port {url.port or 6379}", f"dir {data}", "appendonly yes",
                 "appendfsync everysec", 'save ""', "protected-mode yes", "daemonize no",
                 "loglevel notice"]
        if url.password:
            lines.append(f"requirepass {url.password}")  # via stdin: not visible in `ps`
        component = self._spawn("redis", ["redis-server", "-"], stdin_text="\n".join(lines) + "\n")
        _wait(lambda: redis.Redis.from_url(self.redis_url).ping(), 20, "redis-server", component)
        from kombu import pools

        pools.reset()  # kombu keeps connections per URL process-wide: drop any to a former Redis

    WORKERS = {"views": [VIEWS_QUEUE], "grids": [GRIDS_QUEUE], "runs": [RUNS_QUEUE, EMBED_QUEUE]}

    def start_workers(self) -> None:
        """Start the three Celery workers (see :meth:`start_worker`)."""
        for name in self.WORKERS:
            self.start_worker(name, wait=False)
        for name in self.WORKERS:
            self.wait_worker(name)

    def start_worker(self, name: str, wait: bool = True, queues: list[str] | None = None,
                     concurrency: int | None = None) -> None:
        """Requeue what a dead ``name`` worker left unfinished, then start it.

        ``views``: ``server.job_workers`` processes; ``grids``: ``server.grid_workers`` processes
        that never import torch; ``runs`` (runs and embedding shards): one. Other names need
        ``queues`` (e.g. one more embedding worker). Torch threads are shared out between the
        processes (``OMP_NUM_THREADS``). Every worker but ``grids`` runs at the lower CPU priority
        ``server.heavy_nice``: on a busy machine the web processes and the grids get the CPU
        first, so a click is answered while maps are computed (the maps take a little longer).
        """
        queues = queues or self.WORKERS[name]
        n = recover(make_celery(self.redis_url), queues)
        if n:
            print(f"restored {n} unfinished job(s) to {', '.join(queues)}", file=sys.stderr)
        job_workers = max(1, int(self.cfg.server.job_workers))
        default = {"views": job_workers, "grids": max(1, int(self.cfg.server.grid_workers))}
        concurrency = concurrency or default.get(name, 1)
        threads = max(1, (os.cpu_count() or 1) // (job_workers + 1))
        heavy = name != "grids"  # maps, concepts, runs: behind the web and the grids on the CPU
        nice = ["nice", "-n", str(int(self.cfg.server.heavy_nice))] if heavy and \
            self.cfg.server.heavy_nice and shutil.which("nice") else []
        self._spawn(f"worker-{name}", [
            *nice, sys.executable, "-m", "celery", "-A", self.worker_target, "worker",
            "-Q", ",".join(queues), "-c", str(concurrency), "-n", f"{name}@{self.host}",
            "--loglevel", "INFO", "--without-gossip", "--without-mingle", "--without-heartbeat"],
            threads=threads, warm_up=heavy)
        if wait:
            self.wait_worker(name)

    def wait_worker(self, name: str, timeout: float = 120) -> None:
        celery = make_celery(self.redis_url)
        node = f"{name}@{self.host}"
        _wait(lambda: bool(celery.control.ping(destination=[node], timeout=0.5)), timeout,
              f"Celery worker {node}", self.components.get(f"worker-{name}"))

    def start_web(self) -> None:
        s = self.cfg.server
        component = self._spawn("web", [
            sys.executable, "-m", "gunicorn", "app.main:server", "--bind", f"{s.host}:{s.port}",
            "--workers", str(max(1, int(s.web_workers))), "--worker-class", "gthread",
            "--threads", "8", "--timeout", "120", "--graceful-timeout", "10",
            "--access-logfile", str(self.logs / "access.log")])
        url = self.url

        def answers() -> bool:
            try:
                urllib.request.urlopen(url + "/", timeout=2)
            except urllib.error.HTTPError as e:
                return e.code == 401  # up, and refusing strangers
            return False  # answered 200 without credentials: never ready

        _wait(answers, 90, f"gunicorn on {url}", component)

    @property
    def url(self) -> str:
        host = self.cfg.server.host
        host = "127.0.0.1" if host in ("0.0.0.0", "") else host
        return f"http://{host}:{self.cfg.server.port}"

    def start(self) -> "SharedStack":
        self.check()
        try:
            self.start_redis()
            self.start_workers()
            self.start_web()
        except BaseException:
            self.stop()
            raise
        return self

    # -- stopping ------------------------------------------------------------------------------------
    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to component ``name``'s whole process group (a crash, for tests)."""
        component = self.components.pop(name)
        try:
            os.killpg(component.proc.pid, sig)
        except ProcessLookupError:
            pass
        component.proc.wait(timeout=30)

    def stop_component(self, name: str) -> None:
        component = self.components.pop(name, None)
        if component is None:
            return
        proc = component.proc
        try:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=STOP_GRACE_S)
                except subprocess.TimeoutExpired:
                    pass
            os.killpg(proc.pid, signal.SIGKILL)  # whatever the group still holds (pool processes)
        except ProcessLookupError:
            pass
        proc.wait(timeout=30)
        (self.state / f"{name}.pid").unlink(missing_ok=True)

    def stop(self) -> None:
        """Stop everything: web, workers (their unfinished jobs stay queued), then Redis."""
        for name in ["web"] + [n for n in self.components if n.startswith("worker-")] + ["redis"]:
            self.stop_component(name)
        for name in list(self.components):
            self.stop_component(name)

    def dead(self) -> list[str]:
        return [n for n, c in self.components.items() if c.proc.poll() is not None]

    def __enter__(self) -> "SharedStack":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app.shared.stack",
                                     description="FaXplainer shared server (Redis + Celery + gunicorn)")
    parser.add_argument("--config", default=str(REPO_ROOT / "configs" / "shared.yaml"))
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--run", default=None, help="run opened by default")
    args = parser.parse_args(argv)
    cfg = load_config(args.config, args.set)
    stack = SharedStack(cfg, args.run)
    stopping = []

    def on_signal(signum, _frame):
        stopping.append(signum)

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        stack.start()
    except Exception as e:
        print(f"shared server not started: {e}", file=sys.stderr)
        return 2
    print(f"FaXplainer shared server on {stack.url} (logs in {stack.logs}); Ctrl-C stops it",
          file=sys.stderr)
    code = 0
    try:
        while not stopping:
            dead = stack.dead()
            if dead:
                print(f"{', '.join(dead)} stopped unexpectedly (see {stack.logs}); stopping the rest",
                      file=sys.stderr)
                code = 1
                break
            time.sleep(1)
    finally:
        stack.stop()
    print("shared server stopped", file=sys.stderr)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
