"""Stock rq 3.0 and aiorq_flask on one Redis: rq reads and runs what we enqueue, we read
what rq enqueues and runs (spec §1, §6). Stock workers run as subprocesses from the repo root.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import redis
import rq
from quart import Quart
from rq.job import Job as RQJob

from aiorq_flask import AsyncRQ, Job, JobStatus, MsgpackSerializer, Queue, ResultType, Retry

from . import job_funcs, tasks

ROOT = Path(__file__).resolve().parents[1]
RQ = str(ROOT / ".venv" / "bin" / "rq")
SERIALIZER = "aiorq_flask.serializer.MsgpackSerializer"


@pytest.fixture
def queue(quart_rq: AsyncRQ) -> Queue:
    return quart_rq.queue


@asynccontextmanager
async def stock_worker(url: str, *queues: str) -> AsyncIterator[asyncio.subprocess.Process]:
    """A stock ``rq worker --burst`` on ``queues``; waits for it to exit, kills it on error."""
    process = await asyncio.create_subprocess_exec(
        RQ,
        "worker",
        "--burst",
        "-S",
        SERIALIZER,
        "-u",
        url,
        *queues,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        yield process
        output, _ = await asyncio.wait_for(process.communicate(), 30)
        assert process.returncode == 0, output.decode(errors="replace")
    finally:
        if process.returncode is None:
            os.killpg(process.pid, signal.SIGKILL)
            await process.wait()


async def rq_info(url: str) -> str:
    process = await asyncio.create_subprocess_exec(
        RQ,
        "info",
        "-u",
        url,
        "-S",
        SERIALIZER,
        "--only-queues",
        "--raw",
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        output, _ = await asyncio.wait_for(process.communicate(), 30)
    finally:
        if process.returncode is None:
            os.killpg(process.pid, signal.SIGKILL)
            await process.wait()
    text = output.decode(errors="replace")
    assert process.returncode == 0, text
    return text


def queue_counts(info: str) -> dict[str, int]:
    """``rq info --raw`` lines ``queue <name> <count>, ...`` as ``{name: count}``."""
    counts = {}
    for line in info.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[0] == "queue":
            counts[parts[1]] = int(parts[2].rstrip(","))
    return counts


def rq_fetch(client: redis.Redis, job_id: str) -> RQJob:
    return RQJob.fetch(job_id, connection=client, serializer=MsgpackSerializer)


# -- rq reads what we write --------------------------------------------------------------


async def test_rq_job_fetch_reads_the_call_of_a_job_we_enqueued(
    queue: Queue, sync_redis: redis.Redis
) -> None:
    job = await queue.enqueue(tasks.add, 1, 2, c=3)

    rq_job = rq_fetch(sync_redis, job.id)

    assert (rq_job.func_name, rq_job.args, rq_job.kwargs) == ("tests.tasks.add", [1, 2], {"c": 3})


async def test_rq_job_fetch_reads_origin_status_timeout_and_description(
    queue: Queue, sync_redis: redis.Redis
) -> None:
    job = await queue.enqueue(tasks.add, 1, 2, job_timeout="2m")

    rq_job = rq_fetch(sync_redis, job.id)

    assert (rq_job.origin, rq_job.get_status(), rq_job.timeout) == ("default", "queued", 120)
    assert rq_job.description == "tests.tasks.add(1, 2)"


async def test_rq_job_fetch_reads_meta(queue: Queue, sync_redis: redis.Redis) -> None:
    job = await queue.enqueue(tasks.add, 1, 2, meta={"owner": "ops", "n": [1, 2]})

    assert rq_fetch(sync_redis, job.id).meta == {"owner": "ops", "n": [1, 2]}


async def test_rq_job_fetch_reads_timestamps(queue: Queue, sync_redis: redis.Redis) -> None:
    job = await queue.enqueue(tasks.add, 1, 2)

    rq_job = rq_fetch(sync_redis, job.id)

    assert job.created_at is not None and job.enqueued_at is not None
    assert (rq_job.created_at, rq_job.enqueued_at) == (job.created_at, job.enqueued_at)


async def test_rq_job_fetch_reads_retry_and_ttls(queue: Queue, sync_redis: redis.Redis) -> None:
    job = await queue.enqueue(
        tasks.add, 1, 2, retry=Retry(3, [1, 2]), result_ttl=30, failure_ttl=60, ttl=90
    )

    rq_job = rq_fetch(sync_redis, job.id)

    assert (rq_job.retries_left, rq_job.retry_intervals) == (3, [1, 2])
    assert (rq_job.result_ttl, rq_job.failure_ttl, rq_job.ttl) == (30, 60, 90)


async def test_rq_job_fetch_reads_a_scheduled_job(queue: Queue, sync_redis: redis.Redis) -> None:
    job = await queue.enqueue_in(3600, tasks.add, 1, 2)

    rq_job = rq_fetch(sync_redis, job.id)

    assert rq_job.get_status() == "scheduled"
    assert rq.Queue("default", connection=sync_redis).scheduled_job_registry.get_job_ids() == [
        job.id
    ]


async def test_rq_job_fetch_reads_a_deferred_jobs_dependencies(
    queue: Queue, sync_redis: redis.Redis
) -> None:
    parent = await queue.enqueue(tasks.add, 1, 2)
    child = await queue.enqueue(tasks.add, 3, 4, depends_on=parent)

    rq_child = rq_fetch(sync_redis, child.id)

    assert rq_child.get_status() == "deferred"
    assert rq_child.dependency_ids == [parent.id]
    assert rq_child.fetch_dependencies()[0].id == parent.id


async def test_rq_queue_lists_the_jobs_we_enqueued(queue: Queue, sync_redis: redis.Redis) -> None:
    jobs = [await queue.enqueue(tasks.add, i, i) for i in range(3)]

    rq_queue = rq.Queue("default", connection=sync_redis, serializer=MsgpackSerializer)

    assert rq_queue.count == 3
    assert [j.id for j in rq_queue.jobs] == [job.id for job in jobs]


async def test_rq_queue_all_sees_our_queues(quart_rq: AsyncRQ, sync_redis: redis.Redis) -> None:
    await quart_rq.queue.enqueue(tasks.add, 1, 2)
    await quart_rq.get_queue("low").enqueue(tasks.add, 1, 2)

    names = {q.name for q in rq.Queue.all(connection=sync_redis)}

    assert names == {"default", "low"}


async def test_rq_info_lists_our_queues_with_their_counts(
    quart_rq: AsyncRQ, redis_url: str
) -> None:
    for i in range(2):
        await quart_rq.queue.enqueue(tasks.add, i, i)
    await quart_rq.get_queue("low").enqueue(tasks.add, 1, 2)

    info = await rq_info(redis_url)

    assert queue_counts(info) == {"default": 2, "low": 1}


# -- a stock worker runs what we enqueue ---------------------------------------------------


async def test_stock_worker_runs_our_def_job(queue: Queue, redis_url: str) -> None:
    job = await queue.enqueue(tasks.add, 1, 2, c=3)

    async with stock_worker(redis_url, "default"):
        result = await job.latest_result(timeout=30)

    assert result is not None and (result.type, result.return_value) == (ResultType.SUCCESSFUL, 6)


async def test_stock_worker_runs_our_async_def_job(queue: Queue, redis_url: str) -> None:
    job = await queue.enqueue(tasks.async_add, 20, 22)

    async with stock_worker(redis_url, "default"):
        result = await job.latest_result(timeout=30)

    assert result is not None and (result.type, result.return_value) == (ResultType.SUCCESSFUL, 42)


async def test_stock_worker_finishes_our_job(queue: Queue, redis_url: str) -> None:
    job = await queue.enqueue(tasks.add, 1, 2)

    async with stock_worker(redis_url, "default"):
        pass

    assert await job.get_status() is JobStatus.FINISHED
    assert await job.return_value() == 3


async def test_stock_worker_failure_carries_the_traceback(queue: Queue, redis_url: str) -> None:
    job = await queue.enqueue(tasks.fail, "stock says no")

    async with stock_worker(redis_url, "default"):
        result = await job.latest_result(timeout=30)

    assert result is not None and result.type is ResultType.FAILED
    assert result.exc_string is not None
    assert "Traceback" in result.exc_string and "ValueError: stock says no" in result.exc_string
    assert await job.get_status() is JobStatus.FAILED


async def test_stock_worker_runs_our_jobs_success_callback(
    queue: Queue, sync_redis: redis.Redis, redis_url: str
) -> None:
    job = await queue.enqueue(tasks.add, 1, 2, on_success=job_funcs.on_success)

    async with stock_worker(redis_url, "default"):
        pass

    assert sync_redis.get(f"test:callback:{job.id}") == b"success 3"


async def test_stock_worker_runs_our_jobs_failure_callback(
    queue: Queue, sync_redis: redis.Redis, redis_url: str
) -> None:
    job = await queue.enqueue(tasks.fail, "cb", on_failure=(job_funcs.on_failure, 10))

    async with stock_worker(redis_url, "default"):
        pass

    assert sync_redis.get(f"test:callback:{job.id}") == b"failure ValueError('cb')"


async def test_stock_worker_runs_our_jobs_on_several_queues(
    quart_rq: AsyncRQ, redis_url: str
) -> None:
    high = await quart_rq.get_queue("high").enqueue(tasks.add, 1, 1)
    low = await quart_rq.get_queue("low").enqueue(tasks.async_add, 2, 2)

    async with stock_worker(redis_url, "high", "low"):
        pass

    assert (await high.return_value(), await low.return_value()) == (2, 4)


async def test_stock_worker_runs_a_job_enqueued_through_the_decorator(
    make_quart_app: Callable[..., Quart], redis_url: str
) -> None:
    app = make_quart_app(RQ_QUEUES=["low"])
    job_funcs.rq.init_app(app)
    async with app.app_context():
        try:
            job = await job_funcs.decorated_async_mul.enqueue(6, 7)

            async with stock_worker(redis_url, "default", "low"):
                result = await job.latest_result(timeout=30)
        finally:
            await job_funcs.rq.state().pools.aclose()

    assert result is not None and result.return_value == 42


async def test_stock_worker_releases_our_deferred_job_when_its_parent_finishes(
    queue: Queue, redis_url: str
) -> None:
    parent = await queue.enqueue(tasks.add, 1, 2)
    child = await queue.enqueue(tasks.add, 3, 4, depends_on=parent)

    async with stock_worker(redis_url, "default"):
        result = await child.latest_result(timeout=30)

    assert result is not None and result.return_value == 7


# -- we read what rq writes --------------------------------------------------------------


async def test_our_fetch_reads_a_job_stock_rq_enqueued(
    queue: Queue, sync_redis: redis.Redis
) -> None:
    rq_queue = rq.Queue("default", connection=sync_redis, serializer=MsgpackSerializer)
    rq_job = rq_queue.enqueue(tasks.add, 1, 2)

    job = await Job.fetch(rq_job.id, queue.connection)

    assert (job.func_name, job.args, job.kwargs) == ("tests.tasks.add", [1, 2], {})
    assert (job.origin, job.description) == ("default", "tests.tasks.add(1, 2)")
    assert (job.status, job.timeout) == (JobStatus.QUEUED, 180)


async def test_our_queue_sees_a_job_stock_rq_enqueued(
    queue: Queue, sync_redis: redis.Redis
) -> None:
    rq_job = rq.Queue("default", connection=sync_redis, serializer=MsgpackSerializer).enqueue(
        tasks.add, 1, 2
    )

    assert await queue.job_ids() == [rq_job.id]
    fetched = await queue.fetch_job(rq_job.id)
    assert fetched is not None and fetched.id == rq_job.id


async def test_our_fetch_reads_stock_rq_meta(queue: Queue, sync_redis: redis.Redis) -> None:
    rq_queue = rq.Queue("default", connection=sync_redis, serializer=MsgpackSerializer)
    rq_job = rq_queue.enqueue(tasks.add, 1, 2, meta={"from": "rq"})

    assert (await Job.fetch(rq_job.id, queue.connection)).meta == {"from": "rq"}


async def test_our_description_matches_stock_rqs_for_the_same_call(
    queue: Queue, sync_redis: redis.Redis
) -> None:
    args = ("z" * 90, {"k": 1})
    kwargs = {"b": 2, "a": "q" * 80}
    rq_queue = rq.Queue("default", connection=sync_redis, serializer=MsgpackSerializer)

    rq_job = rq_queue.enqueue(tasks.echo, *args, **kwargs)
    job = await queue.enqueue(tasks.echo, *args, **kwargs)

    assert job.description == rq_job.description


async def test_our_fetch_reads_a_job_stock_rq_ran(
    queue: Queue, sync_redis: redis.Redis, redis_url: str
) -> None:
    rq_queue = rq.Queue("default", connection=sync_redis, serializer=MsgpackSerializer)
    rq_job = rq_queue.enqueue(tasks.add, 4, 5)

    async with stock_worker(redis_url, "default"):
        pass

    job = await Job.fetch(rq_job.id, queue.connection)
    assert job.status is JobStatus.FINISHED
    assert job.started_at is not None and job.ended_at is not None
    assert await job.return_value() == 9
