"""Our worker and stock rq 3.0 sharing one Redis.

Jobs enqueued by stock rq run on our worker and read back through rq's ``Job``; rq's
tools (``rq info``, ``Worker.all``, ``send_stop_job_command``) see and steer our worker;
and a fleet of our worker plus a stock ``rq worker`` shares one queue without losing or
repeating a job.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import redis
from rq import Queue as RQQueue
from rq import Worker as RQWorker
from rq.command import send_stop_job_command
from rq.job import Job as RQJob
from rq.job import JobStatus as RQJobStatus

from aiorq_flask import AsyncRQ
from aiorq_flask.serializer import MsgpackSerializer

from .apps.worker_support import (
    BIN,
    ROOT,
    all_have_status,
    async_wait_until,
    burst,
    enqueue_calls,
    is_registered,
    latest_result,
    our_worker,
    serving,
    status,
    stock_worker,
    unique_name,
    wait_until,
    within,
)


def rq_queue(client: redis.Redis, name: str = "default") -> RQQueue:
    return RQQueue(name, connection=client, serializer=MsgpackSerializer)


def rq_fetch(client: redis.Redis, job_id: str) -> RQJob:
    return RQJob.fetch(job_id, connection=client, serializer=MsgpackSerializer)


async def test_job_enqueued_by_stock_rq_finishes_on_our_worker(
    quart_rq: AsyncRQ, sync_redis: redis.Redis
) -> None:
    enqueued = rq_queue(sync_redis).enqueue("tests.tasks.add", 1, 2)

    await burst(quart_rq.make_worker())

    job = rq_fetch(sync_redis, enqueued.id)
    assert job.get_status() == RQJobStatus.FINISHED
    assert job.return_value() == 3


async def test_failing_job_enqueued_by_stock_rq_shows_failed_with_its_traceback(
    quart_rq: AsyncRQ, sync_redis: redis.Redis
) -> None:
    enqueued = rq_queue(sync_redis).enqueue("tests.tasks.fail", "kaput")

    await burst(quart_rq.make_worker())

    job = rq_fetch(sync_redis, enqueued.id)
    assert job.get_status() == RQJobStatus.FAILED
    result = job.latest_result()
    assert result is not None
    assert "Traceback" in result.exc_string
    assert "ValueError: kaput" in result.exc_string


async def test_rq_info_lists_our_running_worker_and_its_queues(
    quart_rq: AsyncRQ, sync_redis: redis.Redis, redis_url: str
) -> None:
    worker = quart_rq.make_worker(name=unique_name("ours"))

    async with serving(worker, sync_redis):
        info = await asyncio.create_subprocess_exec(
            str(BIN / "rq"),
            "info",
            "-u",
            redis_url,
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        output, _ = await within(info.communicate(), 30, "rq info")
    text = output.decode()

    assert info.returncode == 0, text
    [line] = [line for line in text.splitlines() if worker.name in line]
    assert "high, default, low" in line


async def test_rq_worker_all_sees_our_running_worker(
    quart_rq: AsyncRQ, sync_redis: redis.Redis
) -> None:
    worker = quart_rq.make_worker(name=unique_name("ours"))

    async with serving(worker, sync_redis):
        seen = {w.name: w for w in RQWorker.all(connection=sync_redis)}

    assert worker.name in seen
    assert seen[worker.name].queue_names() == ["high", "default", "low"]


async def test_rq_send_stop_job_command_stops_a_running_job(
    quart_rq: AsyncRQ, sync_redis: redis.Redis
) -> None:
    job = await quart_rq.queue.enqueue("tests.tasks.async_sleep", 30)
    worker = quart_rq.make_worker(grace_period=1)

    async with serving(worker, sync_redis):
        await async_wait_until(lambda: status(sync_redis, job.id) == "started", what="the start")
        await async_wait_until(  # a command published before SUBSCRIBE is lost (pub/sub)
            lambda: sync_redis.pubsub_numsub(f"rq:pubsub:{worker.name}")[0][1] == 1,
            what="the worker to subscribe to its command channel",
        )
        send_stop_job_command(sync_redis, job.id, serializer=MsgpackSerializer)
        await async_wait_until(lambda: status(sync_redis, job.id) == "stopped", what="the stop")

    assert rq_fetch(sync_redis, job.id).get_status() == RQJobStatus.STOPPED
    assert sync_redis.zscore("rq:failed:default", job.id) is not None
    assert latest_result(sync_redis, job.id).type == 2
    assert sync_redis.zcard("rq:wip:default") == 0


def test_our_worker_and_a_stock_worker_run_1000_jobs_each_exactly_once(
    tmp_path: Path, redis_url: str, sync_redis: redis.Redis
) -> None:
    """Both workers serve ``default`` while 1,000 jobs arrive; each job RPUSHes its token, so
    a lost job is missing from the list and a repeated one appears twice.

    The stock worker is ``rq.worker.SimpleWorker`` (jobs run in the worker process): the
    default worker forks per job, which would make the test slow, not different.
    """
    ours, stock = unique_name("ours"), unique_name("stock")
    tokens = [str(i) for i in range(1000)]

    with (
        our_worker(tmp_path, redis_url, "--name", ours, "--concurrency", "20") as ours_process,
        stock_worker(tmp_path, redis_url, stock, "default") as stock_process,
    ):
        processes = (ours_process, stock_process)
        wait_until(
            lambda: (
                any(p.popen.poll() is not None for p in processes)
                or (is_registered(sync_redis, ours) and is_registered(sync_redis, stock))
            ),
            timeout=20,
            what="both workers to register",
        )
        for process in processes:
            assert process.popen.poll() is None, process.output()
        ids = enqueue_calls(
            redis_url, "tests.worker_jobs.record", [(redis_url, "tokens", t) for t in tokens]
        )
        wait_until(
            lambda: (
                sync_redis.llen("tokens") >= len(tokens)
                and all_have_status(sync_redis, ids, "finished")
            ),
            timeout=30,
            what=lambda: (
                f"every job to finish ({sync_redis.llen('tokens')} ran):\n"
                f"{ours_process.output()[-3000:]}\n{stock_process.output()[-3000:]}"
            ),
        )

    assert sorted(sync_redis.lrange("tokens", 0, -1)) == sorted(t.encode() for t in tokens)
    counts = [
        int(sync_redis.hget(f"rq:worker:{name}", "successful_job_count") or 0)
        for name in (ours, stock)
    ]
    assert sum(counts) == len(tokens)
    assert min(counts) > 0, f"one worker ran no job: {counts}"
