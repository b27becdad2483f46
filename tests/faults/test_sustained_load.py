"""Sustained load: a worker's memory stays flat over 30,000 jobs.

One worker process drains quick jobs enqueued in batches while it runs. Its resident
memory once 10,000 jobs are done and once 30,000 are done differs by less than 5 MiB: what
it keeps per job (outcomes, executions, tasks, logs) is let go.
"""

from __future__ import annotations

import time
from pathlib import Path

import redis

from ..apps.worker_support import enqueue_calls, our_worker
from .conftest import Figures
from .support import rss_bytes, wait_while_alive, worker_name

FIRST = 10_000
TOTAL = 30_000
BATCH = 5_000
MIB = 1024 * 1024


def enqueue_batches(redis_url: str, start: int, stop: int) -> None:
    for first in range(start, stop, BATCH):
        calls = [(i, 1) for i in range(first, min(first + BATCH, stop))]
        enqueue_calls(redis_url, "tests.tasks.async_add", calls)


def test_worker_rss_grows_less_than_5_mib_from_10k_to_30k_jobs(
    tmp_path: Path, redis_url: str, sync_redis: redis.Redis, figures: Figures
) -> None:
    def finished() -> int:
        return int(sync_redis.zcard("rq:finished:default"))

    with our_worker(tmp_path, redis_url) as worker:
        worker_name(sync_redis, worker)
        started = time.monotonic()
        enqueue_batches(redis_url, 0, FIRST)
        wait_while_alive(worker, lambda: finished() >= FIRST, 30, f"{FIRST} finished jobs")
        after_first = rss_bytes(worker.pid)
        enqueue_batches(redis_url, FIRST, TOTAL)
        wait_while_alive(worker, lambda: finished() >= TOTAL, 40, f"{TOTAL} finished jobs")
        after_total = rss_bytes(worker.pid)
        elapsed = time.monotonic() - started

    figures.record(f"worker RSS after {FIRST} jobs (MiB)", round(after_first / MIB, 1))
    figures.record(f"worker RSS after {TOTAL} jobs (MiB)", round(after_total / MIB, 1))
    figures.record(f"time to enqueue and run {TOTAL} jobs (s)", round(elapsed, 1))
    assert abs(after_total - after_first) < 5 * MIB, (after_first, after_total)
