"""Eager mode (``RQ_ASYNC = False``, or unset in a testing app): enqueue runs the job at once
and leaves the state a worker would leave: status, results stream, registries.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
import redis
from quart import Quart
from rq.job import Job as RQJob

from aiorq_flask import AsyncRQ, Job, JobStatus, MsgpackSerializer, Queue, ResultType

from . import job_funcs, tasks


@asynccontextmanager
async def registered(app: Quart, rq: AsyncRQ | None = None) -> AsyncIterator[AsyncRQ]:
    """``rq`` (a new AsyncRQ by default) on ``app``, with the app context pushed."""
    rq = rq or AsyncRQ()
    rq.init_app(app)
    async with app.app_context():
        try:
            yield rq
        finally:
            await rq.state().pools.aclose()


@pytest.fixture
async def eager_rq(make_quart_app: Callable[..., Quart]) -> AsyncIterator[AsyncRQ]:
    async with registered(make_quart_app(RQ_ASYNC=False, RQ_QUEUES=["default", "low"])) as rq:
        yield rq


@pytest.fixture
def queue(eager_rq: AsyncRQ) -> Queue:
    return eager_rq.queue


def unset_async_app(make_quart_app: Callable[..., Quart], *, testing: bool) -> Quart:
    app = make_quart_app()
    del app.config["RQ_ASYNC"]
    app.testing = testing
    return app


# -- running at enqueue --------------------------------------------------------------------


async def test_enqueue_returns_a_finished_job(queue: Queue, sync_redis: redis.Redis) -> None:
    job = await queue.enqueue(tasks.add, 1, 2)

    assert job.status is JobStatus.FINISHED
    assert sync_redis.hget(f"rq:job:{job.id}", "status") == b"finished"


async def test_async_job_is_awaited_on_the_callers_loop(queue: Queue) -> None:
    job = await queue.enqueue(job_funcs.running_loop_id)

    assert await job.return_value() == id(asyncio.get_running_loop())


async def test_sync_job_runs_in_another_thread(queue: Queue) -> None:
    job = await queue.enqueue(job_funcs.thread_ident)

    ident = await job.return_value()
    assert isinstance(ident, int) and ident != threading.get_ident()


async def test_sync_job_does_not_block_the_loop(queue: Queue) -> None:
    ticks = 0
    stop = asyncio.Event()

    async def tick() -> None:
        nonlocal ticks
        while not stop.is_set():
            ticks += 1
            await asyncio.sleep(0.01)

    ticker = asyncio.ensure_future(tick())
    try:
        await queue.enqueue(tasks.sync_sleep, 0.3)
    finally:
        stop.set()
        await ticker
    assert ticks >= 3


@pytest.mark.parametrize("function", [tasks.app_name, tasks.async_app_name])
async def test_job_runs_in_the_callers_app_context(
    eager_rq: AsyncRQ, function: Callable[[], Any]
) -> None:
    job = await eager_rq.queue.enqueue(function)

    assert await job.return_value() == "tests.conftest"


async def test_latest_result_holds_the_return_value(queue: Queue) -> None:
    job = await queue.enqueue(tasks.async_add, 20, 22)

    result = await job.latest_result()

    assert result is not None and (result.type, result.return_value) == (ResultType.SUCCESSFUL, 42)


async def test_results_stream_is_written_in_rqs_format(
    queue: Queue, sync_redis: redis.Redis
) -> None:
    job = await queue.enqueue(tasks.add, 2, 4)

    [(_, fields)] = sync_redis.xrange(f"rq:results:{job.id}")

    assert (fields[b"type"], fields[b"return_value"]) == (b"1", b"Bg==")


async def test_finished_job_is_in_the_finished_registry_and_not_in_the_queue(
    queue: Queue, sync_redis: redis.Redis
) -> None:
    job = await queue.enqueue(tasks.add, 1, 2)

    assert sync_redis.zscore("rq:finished:default", job.id) is not None
    assert sync_redis.llen("rq:queue:default") == 0


async def test_finished_job_reads_as_finished_in_rq(queue: Queue, sync_redis: redis.Redis) -> None:
    job = await queue.enqueue(tasks.add, 1, 2)

    rq_job = RQJob.fetch(job.id, connection=sync_redis, serializer=MsgpackSerializer)

    assert rq_job.get_status() == "finished"
    assert rq_job.return_value() == 3


async def test_finished_job_records_start_and_end(queue: Queue) -> None:
    job = await queue.enqueue(tasks.add, 1, 2)

    fetched = await Job.fetch(job.id, queue.connection)
    assert fetched.started_at is not None and fetched.ended_at is not None
    assert fetched.started_at <= fetched.ended_at


# -- failures ----------------------------------------------------------------------------


async def test_failing_job_does_not_raise_at_the_call_site(queue: Queue) -> None:
    job = await queue.enqueue(tasks.fail, "eager boom")

    assert job.status is JobStatus.FAILED


async def test_failing_job_ends_failed_in_redis(queue: Queue, sync_redis: redis.Redis) -> None:
    job = await queue.enqueue(job_funcs.async_fail)

    assert sync_redis.hget(f"rq:job:{job.id}", "status") == b"failed"
    assert sync_redis.zscore("rq:failed:default", job.id) is not None


async def test_failing_job_records_its_traceback(queue: Queue) -> None:
    job = await queue.enqueue(tasks.fail, "eager boom")

    result = await job.latest_result()

    assert result is not None and result.type is ResultType.FAILED
    assert result.exc_string is not None
    assert "Traceback" in result.exc_string and "ValueError: eager boom" in result.exc_string


async def test_failing_async_job_records_its_traceback(queue: Queue) -> None:
    job = await queue.enqueue(job_funcs.async_fail, "async eager boom")

    result = await job.latest_result()

    assert result is not None and result.exc_string is not None
    assert "RuntimeError: async eager boom" in result.exc_string


async def test_unimportable_function_fails_the_job_instead_of_raising(queue: Queue) -> None:
    job = await queue.enqueue("tests.job_funcs.no_such_function")

    result = await job.latest_result()
    assert job.status is JobStatus.FAILED
    assert result is not None and result.exc_string is not None
    assert "no_such_function" in result.exc_string


async def test_job_past_its_timeout_ends_failed_with_a_timeout_error(queue: Queue) -> None:
    job = await queue.enqueue(tasks.async_sleep, 30, job_timeout=1)

    result = await job.latest_result()
    assert job.status is JobStatus.FAILED
    assert result is not None and result.exc_string is not None
    assert "JobTimeoutError" in result.exc_string


async def test_a_jobs_own_timeout_error_is_a_plain_failure_not_a_job_timeout(
    queue: Queue,
) -> None:
    job = await queue.enqueue(job_funcs.own_timeout, job_timeout=30)

    result = await job.latest_result()
    assert result is not None and result.exc_string is not None
    assert "TimeoutError: the upstream API did not answer" in result.exc_string
    assert "JobTimeoutError" not in result.exc_string


async def test_result_ttl_zero_runs_the_job_and_keeps_no_hash(
    queue: Queue, sync_redis: redis.Redis
) -> None:
    job = await queue.enqueue(tasks.add, 1, 2, result_ttl=0)

    assert job.status is JobStatus.FINISHED
    assert not sync_redis.exists(f"rq:job:{job.id}")


# -- other ways in ----------------------------------------------------------------------


async def test_enqueue_many_runs_every_job(queue: Queue) -> None:
    jobs = await queue.enqueue_many([queue.prepare_data(tasks.add, (i, i)) for i in range(3)])

    assert [await job.return_value() for job in jobs] == [0, 2, 4]


async def test_decorated_function_enqueue_runs_at_once(
    make_quart_app: Callable[..., Quart],
) -> None:
    app = make_quart_app(RQ_ASYNC=False, RQ_QUEUES=["low"])
    async with registered(app, job_funcs.rq):
        job = await job_funcs.decorated_async_mul.enqueue(6, 7)

        assert (job.status, await job.return_value()) == (JobStatus.FINISHED, 42)


# -- when eager mode applies ---------------------------------------------------------------


async def test_unset_rq_async_in_a_testing_app_runs_jobs_at_once(
    make_quart_app: Callable[..., Quart],
) -> None:
    async with registered(unset_async_app(make_quart_app, testing=True)) as rq:
        job = await rq.queue.enqueue(tasks.add, 1, 2)

        assert await job.get_status() is JobStatus.FINISHED
        assert await job.return_value() == 3


async def test_unset_rq_async_outside_testing_queues_jobs(
    make_quart_app: Callable[..., Quart], sync_redis: redis.Redis
) -> None:
    async with registered(unset_async_app(make_quart_app, testing=False)) as rq:
        job = await rq.queue.enqueue(tasks.add, 1, 2)

        assert await job.get_status() is JobStatus.QUEUED
        assert sync_redis.lrange("rq:queue:default", 0, -1) == [job.id.encode()]


async def test_unset_rq_async_follows_app_testing_at_each_enqueue(
    make_quart_app: Callable[..., Quart],
) -> None:
    async with registered(unset_async_app(make_quart_app, testing=False)) as rq:
        app = rq.state().app
        app.testing = True  # as a test fixture does, after init_app
        ran = await rq.queue.enqueue(tasks.add, 1, 2)
        app.testing = False
        waits = await rq.queue.enqueue(tasks.add, 1, 2)

        assert (ran.status, waits.status) == (JobStatus.FINISHED, JobStatus.QUEUED)


async def test_rq_async_true_queues_jobs_even_in_a_testing_app(
    make_quart_app: Callable[..., Quart],
) -> None:
    app = make_quart_app(RQ_ASYNC=True)
    app.testing = True
    async with registered(app) as rq:
        job = await rq.queue.enqueue(tasks.add, 1, 2)

        assert await job.get_status() is JobStatus.QUEUED
