"""The Celery application of the shared server: broker and results in Redis, its queues, the
embedding shards as tasks, and recovery after a crash.

Dash turns each background callback into a Celery task when the app is built with a
``CeleryManager`` (:mod:`app.jobs.managers`), so a worker builds the same app to know the tasks; that is
:mod:`app.shared.worker`'s job (``celery -A app.shared.worker:celery worker -Q faxplainer-views``). This module
imports nothing of the app, so the web process, the workers and the CLI below all depend on it
without a cycle.

Several machines: workers on other machines that reach the same Redis and mount the runs and cache
folders at the same paths can take jobs too; ``python -m app.jobs.celery_app embed --data PATH --shards
N`` splits the embedding of a data set into N tasks on the ``faxplainer-embed`` queue
(:func:`pipeline.model.shards.embed_shard`), so that every machine's worker embeds part of it into the
shared cache before the run.

Faults: tasks are acknowledged after they finish (``acks_late``) and requeued when their process
dies (``reject_on_worker_lost``), so a pool process killed mid-job is replaced and the job runs
again; what it had finished (embedding chunks, cached maps) is on disk and is not recomputed. When
the whole worker dies, its unfinished tasks stay "unacknowledged" in Redis; :func:`recover` (run by
the launcher before the workers start) puts them back in their queues, and otherwise Redis hands
them out again after :data:`VISIBILITY_TIMEOUT_S`.
"""
from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import sys
import time

from pipeline.config import REPO_ROOT, Config, load_config, to_dict, with_data

log = logging.getLogger("faxplainer.celery")

VIEWS_QUEUE = "faxplainer-views"  # relevance maps, concepts, the deletion check (heavy)
GRIDS_QUEUE = "faxplainer-grids"  # a cell's grid: thumbnails, arrangement, sprite (cheap)
RUNS_QUEUE = "faxplainer-runs"  # whole pipeline runs (one worker process)
EMBED_QUEUE = "faxplainer-embed"  # shards of a data set's embedding (``embed`` below)

VISIBILITY_TIMEOUT_S = 3600  # unacknowledged tasks of a vanished worker return to the queue after this
RESULT_EXPIRE_S = 24 * 3600


def redis_url(cfg: Config) -> str:
    """``$FAXPLAINER_REDIS_URL`` if set (it may carry a password), else ``cfg.server.redis_url``."""
    return os.environ.get("FAXPLAINER_REDIS_URL") or cfg.server.redis_url


def make_celery(url: str):
    """A Celery app using the Redis at ``url`` as broker and result store."""
    from celery import Celery

    celery = Celery("faxplainer", broker=url, backend=url)
    celery.conf.update(
        task_acks_late=True,  # a task leaves the queue only when it has finished...
        task_reject_on_worker_lost=True,  # ...and goes back to it when its process dies
        task_track_started=True,
        worker_prefetch_multiplier=1,  # a busy process does not hoard queued jobs
        broker_transport_options={"visibility_timeout": VISIBILITY_TIMEOUT_S},
        result_expires=RESULT_EXPIRE_S,
        broker_connection_retry_on_startup=True,
        worker_send_task_events=False,
        task_default_queue=VIEWS_QUEUE,
    )
    return celery


@functools.lru_cache(maxsize=None)
def _celery_for_url(url: str):
    return make_celery(url)


def celery_for(cfg: Config):
    """The process's Celery app for ``cfg``'s Redis (one per URL, shared by both Dash managers)."""
    return _celery_for_url(redis_url(cfg))


def config_from_environment() -> Config:
    """The config named by ``$FAXPLAINER_CONFIG`` (default ``configs/shared.yaml``)."""
    path = os.environ.get("FAXPLAINER_CONFIG", str(REPO_ROOT / "configs" / "shared.yaml"))
    return load_config(path)


EMBED_TASK = "faxplainer.embed_shard"
PROGRESS_EVERY_S = 0.5


def register_tasks(celery) -> None:
    """The app's own Celery tasks (besides Dash's jobs): one shard of a data set's embedding."""
    if EMBED_TASK in celery.tasks:
        return

    @celery.task(name=EMBED_TASK, bind=True)
    def embed_shard_task(self, cfg_dict: dict, index: int, count: int) -> dict:
        from pipeline.config import from_dict
        from pipeline.model.shards import embed_shard

        last = [0.0]

        def progress(done: int, total: int) -> None:
            now = time.monotonic()
            if now - last[0] >= PROGRESS_EVERY_S or done == total:
                last[0] = now
                self.update_state(state="PROGRESS", meta={"done": done, "total": total})

        summary = embed_shard(from_dict(cfg_dict), index, count, progress)
        return {**summary, "worker": self.request.hostname}


