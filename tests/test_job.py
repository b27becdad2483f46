"""Job: fetch, status, results and the operations on one job, against a real redis-server.

Results are written by our worker, run in burst mode in the test's loop.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone
from typing import TypeVar

import pytest
import redis
import rq.job
from quart import Quart
from rq.job import Job as RQJob

from aiorq_flask import (
    AsyncRQ,
    InvalidJobError,
    InvalidJobOperation,
    Job,
    JobStatus,
    MsgpackSerializer,
    NoSuchJobError,
    Queue,
    Result,
    ResultType,
)

from . import tasks
from .redis_server import RedisServer

T = TypeVar("T")


@pytest.fixture
def queue(quart_rq: AsyncRQ) -> Queue:
    return quart_rq.queue


async def run_worker(quart_rq: AsyncRQ) -> None:
    """Run every waiting job on our worker, in this loop, until the queues are empty."""
    await quart_rq.make_worker().work(burst=True)


async def within(seconds: float, awaitable: Awaitable[T]) -> T:
    """Await with a deadline, so a hang fails the test quickly instead of at the 60 s timeout."""
    return await asyncio.wait_for(awaitable, seconds)


async def wait_until_blocked(client: redis.Redis, clients: int = 1) -> None:
    """Poll until ``clients`` connections are blocked in Redis (e.g. in XREAD BLOCK)."""
    deadline = time.monotonic() + 10
    while client.info("clients")["blocked_clients"] < clients:
        assert time.monotonic() < deadline, "no client blocked within 10 s"
        await asyncio.sleep(0.01)


# -- fetch and refresh -------------------------------------------------------------------


async def test_fetch_reads_the_job_we_enqueued(queue: Queue) -> None:
    job = await queue.enqueue(tasks.add, 1, 2, c=3, meta={"k": "v"})

    fetched = await Job.fetch(job.id, queue.connection)

    assert (fetched.func_name, fetched.args, fetched.kwargs) == (
        "tests.tasks.add",
        [1, 2],
        {"c": 3},
    )
    assert (fetched.origin, fetched.status, fetched.timeout) == ("default", JobStatus.QUEUED, 180)
    assert (fetched.description, fetched.meta) == ("tests.tasks.add(1, 2, c=3)", {"k": "v"})


async def test_fetch_reads_timestamps_as_aware_utc_datetimes(queue: Queue) -> None:
    before = datetime.now(timezone.utc)
    job = await queue.enqueue(tasks.add, 1, 2)

    fetched = await Job.fetch(job.id, queue.connection)

    assert fetched.created_at is not None and fetched.enqueued_at is not None
    assert before <= fetched.created_at <= datetime.now(timezone.utc)
    assert fetched.enqueued_at.tzinfo is not None
    assert fetched.started_at is None


async def test_fetch_of_an_unknown_id_raises_no_such_job_error(queue: Queue) -> None:
    with pytest.raises(NoSuchJobError, match="missing-job"):
        await Job.fetch("missing-job", queue.connection)


async def test_fetch_of_an_id_outside_rqs_alphabet_raises_value_error(queue: Queue) -> None:
    with pytest.raises(InvalidJobError):
        await Job.fetch("a:b", queue.connection)


async def test_refresh_reads_the_current_state(quart_rq: AsyncRQ) -> None:
    job = await quart_rq.queue.enqueue(tasks.add, 1, 2)
    await run_worker(quart_rq)

    await job.refresh()

    assert job.status is JobStatus.FINISHED
    assert job.ended_at is not None and job.worker_name != ""


# -- status ------------------------------------------------------------------------------


async def test_get_status_of_a_queued_job_is_queued(queue: Queue) -> None:
    job = await queue.enqueue(tasks.add, 1, 2)

    assert await job.get_status() is JobStatus.QUEUED


async def test_get_status_reads_redis_again(quart_rq: AsyncRQ) -> None:
    job = await quart_rq.queue.enqueue(tasks.fail)
    await run_worker(quart_rq)

    assert await job.get_status() is JobStatus.FAILED


async def test_job_status_is_a_str_enum_with_rqs_values() -> None:
    assert JobStatus.QUEUED == "queued"
    assert isinstance(JobStatus.FINISHED, str)
    rq_values = {status.value for status in rq.job.JobStatus}
    assert {status.value for status in JobStatus} == rq_values - {"ready_to_enqueue"}


# -- results -----------------------------------------------------------------------------


async def test_latest_result_is_none_while_the_job_has_not_run(queue: Queue) -> None:
    job = await queue.enqueue(tasks.add, 1, 2)

    assert await job.latest_result() is None


async def test_latest_result_of_a_finished_job_holds_its_return_value(quart_rq: AsyncRQ) -> None:
    job = await quart_rq.queue.enqueue(tasks.add, 1, 2)
    await run_worker(quart_rq)

    result = await job.latest_result()

    assert isinstance(result, Result)
    assert (result.type, result.return_value, result.exc_string) == (
        ResultType.SUCCESSFUL,
        3,
        None,
    )


async def test_latest_result_of_a_failed_job_holds_the_traceback(quart_rq: AsyncRQ) -> None:
    job = await quart_rq.queue.enqueue(tasks.fail, "it broke")
    await run_worker(quart_rq)

    result = await job.latest_result()

    assert result is not None and result.type is ResultType.FAILED
    assert result.exc_string is not None
    assert "Traceback" in result.exc_string and "ValueError: it broke" in result.exc_string


async def test_latest_result_with_timeout_returns_as_soon_as_a_result_is_written(
    quart_rq: AsyncRQ, sync_redis: redis.Redis
) -> None:
    job = await quart_rq.queue.enqueue(tasks.add, 2, 3)
    waiter = asyncio.ensure_future(job.latest_result(timeout=30))
    try:
        await wait_until_blocked(sync_redis)

        await run_worker(quart_rq)

        result = await within(10, waiter)
    finally:
        waiter.cancel()
    assert result is not None and result.return_value == 5


async def test_latest_result_with_timeout_blocks_in_xread_while_no_result_exists(
    queue: Queue, sync_redis: redis.Redis
) -> None:
    job = await queue.enqueue(tasks.add, 2, 3)
    waiter = asyncio.ensure_future(job.latest_result(timeout=30))
    try:
        await wait_until_blocked(sync_redis)

        clients = sync_redis.client_list()
        assert any(c["cmd"] == "xread" and "b" in c["flags"] for c in clients)
        assert not waiter.done()
    finally:
        waiter.cancel()


async def test_latest_result_with_timeout_returns_none_when_it_expires(queue: Queue) -> None:
    job = await queue.enqueue(tasks.add, 1, 2)

    assert await within(10, job.latest_result(timeout=0.2)) is None


async def test_latest_result_with_a_sub_millisecond_timeout_does_not_block_forever(
    queue: Queue,
) -> None:
    job = await queue.enqueue(tasks.add, 1, 2)

    assert await within(5, job.latest_result(timeout=0.0001)) is None


async def test_latest_result_with_timeout_returns_an_existing_result_at_once(
    quart_rq: AsyncRQ,
) -> None:
    job = await quart_rq.queue.enqueue(tasks.add, 1, 2)
    await run_worker(quart_rq)

    result = await within(5, job.latest_result(timeout=30))

    assert result is not None and result.return_value == 3


async def test_results_lists_every_outcome_newest_first(quart_rq: AsyncRQ) -> None:
    job = await quart_rq.queue.enqueue(tasks.fail)
    await run_worker(quart_rq)
    await job.requeue()
    await run_worker(quart_rq)

    results = await job.results()

    assert [r.type for r in results] == [ResultType.FAILED, ResultType.FAILED]
    assert results[0].created_at >= results[1].created_at
    assert results[0].id != results[1].id


async def test_return_value_of_a_finished_job(quart_rq: AsyncRQ) -> None:
    job = await quart_rq.queue.enqueue(tasks.echo, "a", b=[1])
    await run_worker(quart_rq)

    assert await job.return_value() == [["a"], {"b": [1]}]


async def test_return_value_of_a_failed_job_is_none(quart_rq: AsyncRQ) -> None:
    job = await quart_rq.queue.enqueue(tasks.fail)
    await run_worker(quart_rq)

    assert await job.return_value() is None


async def test_return_value_of_a_job_that_has_not_run_is_none(queue: Queue) -> None:
    job = await queue.enqueue(tasks.add, 1, 2)

    assert await job.return_value() is None


# -- meta --------------------------------------------------------------------------------


async def test_save_meta_is_seen_by_rqs_job_fetch(queue: Queue, sync_redis: redis.Redis) -> None:
    job = await queue.enqueue(tasks.add, 1, 2)
    job.meta["progress"] = 50

    await job.save_meta()

    rq_job = RQJob.fetch(job.id, connection=sync_redis, serializer=MsgpackSerializer)
    assert rq_job.meta == {"progress": 50}


async def test_save_meta_is_seen_by_our_fetch(queue: Queue) -> None:
    job = await queue.enqueue(tasks.add, 1, 2, meta={"a": 1})
    job.meta["b"] = [2]

    await job.save_meta()

    assert (await Job.fetch(job.id, queue.connection)).meta == {"a": 1, "b": [2]}


async def test_save_meta_changes_no_other_field(queue: Queue, sync_redis: redis.Redis) -> None:
    job = await queue.enqueue(tasks.add, 1, 2)
    before = sync_redis.hgetall(job.key)
    job.meta["x"] = 1

    await job.save_meta()

    after = sync_redis.hgetall(job.key)
    del after[b"meta"]
    assert after == before


# -- delete, cancel, requeue ---------------------------------------------------------------


async def test_delete_removes_a_waiting_job_and_its_place_in_the_queue(
    queue: Queue, sync_redis: redis.Redis
) -> None:
    job = await queue.enqueue(tasks.add, 1, 2)
    other = await queue.enqueue(tasks.add, 3, 4)

    await job.delete()

    assert not sync_redis.exists(job.key)
    assert sync_redis.lrange("rq:queue:default", 0, -1) == [other.id.encode()]


async def test_delete_removes_a_finished_jobs_results_and_registry_entry(
    quart_rq: AsyncRQ, sync_redis: redis.Redis
) -> None:
    job = await quart_rq.queue.enqueue(tasks.add, 1, 2)
    await run_worker(quart_rq)

    await job.delete()

    assert not sync_redis.exists(job.key, f"rq:results:{job.id}")
    assert sync_redis.zscore("rq:finished:default", job.id) is None


async def test_deleted_job_cannot_be_fetched(queue: Queue) -> None:
    job = await queue.enqueue(tasks.add, 1, 2)

    await job.delete()

    with pytest.raises(NoSuchJobError):
        await Job.fetch(job.id, queue.connection)


async def test_cancel_sets_status_canceled(queue: Queue, sync_redis: redis.Redis) -> None:
    job = await queue.enqueue(tasks.add, 1, 2)

    await job.cancel()

    assert sync_redis.hget(job.key, "status") == b"canceled"
    assert job.status is JobStatus.CANCELED


async def test_cancel_removes_the_job_from_its_queue(queue: Queue, sync_redis: redis.Redis) -> None:
    job = await queue.enqueue(tasks.add, 1, 2)
    other = await queue.enqueue(tasks.add, 3, 4)

    await job.cancel()

    assert sync_redis.lrange("rq:queue:default", 0, -1) == [other.id.encode()]


async def test_cancel_adds_the_job_to_the_canceled_registry_scored_now(
    queue: Queue, sync_redis: redis.Redis
) -> None:
    job = await queue.enqueue(tasks.add, 1, 2)
    before = int(time.time())

    await job.cancel()

    score = sync_redis.zscore("rq:canceled:default", job.id)
    assert score is not None and before <= score <= time.time()


async def test_cancel_keeps_the_hash_without_ttl(queue: Queue, sync_redis: redis.Redis) -> None:
    job = await queue.enqueue(tasks.add, 1, 2)

    await job.cancel()

    assert sync_redis.ttl(job.key) == -1


async def test_cancel_of_a_scheduled_job_removes_it_from_the_scheduled_registry(
    queue: Queue, sync_redis: redis.Redis
) -> None:
    job = await queue.enqueue_in(3600, tasks.add, 1, 2)

    await job.cancel()

    assert sync_redis.zcard("rq:scheduled:default") == 0


async def test_cancel_of_a_deferred_job_removes_it_from_the_deferred_registry(
    queue: Queue, sync_redis: redis.Redis
) -> None:
    parent = await queue.enqueue(tasks.add, 1, 2)
    child = await queue.enqueue(tasks.add, 3, 4, depends_on=parent)

    await child.cancel()

    assert sync_redis.zcard("rq:deferred:default") == 0


async def test_cancel_twice_raises_invalid_job_operation(queue: Queue) -> None:
    job = await queue.enqueue(tasks.add, 1, 2)
    await job.cancel()

    with pytest.raises(InvalidJobOperation, match=job.id):
        await job.cancel()


async def test_cancel_of_a_deleted_job_raises_and_writes_nothing(
    queue: Queue, sync_redis: redis.Redis
) -> None:
    job = await queue.enqueue(tasks.add, 1, 2)
    await job.delete()
    keys_before = set(sync_redis.keys("*"))

    with pytest.raises((NoSuchJobError, InvalidJobOperation)):
        await job.cancel()

    assert set(sync_redis.keys("*")) == keys_before


async def test_canceled_job_reads_as_canceled_in_rq(queue: Queue, sync_redis: redis.Redis) -> None:
    job = await queue.enqueue(tasks.add, 1, 2)

    await job.cancel()

    rq_job = RQJob.fetch(job.id, connection=sync_redis, serializer=MsgpackSerializer)
    assert rq_job.get_status() == "canceled"


async def test_requeue_puts_a_failed_job_back_on_its_queue(
    quart_rq: AsyncRQ, sync_redis: redis.Redis
) -> None:
    job = await quart_rq.queue.enqueue(tasks.fail)
    await run_worker(quart_rq)

    await job.requeue()

    assert sync_redis.hget(job.key, "status") == b"queued"
    assert sync_redis.lrange("rq:queue:default", 0, -1) == [job.id.encode()]
    assert sync_redis.zscore("rq:failed:default", job.id) is None


async def test_requeue_clears_the_failed_jobs_ttl(
    quart_rq: AsyncRQ, sync_redis: redis.Redis
) -> None:
    job = await quart_rq.queue.enqueue(tasks.fail)
    await run_worker(quart_rq)
    assert sync_redis.ttl(job.key) > 0

    await job.requeue()

    assert sync_redis.ttl(job.key) == -1


async def test_requeued_job_runs_again(quart_rq: AsyncRQ) -> None:
    job = await quart_rq.queue.enqueue(tasks.fail)
    await run_worker(quart_rq)
    await job.requeue()

    await run_worker(quart_rq)

    assert await job.get_status() is JobStatus.FAILED
    assert len(await job.results()) == 2


async def test_requeue_of_a_queued_job_raises_invalid_job_operation(queue: Queue) -> None:
    job = await queue.enqueue(tasks.add, 1, 2)

    with pytest.raises(InvalidJobOperation, match="queued"):
        await job.requeue()


async def test_latest_result_waits_longer_than_the_clients_socket_timeout(
    make_quart_app: Callable[..., Quart], redis_server: RedisServer | None, redis_url: str
) -> None:
    host, port = redis_url.split("//", 1)[1].split("/", 1)[0].split(":")
    app = make_quart_app(RQ_CONNECTION={"host": host, "port": int(port), "socket_timeout": 0.1})
    rq = AsyncRQ(app)
    async with app.app_context():
        job = await rq.queue.enqueue(tasks.add, 1, 2)
        started = time.monotonic()

        result = await within(5, job.latest_result(timeout=0.5))

        assert result is None
        assert time.monotonic() - started >= 0.5
        await rq.state().pools.aclose()
