"""Unique jobs: ``unique=True`` with a ``job_id`` writes the job only if no job hash has
that id, in the same atomic step as the write (``enqueue.lua``), as rq 3.0 does."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta, timezone

import pytest
import redis
from quart import Quart
from rq.job import Job as RQJob

from aiorq_flask import AsyncRQ, DuplicateJobError, JobStatus, MsgpackSerializer, Queue
from aiorq_flask.payload import BIG_DATA

from . import job_funcs, tasks
from .test_enqueue import command_calls, commands_sent


@pytest.fixture
def queue(quart_rq: AsyncRQ) -> Queue:
    return quart_rq.queue


async def test_100_concurrent_unique_enqueues_of_one_id_write_one_job(
    queue: Queue, sync_redis: redis.Redis
) -> None:
    outcomes = await asyncio.gather(
        *(queue.enqueue(tasks.add, i, 0, job_id="once", unique=True) for i in range(100)),
        return_exceptions=True,
    )

    written = [o for o in outcomes if not isinstance(o, BaseException)]
    refused = [o for o in outcomes if isinstance(o, DuplicateJobError)]
    assert (len(written), len(refused)) == (1, 99)
    assert sync_redis.lrange("rq:queue:default", 0, -1) == [b"once"]
    assert written[0].args == RQJob.fetch("once", sync_redis, MsgpackSerializer).args


async def test_a_unique_enqueue_is_one_script_call_and_a_duplicate_writes_nothing(
    queue: Queue, sync_redis: redis.Redis
) -> None:
    await queue.enqueue(tasks.add, 0, 0)  # open the connection, load the script
    before = command_calls(sync_redis)

    await queue.enqueue(tasks.add, 1, 2, job_id="x", unique=True)
    with pytest.raises(DuplicateJobError):
        await queue.enqueue(tasks.add, 1, 2, job_id="x", unique=True)

    sent = commands_sent(before, command_calls(sync_redis))
    assert sent == {"evalsha": 2, "exists": 2, "hset": 1, "sadd": 1, "rpush": 1}


async def test_a_duplicate_changes_nothing_in_redis(queue: Queue, sync_redis: redis.Redis) -> None:
    await queue.enqueue(tasks.add, 1, 2, job_id="x", unique=True)
    before = {key: sync_redis.dump(key) for key in sync_redis.scan_iter()}

    with pytest.raises(DuplicateJobError, match="'x'"):
        await queue.enqueue(tasks.add, 3, 4, job_id="x", unique=True)

    assert {key: sync_redis.dump(key) for key in sync_redis.scan_iter()} == before


async def test_unique_is_an_option_never_a_keyword_argument_of_the_job(queue: Queue) -> None:
    job = await queue.enqueue(tasks.echo, 1, job_id="x", unique=True)

    assert (job.args, job.kwargs) == ([1], {})


async def test_a_unique_enqueue_of_a_finished_jobs_id_is_a_duplicate(quart_rq: AsyncRQ) -> None:
    await quart_rq.queue.enqueue(tasks.add, 1, 2, job_id="done", unique=True)
    await quart_rq.make_worker().work(burst=True)

    with pytest.raises(DuplicateJobError):
        await quart_rq.queue.enqueue(tasks.add, 1, 2, job_id="done", unique=True)


async def test_without_unique_the_same_id_is_written_again(queue: Queue) -> None:
    await queue.enqueue(tasks.add, 1, 2, job_id="x", unique=True)

    job = await queue.enqueue(tasks.add, 3, 4, job_id="x")

    assert job.args == [3, 4]


@pytest.mark.parametrize(
    "enqueue",
    [
        lambda q: q.enqueue(tasks.add, 1, 2, unique=True),
        lambda q: q.enqueue_call(tasks.add, (1, 2), unique=True),
        lambda q: q.enqueue_at(datetime.now(timezone.utc), tasks.add, 1, 2, unique=True),
        lambda q: q.enqueue_in(timedelta(seconds=5), tasks.add, 1, 2, unique=True),
    ],
    ids=["enqueue", "enqueue_call", "enqueue_at", "enqueue_in"],
)
async def test_unique_without_a_job_id_raises_value_error_and_writes_nothing(
    queue: Queue, sync_redis: redis.Redis, enqueue: Callable[[Queue], object]
) -> None:
    with pytest.raises(ValueError, match="unique=True needs a job_id"):
        await enqueue(queue)  # type: ignore[misc]

    assert sync_redis.dbsize() == 0


async def test_unique_with_depends_on_raises_value_error(queue: Queue) -> None:
    with pytest.raises(ValueError, match="depends_on"):
        await queue.enqueue(tasks.add, 1, 2, job_id="x", unique=True, depends_on="parent")


async def test_enqueue_call_refuses_a_duplicate(queue: Queue) -> None:
    await queue.enqueue_call(tasks.add, (1, 2), job_id="x", unique=True)

    with pytest.raises(DuplicateJobError):
        await queue.enqueue_call(tasks.add, (1, 2), job_id="x", unique=True)


async def test_enqueue_at_refuses_a_duplicate_and_schedules_the_first(
    queue: Queue, sync_redis: redis.Redis
) -> None:
    when = datetime.now(timezone.utc) + timedelta(hours=1)
    job = await queue.enqueue_at(when, tasks.add, 1, 2, job_id="later", unique=True)

    with pytest.raises(DuplicateJobError):
        await queue.enqueue_in(timedelta(hours=2), tasks.add, 1, 2, job_id="later", unique=True)

    assert job.status is JobStatus.SCHEDULED
    assert sync_redis.zscore("rq:scheduled:default", "later") == int(when.timestamp())


async def test_a_unique_job_with_a_big_payload_is_checked_before_its_data_is_written(
    queue: Queue, sync_redis: redis.Redis
) -> None:
    big = "x" * (BIG_DATA + 1)
    await queue.enqueue(tasks.echo, big, job_id="big", unique=True)

    with pytest.raises(DuplicateJobError):
        await queue.enqueue(tasks.echo, "small", job_id="big", unique=True)

    assert RQJob.fetch("big", sync_redis, MsgpackSerializer).args == [big]


async def test_enqueue_many_refuses_unique_jobs_before_writing(
    queue: Queue, sync_redis: redis.Redis
) -> None:
    jobs = [
        queue.prepare_data(tasks.add, (1, 2)),
        queue.prepare_data(tasks.add, (1, 2), job_id="x", unique=True),
    ]

    with pytest.raises(ValueError, match="enqueue_many"):
        await queue.enqueue_many(jobs)

    assert sync_redis.dbsize() == 0


async def test_the_decorators_enqueue_takes_unique(
    make_quart_app: Callable[..., Quart],
) -> None:
    app = make_quart_app()
    job_funcs.rq.init_app(app)
    async with app.app_context():
        await job_funcs.decorated_add.enqueue(1, 2, job_id="deco", unique=True)

        with pytest.raises(DuplicateJobError):
            await job_funcs.decorated_add.enqueue(1, 2, job_id="deco", unique=True)
        await job_funcs.rq.state().pools.aclose()


@pytest.fixture
async def eager_rq(make_quart_app: Callable[..., Quart]) -> AsyncIterator[AsyncRQ]:
    app = make_quart_app(RQ_ASYNC=False)
    rq = AsyncRQ(app)
    async with app.app_context():
        yield rq
        await rq.state().pools.aclose()


async def test_eager_mode_runs_a_unique_job_once(eager_rq: AsyncRQ) -> None:
    job = await eager_rq.queue.enqueue(tasks.add, 1, 2, job_id="eager", unique=True)

    with pytest.raises(DuplicateJobError):
        await eager_rq.queue.enqueue(tasks.add, 1, 2, job_id="eager", unique=True)

    assert await job.return_value() == 3
