"""taskiq's side with taskiq-redis's ``RedisStreamBroker``, run in its own venv.

The stream broker is the one taskiq-redis recommends: a consumer group over one Redis
stream, each message acknowledged once its task has run, so a killed worker's messages are
delivered again. The worker is taskiq's receiver run in one process with
``run_receiver_task`` (``max_async_tasks`` 100 by default, as the ``taskiq worker`` CLI,
which would also start 2 processes). taskiq stores no results by default, so, as for
dramatiq, only the latency and Redis CPU scenarios add ``RedisAsyncResultBackend``.
taskiq has no bulk enqueue and no queue priorities.
"""

from __future__ import annotations

import argparse
import asyncio
import time

import _common
from redis.asyncio import Redis
from taskiq import AsyncBroker, AsyncTaskiqDecoratedTask
from taskiq.api import run_receiver_task
from taskiq_redis import RedisAsyncResultBackend, RedisStreamBroker

STREAM = GROUP = "taskiq"  # RedisStreamBroker's default stream and consumer group


async def noop() -> None:
    """A no-op coroutine: an asyncio worker's native fast path."""


async def sleep_50ms() -> None:
    await asyncio.sleep(0.05)


def _broker(args: argparse.Namespace) -> tuple[AsyncBroker, AsyncTaskiqDecoratedTask]:  # type: ignore[type-arg]
    """The broker and the one task this run needs, the same in side and worker."""
    broker: AsyncBroker = RedisStreamBroker(url=args.redis_url)
    if args.results:
        broker = broker.with_result_backend(RedisAsyncResultBackend(args.redis_url))
    fn = {"noop": noop, "sleep_50ms": sleep_50ms}[args.task]
    return broker, broker.task(task_name=args.task)(fn)


async def _started(args: argparse.Namespace) -> tuple[AsyncBroker, AsyncTaskiqDecoratedTask]:  # type: ignore[type-arg]
    broker, task = _broker(args)
    await broker.startup()  # creates the consumer group, which reads what comes after it
    return broker, task


async def enqueue(args: argparse.Namespace) -> dict[str, object]:
    _, task = await _started(args)
    for _ in range(_common.ENQUEUE_WARMUP):
        await task.kiq()
    start = time.perf_counter()
    for _ in range(args.n):
        await task.kiq()
    return {"n": args.n, "seconds": time.perf_counter() - start}


async def enqueue_concurrent(args: argparse.Namespace) -> dict[str, object]:
    _, task = await _started(args)
    return await _common.concurrent_calls(task.kiq, args.n)


def _drained(redis: Redis, n: int):  # type: ignore[no-untyped-def]
    async def done() -> bool:
        # Every entry read by the group and none pending: every message acknowledged.
        for group in await redis.xinfo_groups(STREAM):
            if group["name"] == GROUP.encode():
                read = group["entries-read"] or 0  # None until the first read
                return bool(group["pending"] == 0 and read >= n)
        return False

    return done


async def drain(args: argparse.Namespace) -> dict[str, object]:
    _, task = await _started(args)
    await _fill(task, args.n)
    redis = Redis.from_url(args.redis_url)
    concurrency = _common.concurrency_of(args) or _common.default_of(
        run_receiver_task, "max_async_tasks"
    )
    worker = _common.WorkerProcess(__file__, _common.worker_args(args))
    try:
        finished_at = await _common.await_until(_drained(redis, args.n), args.timeout)
        return _common.drain_result(worker, finished_at, args.n, concurrency, args.baseline)
    finally:
        worker.stop()


async def _fill(task: AsyncTaskiqDecoratedTask, n: int) -> None:  # type: ignore[type-arg]
    # Setup only, not timed: 100 enqueues in flight at a time.
    for first in range(0, n, 100):
        await asyncio.gather(*(task.kiq() for _ in range(min(100, n - first))))


async def cpu(args: argparse.Namespace) -> dict[str, object]:
    """Redis CPU of each part of a job's life, with the Redis result backend."""
    args.results = True
    _, task = await _started(args)
    meter, phases = _common.CpuMeter(args.redis_url), {}
    meter.start()
    sent = [await task.kiq() for _ in range(args.n)]
    phases["enqueue"] = meter.stop()
    meter.start()
    worker = _common.WorkerProcess(__file__, _common.worker_args(args))
    try:
        redis = Redis.from_url(args.redis_url)
        await _common.await_until(_drained(redis, args.n), args.timeout, _common.CPU_POLL_S)
        phases["drain"] = meter.stop()
    finally:
        worker.stop()
    meter.start()
    for one in sent:
        result = await one.get_result()
        if result.is_err:
            raise RuntimeError(f"task {one.task_id} failed: {result.error}")
    phases["read"] = meter.stop()
    return _common.cpu_result(args.n, phases)


async def latency(args: argparse.Namespace) -> dict[str, object]:
    args.results = True
    _, task = await _started(args)
    worker = _common.WorkerProcess(__file__, _common.worker_args(args, "default"))
    try:
        samples = []
        for i in range(args.n + _common.LATENCY_WARMUP):
            start = time.perf_counter()
            sent = await task.kiq()
            # A 5 ms client poll, so the number is taskiq's worker and not our waiting.
            await sent.wait_result(check_interval=0.005, timeout=5)
            if i >= _common.LATENCY_WARMUP:
                samples.append(time.perf_counter() - start)
        return _common.latency_result(samples)
    finally:
        worker.stop()


async def worker(args: argparse.Namespace) -> None:
    _common.quiet_logging()
    broker, _ = await _started(args)
    concurrency = _common.concurrency_of(args)
    extra = {} if concurrency is None else {"max_async_tasks": concurrency}
    _common.announce_ready()
    await run_receiver_task(broker, **extra)


if __name__ == "__main__":
    _common.run(
        {
            "enqueue": enqueue,
            "enqueue_concurrent": enqueue_concurrent,
            "drain": drain,
            "cpu": cpu,
            "latency": latency,
            "worker": worker,
        }
    )
