"""How a live worker keeps its jobs and its registration through what Redis loses or others
take, run in-process against a real redis-server with a short heartbeat.

The promise: a job runs again only if the worker running it died. Each test breaks one
record in Redis the way an outage, a lost reply or another worker's sweep would, and
checks that the worker repairs it without running a job twice or losing one.
"""

from __future__ import annotations

import asyncio
import base64
import zlib
from collections.abc import AsyncIterator

import pytest
import redis

from aiorq_flask import AsyncRQ, Job, _scripts
from aiorq_flask.job import epoch_ts
from aiorq_flask.worker import Worker

from .apps.worker_support import async_wait_until, burst, serving, status

HEARTBEAT = 0.2
RUNS = "recovery:runs"


@pytest.fixture
async def worker(quart_rq: AsyncRQ) -> AsyncIterator[Worker]:
    yield quart_rq.make_worker(heartbeat=HEARTBEAT, grace_period=5)


async def slow_job(quart_rq: AsyncRQ, redis_url: str, value: str, seconds: float = 1.0) -> Job:
    return await quart_rq.queue.enqueue(
        "tests.worker_jobs.async_record", redis_url, RUNS, value, seconds
    )


def runs(client: redis.Redis) -> list[bytes]:
    return list(client.lrange(RUNS, 0, -1))


def member_of(client: redis.Redis, job_id: str) -> bytes:
    [member] = [m for m in client.zrange("rq:wip:default", 0, -1) if m.startswith(job_id.encode())]
    return member


async def test_a_worker_whose_registration_expired_registers_again_in_full(
    worker: Worker, sync_redis: redis.Redis
) -> None:
    async with serving(worker, sync_redis):
        key = f"rq:worker:{worker.name}"
        birth = sync_redis.hget(key, "birth")
        sync_redis.delete(key)
        sync_redis.srem("rq:workers", key)
        sync_redis.srem("rq:workers:default", key)

        fields = await async_wait_until(lambda: sync_redis.hgetall(key), what="registration")

        assert fields[b"birth"] == birth
        assert fields[b"queues"] == b"high,default,low"
        assert fields[b"pid"] and fields[b"hostname"]
        assert sync_redis.sismember("rq:workers", key)
        for queue in ("high", "default", "low"):
            assert sync_redis.sismember(f"rq:workers:{queue}", key)


async def test_a_sweep_leaves_a_live_workers_expired_booking_alone(
    quart_rq: AsyncRQ, worker: Worker, sync_redis: redis.Redis, redis_url: str
) -> None:
    job = await slow_job(quart_rq, redis_url, "once", seconds=1.5)
    async with serving(worker, sync_redis):
        await async_wait_until(lambda: status(sync_redis, job.id) == "started")
        member = member_of(sync_redis, job.id)
        sync_redis.zadd("rq:wip:default", {member: 0})  # as if its heartbeats had stopped

        requeued, failed = await _sweep(worker)
        await async_wait_until(lambda: status(sync_redis, job.id) == "finished", timeout=10)

    assert (requeued, failed) == (0, 0)
    assert runs(sync_redis) == [b"once"]


async def test_a_sweep_requeues_a_dead_workers_job_whose_id_holds_a_colon(
    worker: Worker, sync_redis: redis.Redis
) -> None:
    job_id, member = "odd:id", b"odd:id:" + b"0" * 32
    sync_redis.hset(
        f"rq:job:{job_id}",
        mapping={"status": "started", "origin": "default", "worker_name": "dead-worker"},
    )
    sync_redis.zadd("rq:wip:default", {member: 1})
    async with serving(worker, sync_redis):
        await async_wait_until(lambda: sync_redis.zscore("rq:wip:default", member) is None)

    assert status(sync_redis, job_id) in ("queued", "failed")  # requeued, then failed: bad id
    assert sync_redis.hget(f"rq:job:{job_id}", "status") != b"started"


async def test_a_worker_takes_back_its_running_job_that_a_sweep_requeued(
    quart_rq: AsyncRQ, worker: Worker, sync_redis: redis.Redis, redis_url: str
) -> None:
    job = await slow_job(quart_rq, redis_url, "taken back", seconds=1.5)
    async with serving(worker, sync_redis):
        await async_wait_until(lambda: status(sync_redis, job.id) == "started")
        member = member_of(sync_redis, job.id)
        # What a sweep does to a member it takes for abandoned:
        with sync_redis.pipeline() as pipe:
            pipe.zrem("rq:wip:default", member)
            pipe.hset(job.key, "status", "queued")
            pipe.lpush("rq:queue:default", job.id)
            pipe.execute()
        # Whichever comes first, the worker's claim or its heartbeat, finds the job it runs.
        await async_wait_until(lambda: status(sync_redis, job.id) == "finished", timeout=10)
        await asyncio.sleep(HEARTBEAT * 2)  # room for a second run to show up

    assert runs(sync_redis) == [b"taken back"]
    assert sync_redis.llen("rq:queue:default") == 0


