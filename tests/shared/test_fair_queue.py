"""app.jobs.fair_queue on a real redis-server with real Celery messages (no worker takes them): the
place of a job in its queue, and a user's newer job of a view replacing their older one."""
from __future__ import annotations

import subprocess
import time

import pytest

from app.jobs.celery_app import make_celery
from app.jobs.fair_queue import QueueBook, jobs_ahead_words
from app.shared.stack import free_port

from .conftest import needs_redis

QUEUE = "faxplainer-test-queue"


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory):
    needs_redis()
    port = free_port()
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", str(tmp_path_factory.mktemp("redis"))],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    import redis

    url = f"redis://127.0.0.1:{port}/0"
    deadline = time.monotonic() + 20
    while True:
        try:
            redis.Redis.from_url(url).ping()
            break
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                proc.kill()
                raise
            time.sleep(0.1)
    yield url
    proc.terminate()
    proc.wait(10)


@pytest.fixture
def book(redis_url):
    import redis

    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    return QueueBook(client, QUEUE)


def queue_tasks(redis_url, book, specs):
    """Send one real Celery message per (task id, user, view) to the queue, in order, recording
    each as the app's manager does; returns what each ``submitted`` replaced."""
    celery = make_celery(redis_url)
    replaced = []
    for task_id, user, view in specs:
        replaced.append(book.submitted(task_id, f"key-{task_id}", user=user, view=view, replace=True))
        celery.send_task("faxplainer.test", args=[task_id], queue=QUEUE, task_id=task_id)
    return replaced


def test_the_place_in_the_queue_counts_the_jobs_ahead(redis_url, book):
    queue_tasks(redis_url, book, [("t1", "bob", "maps"), ("t2", "carol", "maps"), ("t3", "dave", "maps")])
    assert [book.jobs_ahead(t) for t in ("t1", "t2", "t3")] == [0, 1, 2]
    assert book.jobs_ahead("not-queued") is None
    assert book.waiting_label("key-t3") == "queued: 2 jobs ahead of yours"
    assert book.waiting_label("key-t2") == "queued: 1 job ahead of yours"
    assert book.waiting_label("key-t1") == "queued: yours is next (every job worker is busy)"
    assert book.waiting_label("key-unknown") is None
    book.r.rpop(QUEUE)  # a worker takes the oldest: it is no longer waiting
    assert (book.jobs_ahead("t1"), book.jobs_ahead("t3"), book.waiting_label("key-t1")) == (None, 1, None)


def test_a_users_newer_job_of_a_view_replaces_the_older_one(redis_url, book):
    replaced = queue_tasks(redis_url, book, [
        ("a1", "alice", "maps"), ("b1", "bob", "maps"), ("a2", "alice", "concepts"),  # another view
        ("a3", "alice", "maps"), ("c1", "carol", "maps")])
    assert replaced == [None, None, None, "a1", None]
    assert book.replaced_by("a1") == "a3"
    assert [book.replaced_by(t) for t in ("b1", "a2", "a3", "c1", None)] == [None] * 5
    # the replaced job is still in the list (its worker answers it at once) but waits for no one
    assert [book.jobs_ahead(t) for t in ("b1", "a2", "a3", "c1")] == [0, 1, 2, 3]
    # a newer job again replaces a3, even though a3 may have started meanwhile (harmless:
    # only a job that has not started yet checks whether it was replaced)
    assert queue_tasks(redis_url, book, [("a4", "alice", "maps")]) == ["a3"]


def test_without_the_rule_nothing_is_replaced(book):
    assert book.submitted("x1", "k1", user="alice", view="maps") is None
    assert book.submitted("x2", "k2", user="alice", view="maps") is None
    assert book.replaced_by("x1") is None
    assert book.submitted("y1", "k3", user=None, view="maps", replace=True) is None  # no user


def test_words():
    assert [jobs_ahead_words(n) for n in (0, 1, 2)] == [
        "queued: yours is next (every job worker is busy)", "queued: 1 job ahead of yours",
        "queued: 2 jobs ahead of yours"]
