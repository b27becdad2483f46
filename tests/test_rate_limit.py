"""rq 3.0's concurrency limits (``rate_limit=RateLimit(key, concurrency)``) in rq's keys.

At most ``concurrency`` jobs with one key are queued or running; the others wait in
``rq:rl:<key>:rate_limited``. The step that ends a job lets the next one through, and our
workers and stock rq 3.0 workers on one Redis honour one limit together.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import redis
from rq import Queue as RQQueue
from rq.rate_limit import RateLimit as RQRateLimit
from rq.rate_limit import RateLimitRegistry

from aiorq_flask import AsyncRQ, InvalidJobError, JobStatus, Queue, RateLimit, Retry
from aiorq_flask.worker import _bookkeeping

from .apps.worker_support import (
    all_have_status,
    async_wait_until,
    burst,
    enqueue_jobs,
    our_worker,
    serving,
    statuses,
    stock_worker,
    unique_name,
)
from .test_worker_interop import rq_fetch

OVERLAP = "tests.worker_jobs.count_overlap"


@pytest.fixture
def queue(quart_rq: AsyncRQ) -> Queue:
    return quart_rq.queue


def _registry(client: redis.Redis, key: str) -> RateLimitRegistry:
    return RateLimitRegistry(key, connection=client)


async def test_jobs_beyond_the_concurrency_wait_rate_limited_in_rqs_keys(
    queue: Queue, sync_redis: redis.Redis
) -> None:
    jobs = [
        await queue.enqueue("tests.tasks.add", i, 1, rate_limit=RateLimit("k", 2)) for i in range(5)
    ]

    registry = _registry(sync_redis, "k")
    assert registry.get_allowed_job_ids() == [job.id for job in jobs[:2]]
    assert registry.get_rate_limited_job_ids() == [job.id for job in jobs[2:]]
    assert registry.concurrency == 2
    assert sync_redis.smembers("rq:rl-keys") == {b"k"}
    assert statuses(sync_redis, [job.id for job in jobs]) == ["queued"] * 2 + ["rate_limited"] * 3
    assert await queue.job_ids() == [job.id for job in jobs[:2]]
    assert [j.id for j in jobs if (await j.get_status()) is JobStatus.RATE_LIMITED] == [
        job.id for job in jobs[2:]
    ]
    assert rq_fetch(sync_redis, jobs[4].id).rate_limit_key == "k"


async def test_a_finished_or_failed_job_lets_the_next_one_through(
    quart_rq: AsyncRQ, queue: Queue, sync_redis: redis.Redis
) -> None:
    limit = RateLimit("one", 1)
    failing = await queue.enqueue("tests.tasks.fail", rate_limit=limit)
    others = [await queue.enqueue("tests.tasks.add", i, 1, rate_limit=limit) for i in range(3)]

    await burst(quart_rq.make_worker(concurrency=5))

    assert statuses(sync_redis, [failing.id]) == ["failed"]
    assert all_have_status(sync_redis, [job.id for job in others], "finished")
    assert sync_redis.zcard("rq:rl:one:allowed") == 0
    assert sync_redis.zcard("rq:rl:one:rate_limited") == 0


async def test_enqueue_many_and_rqs_own_rate_limit_object_are_accepted(
    queue: Queue, sync_redis: redis.Redis
) -> None:
    jobs = await queue.enqueue_many(
        queue.prepare_data("tests.tasks.add", (i, 1), rate_limit=RQRateLimit("m", 1))
        for i in range(3)
    )

    assert [job.get_status_cached for job in []] == []
    assert statuses(sync_redis, [job.id for job in jobs]) == [
        "queued",
        "rate_limited",
        "rate_limited",
    ]
    assert [await job.get_status() for job in jobs] == [
        JobStatus.QUEUED,
        JobStatus.RATE_LIMITED,
        JobStatus.RATE_LIMITED,
    ]


async def test_a_bad_rate_limit_is_refused_before_anything_is_written(
    queue: Queue, sync_redis: redis.Redis
) -> None:
    with pytest.raises(InvalidJobError, match="concurrency"):
        await queue.enqueue("tests.tasks.add", 1, 2, rate_limit=RateLimit("k", 0))
    with pytest.raises(InvalidJobError, match="rate_limit="):
        await queue.enqueue("tests.tasks.add", 1, 2, rate_limit=3)

    assert sync_redis.dbsize() == 0


async def test_a_scheduled_rate_limited_job_waits_for_its_slot_when_due(
    quart_rq: AsyncRQ, queue: Queue, sync_redis: redis.Redis
) -> None:
    limit = RateLimit("later", 1)
    first = await queue.enqueue("tests.tasks.add", 1, 1, rate_limit=limit)
    later = await queue.enqueue_in(0, "tests.tasks.add", 2, 2, rate_limit=limit)

    async with serving(quart_rq.make_worker(), sync_redis):
        await async_wait_until(
            lambda: all_have_status(sync_redis, [first.id, later.id], "finished"),
            what="both jobs to finish",
        )

    assert sync_redis.zcard("rq:rl:later:rate_limited") == 0


async def test_a_slot_a_canceled_job_held_is_freed_by_the_sweep(
    quart_rq: AsyncRQ, queue: Queue, sync_redis: redis.Redis
) -> None:
    limit = RateLimit("c", 1)
    canceled = await queue.enqueue("tests.tasks.add", 1, 1, rate_limit=limit)
    waiting = await queue.enqueue("tests.tasks.add", 2, 2, rate_limit=limit)
    await canceled.cancel()

    async with serving(quart_rq.make_worker(heartbeat=0.2), sync_redis):
        await async_wait_until(
            lambda: all_have_status(sync_redis, [waiting.id], "finished"),
            what="the waiting job to get the freed slot and finish",
        )


def test_our_workers_and_a_stock_rq_worker_honour_one_limit_together(
    tmp_path: Path, redis_url: str, sync_redis: redis.Redis
) -> None:
    """Two of our workers and a stock rq 3.0 worker, 30 jobs of 0.2 s, RateLimit("api",
    3): never more than 3 run at once (sampled, and each job's own count), all finish."""
    key = unique_name("overlap")
    rq_queue = RQQueue(
        "default", connection=sync_redis, serializer="aiorq_flask.serializer.MsgpackSerializer"
    )
    ids = [
        rq_queue.enqueue(OVERLAP, redis_url, key, 0.2, rate_limit=RQRateLimit("api", 3)).id
        for _ in range(15)
    ]
    ids += enqueue_jobs_limited(redis_url, key, 15)
    workers = [our_worker(tmp_path, redis_url, "--concurrency", "10") for _ in range(2)]
    workers.append(stock_worker(tmp_path, redis_url, unique_name("stock"), "default"))
    try:
        peak = 0
        deadline = time.monotonic() + 60
        while not all_have_status(sync_redis, ids, "finished"):
            assert time.monotonic() < deadline, [w.output() for w in workers]
            running = int(sync_redis.get(f"{key}:now") or 0)
            held = sync_redis.zcard("rq:rl:api:allowed")
            assert running <= 3 and held <= 3, (running, held)
            peak = max(peak, running)
            time.sleep(0.01)  # sampling interval
    finally:
        for worker in workers:
            worker.kill()

    assert int(sync_redis.get(f"{key}:peak") or 0) <= 3
    assert peak >= 2  # the limit, not a lone worker, kept it down
    assert sync_redis.zcard("rq:rl:api:allowed") == 0
    assert sync_redis.zcard("rq:rl:api:rate_limited") == 0
    ran_on = {rq_fetch(sync_redis, job_id).worker_name for job_id in ids}
    assert len(ran_on) >= 2


def enqueue_jobs_limited(redis_url: str, key: str, count: int) -> list[str]:
    return enqueue_jobs(
        redis_url, OVERLAP, (redis_url, key, 0.2), count=count, rate_limit=RateLimit("api", 3)
    )


async def test_a_requeued_failed_job_goes_back_in_line_for_a_slot(
    quart_rq: AsyncRQ, queue: Queue, sync_redis: redis.Redis
) -> None:
    limit = RateLimit("again", 1)
    job = await queue.enqueue("tests.tasks.fail", rate_limit=limit)
    await burst(quart_rq.make_worker())
    assert statuses(sync_redis, [job.id]) == ["failed"]

    await queue.failed.requeue(job.id)

    assert statuses(sync_redis, [job.id]) == ["rate_limited"]
    assert sync_redis.zrange("rq:rl:again:rate_limited", 0, -1) == [job.id.encode()]
    async with serving(quart_rq.make_worker(heartbeat=0.2), sync_redis):
        await async_wait_until(
            lambda: sync_redis.xlen(f"rq:results:{job.id}") == 2, what="the requeued job to run"
        )


async def test_a_dead_workers_job_the_sweep_fails_lets_the_next_one_through_at_once(
    quart_rq: AsyncRQ, queue: Queue, sync_redis: redis.Redis
) -> None:
    limit = RateLimit("dead", 1)
    lost = await queue.enqueue("tests.tasks.add", 1, 1, rate_limit=limit, retry=Retry(1))
    waiting = await queue.enqueue("tests.tasks.add", 2, 2, rate_limit=limit)
    # as a killed worker leaves it: claimed, started, its retries used up, its booking expired
    sync_redis.lrem("rq:queue:default", 0, lost.id)
    sync_redis.hset(
        lost.key, mapping={"status": "started", "worker_name": "gone", "retries_left": 0}
    )
    sync_redis.zadd("rq:wip:default", {f"{lost.id}:{'0' * 32}": 1})

    worker = quart_rq.make_worker()
    swept = await _bookkeeping.sweep(worker.multiplexer, worker.queues, worker.failure_ttl)

    assert (swept.requeued, swept.failed) == (0, 1)
    assert statuses(sync_redis, [lost.id, waiting.id]) == ["failed", "queued"]
    assert await queue.job_ids() == [waiting.id]
    assert sync_redis.zrange("rq:rl:dead:allowed", 0, -1) == [waiting.id.encode()]
