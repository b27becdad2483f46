"""streaq's side, run in its own venv (streaq talks to Redis through coredis, not redis-py).

streaq keeps one Redis stream per priority, read by a consumer group; its worker runs
``concurrency`` (16 by default) tasks at once and prefetches as many again. Results are
kept as streaq does by default (a result key per task for 5 minutes). Its
``enqueue_many`` is a non-transactional pipeline. The latency-under-load row uses two
priorities, ``default`` and ``high``, which side and worker both declare.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

import _common
from streaq import Worker

RESULTS_SET = "streaq:default:index:results"  # streaq's sorted set of stored results


def _worker(args: argparse.Namespace, concurrency: int | None = None) -> tuple[Worker, Any]:
    """The worker object (side and worker build the same one) and the run's task."""
    priorities = None if args.queue == "default" else ["default", args.queue]
    options: dict[str, Any] = {} if concurrency is None else {"concurrency": concurrency}
    worker = Worker(redis_url=args.redis_url, priorities=priorities, **options)

    @worker.task
    async def noop() -> None:
        """A no-op coroutine: an asyncio worker's native fast path."""

    @worker.task
    async def sleep_50ms() -> None:
        await asyncio.sleep(0.05)

    return worker, {"noop": noop, "sleep_50ms": sleep_50ms}[args.task]


def _drained(worker: Worker, n: int):  # type: ignore[no-untyped-def]
    async def done() -> bool:
        return bool(await worker.redis.zcard(RESULTS_SET) >= n)

    return done


async def enqueue(args: argparse.Namespace) -> dict[str, object]:
    worker, task = _worker(args)
    async with worker:
        for _ in range(_common.ENQUEUE_WARMUP):
            await task.enqueue()
        start = time.perf_counter()
        for _ in range(args.n):
            await task.enqueue()
        return {"n": args.n, "seconds": time.perf_counter() - start}


async def enqueue_concurrent(args: argparse.Namespace) -> dict[str, object]:
    worker, task = _worker(args)
    async with worker:
        return await _common.concurrent_calls(task.enqueue, args.n)


async def _bulk(worker: Worker, task: Any, n: int) -> None:
    await worker.enqueue_many([task.enqueue() for _ in range(n)])


async def enqueue_bulk(args: argparse.Namespace) -> dict[str, object]:
    worker, task = _worker(args)
    async with worker:
        await _bulk(worker, task, _common.ENQUEUE_WARMUP)
        start = time.perf_counter()
        await _bulk(worker, task, args.n)
        return {"n": args.n, "seconds": time.perf_counter() - start}


async def drain(args: argparse.Namespace) -> dict[str, object]:
    worker, task = _worker(args)
    async with worker:
        await _bulk(worker, task, args.n)
        concurrency = _common.concurrency_of(args) or _common.default_of(Worker, "concurrency")
        process = _common.WorkerProcess(__file__, _common.worker_args(args))
        try:
            finished_at = await _common.await_until(_drained(worker, args.n), args.timeout)
            return _common.drain_result(process, finished_at, args.n, concurrency, args.baseline)
        finally:
            process.stop()


async def cpu(args: argparse.Namespace) -> dict[str, object]:
    """Redis CPU of each part of a job's life: enqueue, drain, result read."""
    worker, task = _worker(args)
    async with worker:
        meter, phases = _common.CpuMeter(args.redis_url), {}
        meter.start()
        sent = [await task.enqueue() for _ in range(args.n)]
        phases["enqueue"] = meter.stop()
        meter.start()
        process = _common.WorkerProcess(__file__, _common.worker_args(args))
        try:
            done = _drained(worker, args.n)
            await _common.await_until(done, args.timeout, _common.CPU_POLL_S)
            phases["drain"] = meter.stop()
        finally:
            process.stop()
        meter.start()
        for one in sent:
            if not (await one.result(timeout=5)).success:
                raise RuntimeError(f"task {one.id} failed")
        phases["read"] = meter.stop()
        return _common.cpu_result(args.n, phases)


async def latency(args: argparse.Namespace) -> dict[str, object]:
    worker, task = _worker(args)
    async with worker:
        process = _common.WorkerProcess(__file__, _common.worker_args(args, "default"))
        try:
            samples = []
            for i in range(args.n + _common.LATENCY_WARMUP):
                start = time.perf_counter()
                sent = await task.enqueue()
                await sent.result(timeout=5)  # subscribes, then reads the result key
                if i >= _common.LATENCY_WARMUP:
                    samples.append(time.perf_counter() - start)
            return _common.latency_result(samples)
        finally:
            process.stop()


async def latency_loaded(args: argparse.Namespace) -> dict[str, object]:
    """Single tasks at the high priority while one worker drains ``n`` at the default."""
    worker, task = _worker(args)
    async with worker:
        await _bulk(worker, task, args.n)
        process = _common.WorkerProcess(__file__, _common.worker_args(args, "default"))
        try:
            samples, warm = [], _common.LATENCY_WARMUP  # not timed: the worker is starting
            deadline = time.monotonic() + _common.LOADED_BUDGET_S
            while len(samples) < _common.LOADED_SAMPLES and time.monotonic() < deadline:
                start = time.perf_counter()
                sent = await task.enqueue().start(priority=args.queue)
                await sent.result(timeout=5)
                took = time.perf_counter() - start
                if await worker.queue_size() == 0:
                    break  # the backlog is gone: later samples would not be under load
                if warm:
                    warm -= 1
                else:
                    samples.append(took)
            return {**_common.latency_result(samples), "backlog_left": await worker.queue_size()}
        finally:
            process.stop()


def worker(args: argparse.Namespace) -> None:
    _common.quiet_logging()
    w, _ = _worker(args, _common.concurrency_of(args))
    _common.announce_ready()
    w.run_sync()


if __name__ == "__main__":
    _common.run(
        {
            "enqueue": enqueue,
            "enqueue_concurrent": enqueue_concurrent,
            "enqueue_bulk": enqueue_bulk,
            "drain": drain,
            "cpu": cpu,
            "latency": latency,
            "latency_loaded": latency_loaded,
            "worker": worker,
        }
    )