def embed_in_shards(celery, cfg: Config, count: int, timeout: float = 24 * 3600,
                    report=None) -> list[dict]:
    """Send the ``count`` shards of ``cfg.data``'s embedding to the workers and wait for them.

    ``report(states)`` is called every second with ``[(state, meta), ...]`` per shard.
    Returns the shards' summaries (see :func:`pipeline.model.shards.embed_shard`) plus ``worker``.

    Raises
    ------
    RuntimeError
        A shard failed (its error is in the message); the others' embeddings are kept.
    """
    payload = json.loads(json.dumps(to_dict(cfg)))
    results = [celery.send_task(EMBED_TASK, args=[payload, i, count], queue=EMBED_QUEUE)
               for i in range(count)]
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            states = [(r.state, r.info) for r in results]
            if report is not None:
                report(states)
            failed = [(i, info) for i, (state, info) in enumerate(states) if state == "FAILURE"]
            if failed:
                raise RuntimeError(f"shard {failed[0][0]} failed: {failed[0][1]!r}")
            if all(state == "SUCCESS" for state, _ in states):
                return [info for _, info in states]
            time.sleep(1)
        raise TimeoutError(f"the shards did not finish within {timeout:.0f} s")
    finally:
        for r in results:  # stop listening for them now, not at garbage collection, when the
            r.backend.remove_pending_result(r)  # Redis they listen on may be gone
            r.backend = None


# -- recovery after a crash -------------------------------------------------------------------------
def unacked_tasks(celery) -> list[dict]:
    """Tasks delivered to a worker and not finished: ``{"tag", "task", "id", "queue"}`` each."""
    with celery.connection_for_write() as conn:
        channel = conn.default_channel
        out = []
        for tag, raw in channel.client.hgetall(channel.unacked_key).items():
            message, _exchange, routing_key = json.loads(raw)
            headers = message.get("headers") or {}
            out.append({"tag": tag.decode() if isinstance(tag, bytes) else tag,
                        "task": headers.get("task"), "id": headers.get("id"), "queue": routing_key})
        return out


def live_consumers(celery, timeout: float = 1.0) -> dict[str, list[str]]:
    """Workers answering now and the queues they consume: ``{worker name: [queue, ...]}``."""
    replies = celery.control.inspect(timeout=timeout).active_queues() or {}
    return {name: [q["name"] for q in queues] for name, queues in replies.items()}


def recover(celery, queues: list[str]) -> int:
    """Put the unfinished tasks of ``queues`` back at the head of their queues; returns how many.

    Only safe when no live worker is running them: it refuses (returns 0 and logs why) when a
    worker that consumes one of ``queues`` answers. Those tasks then return to the queue after
    :data:`VISIBILITY_TIMEOUT_S`. A task restored while it was in fact still running would only
    wait for its lock and reuse the result (:mod:`app.jobs.work`).
    """
    busy = {w: q for w, q in live_consumers(celery).items() if set(q) & set(queues)}
    if busy:
        log.info("not restoring unfinished tasks: live workers consume %s", busy)
        return 0
    restored = 0
    with celery.connection_for_write() as conn:
        channel = conn.default_channel
        for task in unacked_tasks(celery):
            if task["queue"] in queues:
                channel.qos.restore_by_tag(task["tag"], channel.client, leftmost=True)
                log.info("restored unfinished task %s (%s) to %s", task["id"], task["task"],
                         task["queue"])
                restored += 1
    return restored


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app.jobs.celery_app")
    sub = parser.add_subparsers(dest="command", required=True)
    rec = sub.add_parser("recover", help="requeue the tasks of workers that died (no worker running)")
    rec.add_argument("--config", default=None)
    rec.add_argument("--queue", action="append", required=True)
    emb = sub.add_parser("embed", help="embed a data set in shards on the workers of every machine")
    emb.add_argument("--config", default=None)
    emb.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    emb.add_argument("--data", default=None, help="data folder or CSV manifest (default: the config's)")
    emb.add_argument("--shards", type=int, default=8, help="how many tasks (more than the workers)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.command == "recover":
        cfg = load_config(args.config) if args.config else config_from_environment()
        n = recover(make_celery(redis_url(cfg)), args.queue)
        print(f"restored {n} unfinished task(s)", file=sys.stderr)
        return 0
    cfg = load_config(args.config or os.environ.get("FAXPLAINER_CONFIG"), args.set)
    if args.data:
        cfg = with_data(cfg, args.data, cfg.data.categories, cfg.data.generators)

    def report(states):
        done = sum((info or {}).get("done", 0) for s, info in states if s == "PROGRESS") + \
            sum((info or {}).get("images", 0) for s, info in states if s == "SUCCESS")
        finished = sum(s == "SUCCESS" for s, _ in states)
        print(f"\r{finished}/{len(states)} shards done, about {done} images", end="", file=sys.stderr)

    try:
        summaries = embed_in_shards(make_celery(redis_url(cfg)), cfg, args.shards, report=report)
    except (RuntimeError, TimeoutError) as e:
        print(f"\nerror: {e}", file=sys.stderr)
        return 1
    print(file=sys.stderr)
    for s in summaries:
        print(f"shard {s['shard']}: {s['images']} images ({s['computed']} embedded, {s['cached']} "
              f"cached, {s['failed']} unreadable) by {s['worker']} in {s['seconds']} s")
    print("the embeddings are in the shared cache; a run on this data now starts at the projection")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
