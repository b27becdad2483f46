"""SIGTERM stops a worker cleanly: running jobs finish within the grace period, or are
cancelled and put back at the front of their queue once it is over.

Either way the worker process exits 0 and leaves nothing behind: it is out of
``rq:workers`` with ``death`` in its hash, ``rq:wip:<q>`` is empty and no job is left
``started``. Jobs it never claimed stay queued, in their order.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import redis

from ..apps.worker_support import (
    all_have_status,
    enqueue_calls,
    enqueue_jobs,
    latest_result,
    our_worker,
    statuses,
    unique_name,
)
from .support import assert_deregistered, trace_counts, wait_while_alive

RUNNING = 3  # the worker's concurrency: the first RUNNING jobs run, the rest wait
WAITING = 2


def test_sigterm_lets_running_jobs_finish_within_the_grace_period_and_deregisters(
    tmp_path: Path, redis_url: str, sync_redis: redis.Redis
) -> None:
    running = enqueue_calls(
        redis_url,
        "tests.worker_jobs.async_record",
        [(redis_url, "trace", str(i), 1.0) for i in range(RUNNING)],
    )
    waiting = enqueue_jobs(redis_url, "tests.tasks.add", (1, 2), count=WAITING)
    name = unique_name("sigterm")
    options = ("--name", name, "--concurrency", str(RUNNING), "--prefetch", "0")

    with our_worker(tmp_path, redis_url, *options, "--grace-period", "20") as worker:
        wait_while_alive(
            worker, lambda: all_have_status(sync_redis, running, "started"), 15, "jobs to start"
        )
        worker.signal(signal.SIGTERM)
        assert worker.wait(20) == 0, worker.output()

    assert statuses(sync_redis, running) == ["finished"] * RUNNING
    assert trace_counts(sync_redis, "trace") == {str(i): 1 for i in range(RUNNING)}
    assert statuses(sync_redis, waiting) == ["queued"] * WAITING
    assert sync_redis.lrange("rq:queue:default", 0, -1) == [i.encode() for i in waiting]
    assert_deregistered(sync_redis, name, ("default",))


def test_sigterm_requeues_jobs_still_running_when_the_grace_period_is_over(
    tmp_path: Path, redis_url: str, sync_redis: redis.Redis
) -> None:
    running = enqueue_jobs(redis_url, "tests.tasks.async_sleep", (30,), count=RUNNING)
    waiting = enqueue_jobs(redis_url, "tests.tasks.add", (1, 2), count=WAITING)
    name = unique_name("sigterm")
    options = ("--name", name, "--concurrency", str(RUNNING), "--prefetch", "0")

    with our_worker(tmp_path, redis_url, *options, "--grace-period", "1") as worker:
        wait_while_alive(
            worker, lambda: all_have_status(sync_redis, running, "started"), 15, "jobs to start"
        )
        signalled = time.monotonic()
        worker.signal(signal.SIGTERM)
        assert worker.wait(20) == 0, worker.output()
        stopped_after = time.monotonic() - signalled

    assert 1 <= stopped_after < 10, stopped_after
    assert statuses(sync_redis, running + waiting) == ["queued"] * (RUNNING + WAITING)
    queue = [i.decode() for i in sync_redis.lrange("rq:queue:default", 0, -1)]
    assert sorted(queue[:RUNNING]) == sorted(running)  # put back at the front
    assert queue[RUNNING:] == waiting
    assert [latest_result(sync_redis, i) for i in running] == [None] * RUNNING
    assert_deregistered(sync_redis, name, ("default",))
