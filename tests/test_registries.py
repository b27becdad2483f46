"""A queue's registries (``queue.failed``, ``queue.started``, ...), against a real
redis-server, and read back by stock rq 3.0's own registry classes.

Jobs reach the registries through our worker, run in burst mode in the test's loop, or
through the scripts that enqueue, schedule and cancel them.
"""

from __future__ import annotations

import asyncio
import time

import pytest
import redis
from rq import registry as rq_registry

from aiorq_flask import (
    AsyncRQ,
    CanceledJobRegistry,
    InvalidJobOperation,
    JobStatus,
    NoSuchJobError,
    Queue,
    StartedJobRegistry,
)
from aiorq_flask.registries import REGISTRIES
from aiorq_flask.serializer import MsgpackSerializer

from . import tasks
from .apps.worker_support import async_wait_until, burst, serving, status


@pytest.fixture
def queue(quart_rq: AsyncRQ) -> Queue:
    return quart_rq.queue


def stock(
    registry: type[rq_registry.BaseRegistry], client: redis.Redis
) -> rq_registry.BaseRegistry:
    """Stock rq's reader of the same registry of the default queue."""
    return registry("default", connection=client, serializer=MsgpackSerializer)


async def run_worker(quart_rq: AsyncRQ) -> None:
    await burst(quart_rq.make_worker())


async def failed_job_ids(quart_rq: AsyncRQ, count: int) -> list[str]:
    """Ids of ``count`` jobs that failed on our worker, in the order they were enqueued."""
    jobs = [await quart_rq.queue.enqueue(tasks.fail, f"boom {i}") for i in range(count)]
    await run_worker(quart_rq)
    return [job.id for job in jobs]


# -- what each registry holds ------------------------------------------------------------------


async def test_registries_are_named_from_their_queue(quart_rq: AsyncRQ) -> None:
    low = quart_rq.get_queue("low")

    assert [low.started.key, low.finished.key, low.failed.key] == [
        "rq:wip:low",
        "rq:finished:low",
        "rq:failed:low",
    ]
    assert [low.deferred.key, low.scheduled.key, low.canceled.key] == [
        "rq:deferred:low",
        "rq:scheduled:low",
        "rq:canceled:low",
    ]


async def test_failed_holds_the_jobs_that_failed(quart_rq: AsyncRQ, queue: Queue) -> None:
    ok = await queue.enqueue(tasks.add, 1, 2)
    failed = await failed_job_ids(quart_rq, 2)

    assert sorted(await queue.failed.job_ids()) == sorted(failed)
    assert await queue.failed.count() == 2
    assert ok.id not in await queue.failed.job_ids()


async def test_failed_agrees_with_rqs_failed_job_registry(
    quart_rq: AsyncRQ, queue: Queue, sync_redis: redis.Redis
) -> None:
    await failed_job_ids(quart_rq, 3)
    theirs = stock(rq_registry.FailedJobRegistry, sync_redis)

    assert await queue.failed.job_ids() == theirs.get_job_ids()
    assert await queue.failed.count() == theirs.count == 3


async def test_finished_holds_the_jobs_that_succeeded_as_rq_sees_them(
    quart_rq: AsyncRQ, queue: Queue, sync_redis: redis.Redis
) -> None:
    jobs = [await queue.enqueue(tasks.add, i, i) for i in range(3)]
    await queue.enqueue(tasks.fail)
    await run_worker(quart_rq)
    theirs = stock(rq_registry.FinishedJobRegistry, sync_redis)

    assert sorted(await queue.finished.job_ids()) == sorted(job.id for job in jobs)
    assert await queue.finished.job_ids() == theirs.get_job_ids()


@pytest.mark.parametrize("name", ["finished", "failed"])
async def test_entries_past_their_expiry_are_gone_as_rq_drops_them(
    queue: Queue, sync_redis: redis.Redis, name: str
) -> None:
    now = int(time.time())
    key = f"rq:{name}:default"
    sync_redis.zadd(key, {"expired": now - 10, "due-now": now, "alive": now + 60})

    assert await getattr(queue, name).count() == 1
    assert await getattr(queue, name).job_ids() == ["alive"]
    assert sync_redis.zrange(key, 0, -1) == [b"alive"]