async def test_jobs_of_a_claim_whose_reply_was_lost_go_back_on_their_queue(
    quart_rq: AsyncRQ, sync_redis: redis.Redis, redis_url: str
) -> None:
    job = await quart_rq.get_queue("low").enqueue(
        "tests.worker_jobs.async_record", redis_url, RUNS, "orphan"
    )
    worker = quart_rq.make_worker(queues=["default"], heartbeat=HEARTBEAT)
    async with serving(worker, sync_redis):
        # A claim the worker never heard back from: booked in Redis, unknown in memory.
        claimed = await _scripts.CLAIM(
            worker.multiplexer,
            ["rq:queue:low"],
            [worker.name, 1, "1.0", epoch_ts(1.0), 60, "f" * 24, 1 << 20, "low"],
        )
        # Booked (a heartbeat may already have put it back: that is what is tested).
        assert [entry[0] for entry in claimed] == [job.id.encode()], claimed

        await async_wait_until(lambda: status(sync_redis, job.id) == "queued")

    assert sync_redis.lrange("rq:queue:low", 0, -1) == [job.id.encode()]
    assert sync_redis.zcard("rq:wip:low") == 0
    assert runs(sync_redis) == []
    await burst(quart_rq.make_worker(queues=["low"]))
    assert runs(sync_redis) == [b"orphan"]


async def test_an_outcome_sent_twice_is_recorded_once(
    quart_rq: AsyncRQ, worker: Worker, sync_redis: redis.Redis, redis_url: str
) -> None:
    job = await slow_job(quart_rq, redis_url, "recorded", seconds=0)
    async with serving(worker, sync_redis):
        await async_wait_until(lambda: status(sync_redis, job.id) == "finished")
        [(_, fields)] = sync_redis.xrange(f"rq:results:{job.id}")
        exec_id = fields[b"execution_id"]
        batch = [[job.id, exec_id, b"default", "finished", "", "1.0", "0.1"]]
        written = await _scripts.FINISH(
            worker.multiplexer,
            [],
            [worker.name, "2.0", epoch_ts(2.0), 500, 1000, _scripts.pack_argument(batch)],
        )

    assert written == [b"recorded"]
    assert len(sync_redis.xrange(f"rq:results:{job.id}")) == 1
    assert int(sync_redis.hget(f"rq:worker:{worker.name}", "successful_job_count") or 0) <= 1


async def test_cancelling_work_puts_the_running_jobs_back_on_their_queue(
    quart_rq: AsyncRQ, worker: Worker, sync_redis: redis.Redis, redis_url: str
) -> None:
    job = await slow_job(quart_rq, redis_url, "cancelled", seconds=30)
    task = asyncio.create_task(worker.work())
    await async_wait_until(lambda: status(sync_redis, job.id) == "started")

    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 10)

    assert status(sync_redis, job.id) == "queued"
    assert sync_redis.lrange("rq:queue:default", 0, -1) == [job.id.encode()]
    assert sync_redis.zcard("rq:wip:default") == 0
    assert sync_redis.hexists(f"rq:worker:{worker.name}", "death")


async def test_an_id_whose_job_already_finished_is_dropped_not_run_again(
    quart_rq: AsyncRQ, worker: Worker, sync_redis: redis.Redis, redis_url: str
) -> None:
    job = await slow_job(quart_rq, redis_url, "finished once", seconds=0)
    async with serving(worker, sync_redis):
        await async_wait_until(lambda: status(sync_redis, job.id) == "finished")
        before = sync_redis.hgetall(job.key), sync_redis.xrange(f"rq:results:{job.id}")
        sync_redis.rpush("rq:queue:default", job.id)  # a stray second push
        await async_wait_until(lambda: sync_redis.llen("rq:queue:default") == 0)
        after_job = await slow_job(quart_rq, redis_url, "after", seconds=0)
        await async_wait_until(lambda: status(sync_redis, after_job.id) == "finished")

    assert runs(sync_redis) == [b"finished once", b"after"]
    assert (sync_redis.hgetall(job.key), sync_redis.xrange(f"rq:results:{job.id}")) == before


async def test_a_job_with_an_unreadable_field_fails_naming_the_field(
    quart_rq: AsyncRQ, worker: Worker, sync_redis: redis.Redis, redis_url: str
) -> None:
    job = await slow_job(quart_rq, redis_url, "never", seconds=0)
    sync_redis.hset(job.key, "timeout", "soon")
    async with serving(worker, sync_redis):
        await async_wait_until(lambda: status(sync_redis, job.id) == "failed")

    [(_, fields)] = sync_redis.xrange(f"rq:results:{job.id}")
    text = zlib.decompress(base64.b64decode(fields[b"exc_string"])).decode()
    assert "'timeout'" in text and "soon" in text
    assert runs(sync_redis) == []


async def _sweep(worker: Worker) -> tuple[int, int]:
    from aiorq_flask.worker import _bookkeeping

    swept = await _bookkeeping.sweep(worker.multiplexer, worker.queues, worker.failure_ttl)
    return swept.requeued, swept.failed
