"""Who waits for what in a Celery queue of the shared server, kept in Redis beside the queue.

The heavy queue (relevance maps, concepts, the deletion check) is first come, first served. Two
rules make it fair between analysts and say how long a job will wait:

* **One queued job per analyst and view.** When an analyst asks a view for something new while
  their older request of that view is still waiting, the older one is *replaced*: it is marked
  here, and the job, once a worker takes it, answers at once "replaced by your newer request"
  without computing anything (:meth:`QueueBook.replaced_by`, checked by ``app.jobs.panel`` when the
  job starts). A job that has started goes on. This is what the single-user app already does on
  one page (Dash cancels a superseded job), extended to every page of the same user, so that one
  analyst selecting images again and again holds at most one waiting job per view.
* **The wait, in words.** While a job has not started, its progress line says how many jobs are
  ahead of it in the queue (:meth:`QueueBook.waiting_label`), read from the queue itself: kombu's
  Redis transport keeps a queue as a Redis list, new messages pushed on the left and workers
  popping on the right, so the jobs ahead of a message are those to its right (replaced ones,
  which will answer at once, are not counted).

Keys (prefix ``faxplainer:queue:``, each expiring after :data:`TTL_S`): ``latest:<queue>:<user>:
<view>`` the user's newest job of a view; ``replaced:<task id>`` the job that replaced it;
``job:<Dash cache key>`` its task id (Dash asks for progress by cache key, not by task).
"""
from __future__ import annotations

import re

PREFIX = "faxplainer:queue:"
TTL_S = 24 * 3600  # as long as Celery keeps results: a page that still polls after that gets nothing


def jobs_ahead_words(ahead: int) -> str:
    """``"queued: 2 jobs ahead of yours"``; with none ahead, that it is next."""
    if ahead <= 0:
        return "queued: yours is next (every job worker is busy)"
    return f"queued: {ahead} job{'' if ahead == 1 else 's'} ahead of yours"


class QueueBook:
    """The bookkeeping of one Celery queue.

    Parameters
    ----------
    client : a ``redis.Redis`` of the broker (the queue's list lives there).
    queue : the queue's name (the Redis list of its messages).
    """

    def __init__(self, client, queue: str):
        self.r, self.queue = client, queue

    # -- submitting ---------------------------------------------------------------------------------
    def submitted(self, task_id: str, cache_key: str, user: str | None = None,
                  view: str | None = None, replace: bool = False) -> str | None:
        """Record a job about to be queued; with ``replace``, it replaces ``user``'s older job of
        ``view`` (returned, if any; harmless if that one has already started or finished)."""
        self.r.set(PREFIX + f"job:{cache_key}", task_id, ex=TTL_S)
        if not (replace and user and view):
            return None
        older = self.r.set(PREFIX + f"latest:{self.queue}:{user}:{view}", task_id, ex=TTL_S, get=True)
        older = older.decode() if isinstance(older, bytes) else older
        if older and older != task_id:
            self.r.set(PREFIX + f"replaced:{older}", task_id, ex=TTL_S)
            return older
        return None

    def replaced_by(self, task_id: str | None) -> str | None:
        """The job that replaced ``task_id`` while it waited, or None."""
        if not task_id:
            return None
        newer = self.r.get(PREFIX + f"replaced:{task_id}")
        return newer.decode() if isinstance(newer, bytes) else newer

    # -- waiting ------------------------------------------------------------------------------------
    def task_of(self, cache_key: str) -> str | None:
        """The task id of the job Dash knows by ``cache_key``, or None."""
        raw = self.r.get(PREFIX + f"job:{cache_key}")
        return raw.decode() if isinstance(raw, bytes) else raw

    def jobs_ahead(self, task_id: str) -> int | None:
        """How many jobs wait ahead of ``task_id`` (replaced ones not counted), or None when it is
        not waiting in the queue (taken by a worker, finished, or unknown)."""
        tasks = [_task_id(raw) for raw in self.r.lrange(self.queue, 0, -1)]
        # by the message's task id, never a substring of the raw message (its other ids are hex too)
        mine = next((i for i, t in enumerate(tasks) if t == task_id), None)
        if mine is None:
            return None
        ahead = [t for t in tasks[mine + 1:] if t]  # popped first
        if not ahead:
            return 0
        flags = self.r.mget([PREFIX + f"replaced:{t}" for t in ahead])
        return sum(1 for f in flags if not f)

    def waiting_label(self, cache_key: str) -> str | None:
        """Words for the progress line of a job that has not started ("queued: 2 jobs ahead of
        yours"), or None (started, finished, unknown)."""
        task = self.task_of(cache_key)
        ahead = self.jobs_ahead(task) if task else None
        return None if ahead is None else jobs_ahead_words(ahead)


_CORRELATION_ID = re.compile(rb'"correlation_id": *"([^"]+)"')


def _task_id(raw: bytes) -> str | None:
    """The task id of one kombu message of the Redis list: its ``correlation_id`` property (the
    task id in Celery's protocol 2), found without decoding the whole message (the web processes
    do this on every poll of a waiting job)."""
    match = _CORRELATION_ID.search(raw)
    return match.group(1).decode() if match else None
