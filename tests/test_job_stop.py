"""``await job.stop()``: rq's ``stop-job`` command to the worker running the job; it says
whether a worker took the command."""

from __future__ import annotations

import redis

from aiorq_flask import AsyncRQ

from . import tasks
from .apps.worker_support import async_wait_until, latest_result, serving, status


def subscribed(client: redis.Redis, worker_name: str) -> bool:
    """Whether the worker listens for rq's commands yet (it subscribes as it starts)."""
    channel = f"rq:pubsub:{worker_name}"
    return bool(dict(client.pubsub_numsub(channel)).get(channel.encode()))


async def test_stop_ends_a_running_job_stopped_and_says_a_worker_took_it(
    quart_rq: AsyncRQ, sync_redis: redis.Redis
) -> None:
    job = await quart_rq.queue.enqueue(tasks.async_sleep, 60)
    worker = quart_rq.make_worker(grace_period=1)

    async with serving(worker, sync_redis):
        await async_wait_until(lambda: status(sync_redis, job.id) == "started")
        await async_wait_until(lambda: subscribed(sync_redis, worker.name), what="subscription")
        taken = await job.stop()
        await async_wait_until(lambda: status(sync_redis, job.id) == "stopped")

    assert taken is True
    assert "Job stopped by user" in (latest_result(sync_redis, job.id).exc_string or "")  # type: ignore[union-attr]


async def test_stop_of_a_queued_job_is_taken_by_no_worker(
    quart_rq: AsyncRQ, sync_redis: redis.Redis
) -> None:
    job = await quart_rq.queue.enqueue(tasks.add, 1, 2)

    assert await job.stop() is False
    assert status(sync_redis, job.id) == "queued"


async def test_stop_of_a_job_whose_worker_is_gone_is_taken_by_no_worker(
    quart_rq: AsyncRQ, sync_redis: redis.Redis
) -> None:
    job = await quart_rq.queue.enqueue(tasks.add, 1, 2)
    sync_redis.hset(f"rq:job:{job.id}", mapping={"status": "started", "worker_name": "gone"})

    assert await job.stop() is False