async def test_deferred_holds_jobs_waiting_on_a_parent(
    queue: Queue, sync_redis: redis.Redis
) -> None:
    parent = await queue.enqueue(tasks.add, 1, 2)
    child = await queue.enqueue(tasks.add, 3, 4, depends_on=parent)
    theirs = stock(rq_registry.DeferredJobRegistry, sync_redis)

    assert await queue.deferred.job_ids() == [child.id] == theirs.get_job_ids()
    assert await queue.deferred.count() == 1


async def test_scheduled_holds_jobs_enqueued_for_later(
    queue: Queue, sync_redis: redis.Redis
) -> None:
    later = await queue.enqueue_in(3600, tasks.add, 1, 2)
    sooner = await queue.enqueue_in(60, tasks.add, 1, 2)
    theirs = stock(rq_registry.ScheduledJobRegistry, sync_redis)

    assert await queue.scheduled.job_ids() == [sooner.id, later.id] == theirs.get_job_ids()


async def test_canceled_holds_canceled_jobs(queue: Queue, sync_redis: redis.Redis) -> None:
    job = await queue.enqueue(tasks.add, 1, 2)
    await job.cancel()
    theirs = stock(rq_registry.CanceledJobRegistry, sync_redis)

    assert await queue.canceled.job_ids() == [job.id] == theirs.get_job_ids()


async def test_started_holds_running_jobs_by_job_id(
    quart_rq: AsyncRQ, queue: Queue, sync_redis: redis.Redis
) -> None:
    job = await queue.enqueue(tasks.async_sleep, 30)
    theirs = stock(rq_registry.StartedJobRegistry, sync_redis)

    async with serving(quart_rq.make_worker(grace_period=0), sync_redis):
        await async_wait_until(lambda: status(sync_redis, job.id) == "started", what="the job")

        assert await queue.started.job_ids() == [job.id] == theirs.get_job_ids()
        assert await queue.started.count() == 1


async def test_started_reads_the_job_id_before_the_last_colon(
    queue: Queue, sync_redis: redis.Redis
) -> None:
    sync_redis.zadd("rq:wip:default", {"job-a:exec1": 10**10, "job-b:exec2": 10**10 + 1})

    assert await queue.started.job_ids() == ["job-a", "job-b"]


async def test_job_ids_takes_a_page_of_offset_and_length(
    quart_rq: AsyncRQ, queue: Queue, sync_redis: redis.Redis
) -> None:
    sync_redis.zadd("rq:canceled:default", {f"job-{i}": i for i in range(5)})

    assert await queue.canceled.job_ids(1, 2) == ["job-1", "job-2"]
    assert await queue.canceled.job_ids(3) == ["job-3", "job-4"]


# -- remove -----------------------------------------------------------------------------------


async def test_remove_takes_a_job_out_of_that_registry_only(
    quart_rq: AsyncRQ, queue: Queue, sync_redis: redis.Redis
) -> None:
    [job_id] = await failed_job_ids(quart_rq, 1)

    assert await queue.failed.remove(job_id) is True

    assert await queue.failed.job_ids() == []
    assert sync_redis.hget(f"rq:job:{job_id}", "status") == b"failed"
    assert await queue.failed.remove(job_id) is False


async def test_started_remove_takes_out_every_execution_of_the_job(
    queue: Queue, sync_redis: redis.Redis
) -> None:
    sync_redis.zadd("rq:wip:default", {"job-a:exec1": 10**10, "job-a:exec2": 10**10, "b:e": 1})

    assert await queue.started.remove("job-a") is True

    assert sync_redis.zrange("rq:wip:default", 0, -1) == [b"b:e"]
    assert await queue.started.remove("job-a") is False


# -- requeue ----------------------------------------------------------------------------------


async def test_requeue_puts_a_failed_job_back_at_the_back_of_its_queue(
    quart_rq: AsyncRQ, queue: Queue, sync_redis: redis.Redis
) -> None:
    [job_id] = await failed_job_ids(quart_rq, 1)
    waiting = await queue.enqueue(tasks.add, 1, 2)

    await queue.failed.requeue(job_id)

    assert sync_redis.hget(f"rq:job:{job_id}", "status") == b"queued"
    assert await queue.job_ids() == [waiting.id, job_id]
    assert await queue.failed.job_ids() == []
    assert sync_redis.ttl(f"rq:job:{job_id}") == -1


