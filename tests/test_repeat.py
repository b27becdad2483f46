"""rq's ``Repeat(times, interval)``: a job runs again after each success, as in rq.

Stored in rq's fields (``repeats_left``, ``repeat_intervals``), so a stock rq 3.0 worker
repeats our jobs as ours do.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import redis
from quart import Quart
from rq.repeat import Repeat as RQRepeat

from aiorq_flask import AsyncRQ, InvalidJobError, Queue, Repeat

from .apps.worker_support import async_wait_until, burst, serving, status, unique_name
from .test_rq_interop import stock_worker

RECORD = "tests.worker_jobs.record"


@pytest.fixture
def queue(quart_rq: AsyncRQ) -> Queue:
    return quart_rq.queue


async def test_a_job_repeated_twice_runs_three_times_then_finishes(
    quart_rq: AsyncRQ, queue: Queue, sync_redis: redis.Redis, redis_url: str
) -> None:
    key = unique_name("runs")
    job = await queue.enqueue(RECORD, redis_url, key, "ran", repeat=Repeat(2))

    await burst(quart_rq.make_worker())

    assert sync_redis.lrange(key, 0, -1) == [b"ran"] * 3
    assert status(sync_redis, job.id) == "finished"
    assert sync_redis.hget(f"rq:job:{job.id}", "repeats_left") == b"0"
    assert [r.type.value for r in await job.results()] == [1, 1, 1]
    assert sync_redis.ttl(f"rq:job:{job.id}") > 0  # kept for its result_ttl after the last run


async def test_a_repeat_with_an_interval_is_scheduled_and_intervals_are_used_in_order(
    quart_rq: AsyncRQ, queue: Queue, sync_redis: redis.Redis, redis_url: str
) -> None:
    key = unique_name("runs")
    job = await queue.enqueue(RECORD, redis_url, key, "ran", repeat=Repeat(2, [1, 0]))
    await burst(quart_rq.make_worker())

    assert status(sync_redis, job.id) == "scheduled"
    assert sync_redis.zscore("rq:scheduled:default", job.id) is not None
    assert sync_redis.hget(f"rq:job:{job.id}", "repeat_intervals") == b"[0]"
    assert sync_redis.ttl(f"rq:job:{job.id}") == -1  # kept until its last run

    async with serving(quart_rq.make_worker(), sync_redis):
        await async_wait_until(
            lambda: sync_redis.llen(key) == 3 and status(sync_redis, job.id) == "finished",
            what="the scheduled repeat and the immediate one after it",
        )


async def test_a_failure_ends_the_repeats(
    quart_rq: AsyncRQ, queue: Queue, sync_redis: redis.Redis
) -> None:
    job = await queue.enqueue("tests.tasks.fail", repeat=Repeat(3))

    await burst(quart_rq.make_worker())

    assert status(sync_redis, job.id) == "failed"
    assert len(await job.results()) == 1


async def test_rqs_repeat_runs_our_job_again_on_a_stock_rq_worker(
    queue: Queue, sync_redis: redis.Redis, redis_url: str
) -> None:
    key = unique_name("runs")
    job = await queue.enqueue(RECORD, redis_url, key, "ran", repeat=RQRepeat(2))

    async with stock_worker(redis_url, "default"):
        pass

    assert sync_redis.lrange(key, 0, -1) == [b"ran"] * 3
    assert status(sync_redis, job.id) == "finished"


async def test_bad_repeats_are_refused_before_anything_is_written(
    queue: Queue, sync_redis: redis.Redis
) -> None:
    with pytest.raises(InvalidJobError, match="times"):
        await queue.enqueue("tests.tasks.add", 1, 2, repeat=Repeat(0))
    with pytest.raises(InvalidJobError, match="interval"):
        await queue.enqueue("tests.tasks.add", 1, 2, repeat=Repeat(1, -5))
    with pytest.raises(InvalidJobError, match="result_ttl=0"):
        await queue.enqueue("tests.tasks.add", 1, 2, repeat=Repeat(1), result_ttl=0)

    assert sync_redis.dbsize() == 0


async def test_an_eager_job_with_a_repeat_runs_once(
    make_quart_app: Callable[..., Quart], sync_redis: redis.Redis, redis_url: str
) -> None:
    app = make_quart_app(RQ_ASYNC=False)
    rq = AsyncRQ(app)
    key = unique_name("runs")
    async with app.app_context():
        job = await rq.queue.enqueue(RECORD, redis_url, key, "ran", repeat=Repeat(2))
        await rq.state().pools.aclose()

    assert sync_redis.lrange(key, 0, -1) == [b"ran"]
    assert status(sync_redis, job.id) == "finished"
    assert sync_redis.llen("rq:queue:default") == 0
