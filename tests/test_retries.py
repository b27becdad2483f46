"""Retries that fit production: ``Retry.backoff`` (stored as plain ``retry_intervals``),
a job that *returns* ``Retry(...)`` retried as rq 3.0 does (``number_of_retries``, result
types 4 and 5), and rq's ``Dependency``/``Callback`` objects as enqueue options."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable

import pytest
import redis
from quart import Quart
from rq.callbacks import Callback
from rq.job import Dependency
from rq.job import Job as RQJob
from rq.results import Result as RQResult

from aiorq_flask import AsyncRQ, InvalidJobError, JobStatus, MsgpackSerializer, Retry

from . import job_funcs, self_aware_jobs, tasks
from .apps.worker_support import (
    all_have_status,
    async_wait_until,
    burst,
    latest_result,
    serving,
    status,
)

# -- Retry.backoff -----------------------------------------------------------------------


def test_backoff_without_jitter_doubles_from_base() -> None:
    assert Retry.backoff(4, base=0.1, jitter=False).intervals == [0.1, 0.2, 0.4, 0.8]


def test_backoff_waits_grow_within_the_jitter_bounds() -> None:
    for _ in range(500):
        waits = Retry.backoff(4, base=0.1).intervals

        assert all(0.1 * 2**n / 2 <= wait <= 0.1 * 2**n for n, wait in enumerate(waits)), waits
        assert waits == sorted(waits)


def test_backoff_jitter_draws_differ() -> None:
    assert len({tuple(Retry.backoff(4, base=0.1).intervals) for _ in range(20)}) > 1


def test_backoff_waits_stop_at_the_cap() -> None:
    assert Retry.backoff(6, base=1, factor=10, cap=300, jitter=False).intervals == [
        1,
        10,
        100,
        300,
        300,
        300,
    ]


@pytest.mark.parametrize(
    "options", [{"base": 0}, {"factor": 0.5}, {"cap": -1}], ids=["base", "factor", "cap"]
)
def test_backoff_refuses_waits_that_do_not_make_sense(options: dict[str, float]) -> None:
    with pytest.raises(InvalidJobError, match=r"Retry\.backoff"):
        Retry.backoff(3, **options)


async def test_backoff_is_stored_as_retry_intervals_stock_rq_reads(
    quart_rq: AsyncRQ, sync_redis: redis.Redis
) -> None:
    retry = Retry.backoff(4, base=0.1)

    job = await quart_rq.queue.enqueue(tasks.fail, retry=retry)

    stock = RQJob.fetch(job.id, sync_redis, MsgpackSerializer)
    assert (stock.retries_left, stock.retry_intervals) == (4, retry.intervals)
    assert (await quart_rq.queue.fetch_job(job.id)).retry_intervals == retry.intervals  # type: ignore[union-attr]


async def test_backoff_waits_between_attempts_grow_on_a_worker(
    quart_rq: AsyncRQ, sync_redis: redis.Redis, redis_url: str
) -> None:
    retry = Retry.backoff(2, base=1, factor=3, jitter=False)  # waits of 1 s, then 3 s
    job = await quart_rq.queue.enqueue(
        self_aware_jobs.record_attempt, redis_url, "attempts", retry=retry
    )

    async with serving(quart_rq.make_worker(), sync_redis):
        await async_wait_until(lambda: status(sync_redis, job.id) == "failed", timeout=20)

    at = [float(moment) for moment in sync_redis.lrange("attempts", 0, -1)]
    waits = [later - earlier for earlier, later in itertools.pairwise(at)]
    assert len(waits) == 2
    # a wait is its interval, plus at most a second to the scheduler's next tick
    assert 1 <= waits[0] < 3 <= waits[1] < 5.5, waits


# -- a job that returns Retry ------------------------------------------------------------------


@pytest.mark.parametrize(
    "function", [self_aware_jobs.count_and_retry, self_aware_jobs.count_and_return_rq_retry]
)
async def test_a_job_returning_retry_max_2_runs_3_times_then_fails(
    quart_rq: AsyncRQ, sync_redis: redis.Redis, redis_url: str, function: Callable[..., object]
) -> None:
    job = await quart_rq.queue.enqueue(function, redis_url, "runs", max=2)

    await burst(quart_rq.make_worker())

    assert int(sync_redis.get("runs") or 0) == 3
    assert status(sync_redis, job.id) == "failed"
    assert sync_redis.zscore("rq:failed:default", job.id) is not None
    types = [int(fields[b"type"]) for _, fields in sync_redis.xrevrange(f"rq:results:{job.id}")]
    assert types == [5, 4, 4]  # max retries exceeded, after two retried


async def test_stock_rq_reads_a_returned_retrys_records(
    quart_rq: AsyncRQ, sync_redis: redis.Redis, redis_url: str
) -> None:
    job = await quart_rq.queue.enqueue(self_aware_jobs.count_and_retry, redis_url, "runs", max=2)

    await burst(quart_rq.make_worker())

    stock = RQJob.fetch(job.id, sync_redis, MsgpackSerializer)
    assert (stock.get_status(), stock.number_of_retries) == ("failed", 2)
    assert stock.latest_result().type is RQResult.Type.MAX_RETRIES_EXCEEDED


async def test_a_returned_retry_with_an_interval_schedules_the_next_run(
    quart_rq: AsyncRQ, sync_redis: redis.Redis, redis_url: str
) -> None:
    job = await quart_rq.queue.enqueue(
        self_aware_jobs.count_and_retry, redis_url, "runs", max=3, interval=[60, 120]
    )

    before = time.time()
    await burst(quart_rq.make_worker())

    assert status(sync_redis, job.id) == "scheduled"
    due = sync_redis.zscore("rq:scheduled:default", job.id)
    assert due is not None and before + 60 <= due <= time.time() + 61
    assert sync_redis.hget(f"rq:job:{job.id}", "number_of_retries") == b"1"
    assert latest_result(sync_redis, job.id).type == 4  # type: ignore[union-attr]


async def test_eager_mode_runs_a_job_returning_retry_once_and_fails_it(
    make_quart_app: Callable[..., Quart], redis_url: str, sync_redis: redis.Redis
) -> None:
    app = make_quart_app(RQ_ASYNC=False)
    rq_ = AsyncRQ(app)
    async with app.app_context():
        job = await rq_.queue.enqueue(self_aware_jobs.count_and_retry, redis_url, "runs", max=2)
        await rq_.state().pools.aclose()

    assert (int(sync_redis.get("runs") or 0), status(sync_redis, job.id)) == (1, "failed")
    assert latest_result(sync_redis, job.id).type == 5  # type: ignore[union-attr]


# -- rq's Dependency and Callback objects ------------------------------------------------------


async def test_rq_dependency_is_accepted_as_depends_on(
    quart_rq: AsyncRQ, sync_redis: redis.Redis
) -> None:
    parent = await quart_rq.queue.enqueue(tasks.fail)
    dependency = Dependency(jobs=[parent.id], allow_failure=True, enqueue_at_front=True)

    child = await quart_rq.queue.enqueue(tasks.add, 1, 2, depends_on=dependency)

    assert child.status is JobStatus.DEFERRED
    stock = RQJob.fetch(child.id, sync_redis, MsgpackSerializer)
    assert (stock.dependency_ids, stock.allow_dependency_failures) == ([parent.id], True)
    assert stock.enqueue_at_front is True
    await burst(quart_rq.make_worker())
    assert [status(sync_redis, j.id) for j in (parent, child)] == ["failed", "finished"]


async def test_rq_dependency_in_a_list_takes_jobs_and_ids(quart_rq: AsyncRQ) -> None:
    first = await quart_rq.queue.enqueue(tasks.add, 1, 2)
    second = await quart_rq.queue.enqueue(tasks.add, 3, 4)

    child = await quart_rq.queue.enqueue(
        tasks.add, 1, 2, depends_on=[Dependency(jobs=[first.id]), second]
    )

    assert child.dependency_ids == [first.id, second.id]


async def test_rq_callback_is_accepted_as_a_callback_option(
    quart_rq: AsyncRQ, sync_redis: redis.Redis
) -> None:
    job = await quart_rq.queue.enqueue(
        tasks.add,
        1,
        2,
        on_success=Callback(job_funcs.on_success, timeout=5),
        on_failure=Callback("tests.job_funcs.on_failure"),
    )

    fields = sync_redis.hgetall(f"rq:job:{job.id}")
    assert (fields[b"success_callback_name"], fields[b"success_callback_timeout"]) == (
        b"tests.job_funcs.on_success",
        b"5",
    )
    assert fields[b"failure_callback_name"] == b"tests.job_funcs.on_failure"
    stock = RQJob.fetch(job.id, sync_redis, MsgpackSerializer)
    assert stock.success_callback_timeout == 5


async def test_a_worker_runs_every_dependent_of_an_rq_dependency(
    quart_rq: AsyncRQ, sync_redis: redis.Redis
) -> None:
    parent = await quart_rq.queue.enqueue(tasks.add, 1, 2)
    children = [
        await quart_rq.queue.enqueue(tasks.add, i, i, depends_on=Dependency(jobs=parent.id))
        for i in range(3)
    ]

    await burst(quart_rq.make_worker())

    assert all_have_status(sync_redis, [parent.id, *(c.id for c in children)], "finished")
