"""saq's side, run in its own venv (saq pins ``redis<8``).

saq's worker runs ``concurrency`` (10 by default) processing loops, each blocking on
BLMOVE from the queued list to the active list. Results are kept as saq does by default
(the job is stored with its result for ``ttl`` 600 s). saq has no bulk enqueue.
"""

from __future__ import annotations

import argparse
import asyncio
import time

import _common
from saq import Queue, Worker
from saq.job import TERMINAL_STATUSES, Status
from saq.queue.redis import RedisQueue


async def noop(ctx: dict[str, object]) -> None:
    """saq passes a context dict first; a no-op coroutine is its native fast path."""


async def sleep_50ms(ctx: dict[str, object]) -> None:
    await asyncio.sleep(0.05)


TASKS = {"noop": noop, "sleep_50ms": sleep_50ms}


async def _queue(args: argparse.Namespace) -> RedisQueue:
    queue = Queue.from_url(args.redis_url)
    assert isinstance(queue, RedisQueue)
    await queue.connect()
    return queue


async def enqueue(args: argparse.Namespace) -> dict[str, object]:
    queue = await _queue(args)
    for _ in range(_common.ENQUEUE_WARMUP):
        await queue.enqueue(args.task)
    start = time.perf_counter()
    for _ in range(args.n):
        await queue.enqueue(args.task)
    return {"n": args.n, "seconds": time.perf_counter() - start}


async def _fill(queue: RedisQueue, task: str, n: int) -> None:
    # Setup only, not timed: 100 enqueues in flight at a time.
    for first in range(0, n, 100):
        await asyncio.gather(*(queue.enqueue(task) for _ in range(min(100, n - first))))


def _drained(queue: RedisQueue):  # type: ignore[no-untyped-def]
    async def done() -> bool:
        # BLMOVE moves an id from queued to active; finishing removes it from active.
        queued, active = await asyncio.gather(queue.count("queued"), queue.count("active"))
        return bool(queued == 0 and active == 0)

    return done


async def drain(args: argparse.Namespace) -> dict[str, object]:
    queue = await _queue(args)
    await _fill(queue, args.task, args.n)
    done = _drained(queue)

    concurrency = _common.concurrency_of(args) or _common.default_of(Worker, "concurrency")
    worker = _common.WorkerProcess(__file__, _common.worker_args(args))
    try:
        finished_at = await _common.await_until(done, args.timeout)
        return _common.drain_result(worker, finished_at, args.n, concurrency, args.baseline)
    finally:
        worker.stop()


async def enqueue_concurrent(args: argparse.Namespace) -> dict[str, object]:
    queue = await _queue(args)
    return await _common.concurrent_calls(lambda: queue.enqueue(args.task), args.n)


async def cpu(args: argparse.Namespace) -> dict[str, object]:
    """Redis CPU of each part of a job's life: enqueue, drain, result read."""
    queue = await _queue(args)
    meter, phases = _common.CpuMeter(args.redis_url), {}
    meter.start()
    jobs = [await queue.enqueue(args.task) for _ in range(args.n)]
    phases["enqueue"] = meter.stop()
    meter.start()
    worker = _common.WorkerProcess(__file__, _common.worker_args(args))
    try:
        await _common.await_until(_drained(queue), args.timeout, _common.CPU_POLL_S)
        phases["drain"] = meter.stop()
    finally:
        worker.stop()
    meter.start()
    for job in jobs:
        assert job is not None
        done = await queue.job(job.key)
        if done is None or done.status != Status.COMPLETE:
            raise RuntimeError(f"no result for job {job.key}")
    phases["read"] = meter.stop()
    return _common.cpu_result(args.n, phases)


async def _keep_subscribed(queue: RedisQueue) -> asyncio.Task[None]:
    """Hold one listener open so saq's pubsub multiplexer stays subscribed.

    Without it saq unsubscribes after every wait and re-subscribes in a background task,
    so a fast job's "complete" notice can arrive before the subscription does.
    """
    task = asyncio.create_task(queue.listen(["bench-keepalive"], lambda *_: False, timeout=None))
    await asyncio.sleep(0.1)
    return task


async def _apply(queue: RedisQueue, task: str, key: str) -> None:
    """Enqueue and wait for the terminal status, subscribed before the enqueue."""

    def finished(_key: str, status: Status) -> bool:
        return status in TERMINAL_STATUSES

    listener = asyncio.create_task(queue.listen([key], finished, timeout=5))
    await asyncio.sleep(0)  # let the listener register its channel first
    await queue.enqueue(task, key=key)
    await listener


async def latency(args: argparse.Namespace) -> dict[str, object]:
    queue = await _queue(args)
    keeper = await _keep_subscribed(queue)
    worker = _common.WorkerProcess(__file__, _common.worker_args(args, "default"))
    try:
        samples = []
        for i in range(args.n + _common.LATENCY_WARMUP):
            start = time.perf_counter()
            await _apply(queue, args.task, f"latency-{i}")
            if i >= _common.LATENCY_WARMUP:
                samples.append(time.perf_counter() - start)
        return _common.latency_result(samples)
    finally:
        keeper.cancel()
        worker.stop()


async def worker(args: argparse.Namespace) -> None:
    _common.quiet_logging()
    queue = await _queue(args)
    concurrency = _common.concurrency_of(args)
    extra = {} if concurrency is None else {"concurrency": concurrency}
    w = Worker(queue, [TASKS[args.task]], **extra)
    _common.announce_ready()
    await w.start()


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