async def test_requeue_at_front_puts_it_first(
    quart_rq: AsyncRQ, queue: Queue, sync_redis: redis.Redis
) -> None:
    [job_id] = await failed_job_ids(quart_rq, 1)
    waiting = await queue.enqueue(tasks.add, 1, 2)

    await queue.failed.requeue(job_id, at_front=True)

    assert await queue.job_ids() == [job_id, waiting.id]


async def test_requeued_job_reads_as_queued_in_rq_and_runs_again(
    quart_rq: AsyncRQ, queue: Queue, sync_redis: redis.Redis
) -> None:
    [job_id] = await failed_job_ids(quart_rq, 1)

    await queue.failed.requeue(job_id)

    theirs = stock(rq_registry.FailedJobRegistry, sync_redis)
    assert theirs.get_job_ids() == []
    job = await queue.fetch_job(job_id)
    assert job is not None and job.status is JobStatus.QUEUED
    assert job.started_at is None and job.ended_at is None
    await run_worker(quart_rq)
    assert await job.get_status() is JobStatus.FAILED
    assert len(await job.results()) == 2


async def test_requeue_of_a_job_not_in_the_failed_registry_raises_and_writes_nothing(
    queue: Queue, sync_redis: redis.Redis
) -> None:
    job = await queue.enqueue(tasks.add, 1, 2)
    before = sync_redis.hgetall(job.key)

    with pytest.raises(InvalidJobOperation, match=job.id):
        await queue.failed.requeue(job.id)

    assert sync_redis.hgetall(job.key) == before
    assert await queue.job_ids() == [job.id]


async def test_requeue_of_an_unknown_job_raises_no_such_job(queue: Queue) -> None:
    with pytest.raises(NoSuchJobError, match="nope"):
        await queue.failed.requeue("nope")


async def test_requeue_of_a_job_of_another_queue_raises_no_such_job(
    quart_rq: AsyncRQ, queue: Queue
) -> None:
    [job_id] = await failed_job_ids(quart_rq, 1)

    with pytest.raises(NoSuchJobError, match=job_id):
        await quart_rq.get_queue("low").failed.requeue(job_id)


async def test_concurrent_requeues_put_the_job_back_once(quart_rq: AsyncRQ, queue: Queue) -> None:
    [job_id] = await failed_job_ids(quart_rq, 1)

    outcomes = await asyncio.gather(
        *(queue.failed.requeue(job_id) for _ in range(5)), return_exceptions=True
    )

    assert outcomes.count(None) == 1
    assert await queue.job_ids() == [job_id]


# -- what Job.delete and Job.cancel do to them ---------------------------------------------


def book_everywhere(client: redis.Redis, job_id: str) -> None:
    """Put ``job_id`` in every registry of the default queue (one execution in started)."""
    for registry in REGISTRIES:
        member = f"{job_id}:exec1" if registry is StartedJobRegistry else job_id
        client.zadd(registry.key_of("default"), {member: 10**10})


async def test_delete_takes_the_job_out_of_every_registry(
    queue: Queue, sync_redis: redis.Redis
) -> None:
    job = await queue.enqueue(tasks.add, 1, 2)
    book_everywhere(sync_redis, job.id)

    await job.delete()

    for registry in REGISTRIES:
        assert sync_redis.zcard(registry.key_of("default")) == 0, registry.__name__
    assert await queue.job_ids() == []


async def test_cancel_takes_the_job_out_of_every_registry_but_canceled(
    queue: Queue, sync_redis: redis.Redis
) -> None:
    job = await queue.enqueue(tasks.add, 1, 2)
    book_everywhere(sync_redis, job.id)

    await job.cancel()

    assert await queue.canceled.job_ids() == [job.id]
    for registry in set(REGISTRIES) - {CanceledJobRegistry}:
        assert sync_redis.zcard(registry.key_of("default")) == 0, registry.__name__


async def test_deleting_a_running_job_leaves_nothing_once_it_ends(
    quart_rq: AsyncRQ, queue: Queue, sync_redis: redis.Redis
) -> None:
    job = await queue.enqueue(tasks.async_sleep, 0.5)
    worker = quart_rq.make_worker()

    async with serving(worker, sync_redis):
        await async_wait_until(lambda: status(sync_redis, job.id) == "started", what="the job")
        await job.delete()
        await async_wait_until(lambda: worker.processed == 1, what="the worker's record of it")

    assert sync_redis.keys(f"*{job.id}*") == []
