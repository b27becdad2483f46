"""arq's side, run in its own venv (arq pins ``redis<6``).

arq's worker polls its queue (a sorted set) every ``poll_delay`` (0.5 s by default) and
runs up to ``max_jobs`` (10 by default) jobs at once; both are left at their defaults
except ``max_jobs`` when a concurrency is asked for. Results are kept as arq does by
default (a result key per job, ``keep_result`` 3600 s). arq has no bulk enqueue.
"""

from __future__ import annotations

import argparse
import asyncio
import time

import _common
from arq import Worker, create_pool
from arq.connections import ArqRedis, RedisSettings
from arq.constants import default_queue_name


async def noop(ctx: dict[str, object]) -> None:
    """arq passes a context dict first; a no-op coroutine is its native fast path."""


async def sleep_50ms(ctx: dict[str, object]) -> None:
    await asyncio.sleep(0.05)


TASKS = {"noop": noop, "sleep_50ms": sleep_50ms}


async def _pool(args: argparse.Namespace) -> ArqRedis:
    return await create_pool(RedisSettings.from_dsn(args.redis_url))


async def enqueue(args: argparse.Namespace) -> dict[str, object]:
    pool = await _pool(args)
    for _ in range(_common.ENQUEUE_WARMUP):
        await pool.enqueue_job(args.task)
    start = time.perf_counter()
    for _ in range(args.n):
        await pool.enqueue_job(args.task)
    return {"n": args.n, "seconds": time.perf_counter() - start}


async def _fill(pool: ArqRedis, task: str, n: int) -> None:
    # Setup only, not timed: 100 enqueues in flight at a time.
    for first in range(0, n, 100):
        await asyncio.gather(*(pool.enqueue_job(task) for _ in range(min(100, n - first))))


def _drained(pool: ArqRedis):  # type: ignore[no-untyped-def]
    async def done() -> bool:
        # arq removes a job id from its queue only when the job has finished.
        return bool(await pool.zcard(default_queue_name) == 0)

    return done


async def drain(args: argparse.Namespace) -> dict[str, object]:
    pool = await _pool(args)
    await _fill(pool, args.task, args.n)
    done = _drained(pool)

    concurrency = _common.concurrency_of(args) or _common.default_of(Worker, "max_jobs")
    worker = _common.WorkerProcess(__file__, _common.worker_args(args))
    try:
        finished_at = await _common.await_until(done, args.timeout)
        return _common.drain_result(worker, finished_at, args.n, concurrency, args.baseline)
    finally:
        worker.stop()


async def enqueue_concurrent(args: argparse.Namespace) -> dict[str, object]:
    pool = await _pool(args)
    return await _common.concurrent_calls(lambda: pool.enqueue_job(args.task), args.n)


async def cpu(args: argparse.Namespace) -> dict[str, object]:
    """Redis CPU of each part of a job's life: enqueue, drain, result read."""
    pool = await _pool(args)
    meter, phases = _common.CpuMeter(args.redis_url), {}
    meter.start()
    jobs = [await pool.enqueue_job(args.task) for _ in range(args.n)]
    phases["enqueue"] = meter.stop()
    meter.start()
    worker = _common.WorkerProcess(__file__, _common.worker_args(args))
    try:
        await _common.await_until(_drained(pool), args.timeout, _common.CPU_POLL_S)
        phases["drain"] = meter.stop()
    finally:
        worker.stop()
    meter.start()
    for job in jobs:
        assert job is not None
        if await job.result_info() is None:
            raise RuntimeError(f"no result for job {job.job_id}")
    phases["read"] = meter.stop()
    return _common.cpu_result(args.n, phases)


async def latency(args: argparse.Namespace) -> dict[str, object]:
    pool = await _pool(args)
    worker = _common.WorkerProcess(__file__, _common.worker_args(args, "default"))
    try:
        samples = []
        for i in range(args.n + _common.LATENCY_WARMUP):
            start = time.perf_counter()
            job = await pool.enqueue_job(args.task)
            assert job is not None
            # A 5 ms client poll, so the number is arq's worker and not our waiting.
            await job.result(timeout=5, poll_delay=0.005)
            if i >= _common.LATENCY_WARMUP:
                samples.append(time.perf_counter() - start)
        return _common.latency_result(samples)
    finally:
        worker.stop()


def worker(args: argparse.Namespace) -> None:
    _common.quiet_logging()
    concurrency = _common.concurrency_of(args)
    extra = {} if concurrency is None else {"max_jobs": concurrency}
    w = Worker(
        [TASKS[args.task]],
        redis_settings=RedisSettings.from_dsn(args.redis_url),
        **extra,
    )
    _common.announce_ready()
    w.run()


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
