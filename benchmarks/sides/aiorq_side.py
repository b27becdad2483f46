"""aiorq_flask's side, run in the suite's own interpreter with the repo root on sys.path.

The worker is built with ``rq.make_worker(...)`` and run with ``await worker.work()``,
the same object ``python -m aiorq_flask.worker`` runs, so it can say READY right before
its loop. Results are kept as aiorq_flask does by default (RQ's result stream per job and
the finished registry).
"""

from __future__ import annotations

import argparse
import os
import time

import _common

from aiorq_flask import keys

TASKS = {"noop": "benchmarks.tasks.noop", "sleep_50ms": "benchmarks.tasks.sleep_50ms"}


def _app(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    """Import the app only now: it reads the Redis URL from the environment at import."""
    os.environ["AIORQ_BENCH_REDIS_URL"] = args.redis_url
    from benchmarks.aiorq_app import app, rq

    return app, rq


async def _queue(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    app, rq = _app(args)
    async with app.app_context():
        return rq.queue


async def enqueue(args: argparse.Namespace) -> dict[str, object]:
    q = await _queue(args)
    for _ in range(_common.ENQUEUE_WARMUP):
        await q.enqueue(TASKS[args.task])
    start = time.perf_counter()
    for _ in range(args.n):
        await q.enqueue(TASKS[args.task])
    return {"n": args.n, "seconds": time.perf_counter() - start}


async def _bulk(q, task: str, n: int) -> None:  # type: ignore[no-untyped-def]
    await q.enqueue_many([q.prepare_data(task, args=(), kwargs={}) for _ in range(n)])


async def enqueue_bulk(args: argparse.Namespace) -> dict[str, object]:
    q = await _queue(args)
    await _bulk(q, TASKS[args.task], _common.ENQUEUE_WARMUP)
    start = time.perf_counter()
    await _bulk(q, TASKS[args.task], args.n)
    return {"n": args.n, "seconds": time.perf_counter() - start}


async def drain(args: argparse.Namespace) -> dict[str, object]:
    q = await _queue(args)
    await _bulk(q, TASKS[args.task], args.n)
    redis = q.connection
    finished, failed = keys.finished("default"), keys.failed("default")

    async def done() -> bool:
        async with redis.pipeline(transaction=False) as pipe:
            ok, bad = await pipe.zcard(finished).zcard(failed).execute()
        if bad:
            raise RuntimeError(f"{bad} aiorq_flask jobs failed")
        return bool(ok >= args.n)

    worker = _common.WorkerProcess(__file__, _common.worker_args(args), env=_env(args))
    try:
        finished_at = await _common.await_until(done, args.timeout)
        return _common.drain_result(worker, finished_at, args.n, _concurrency(args))
    finally:
        worker.stop()


async def latency(args: argparse.Namespace) -> dict[str, object]:
    q = await _queue(args)
    worker_args = _common.worker_args(args, "default")
    worker = _common.WorkerProcess(__file__, worker_args, env=_env(args))
    try:
        samples = []
        for i in range(args.n + _common.LATENCY_WARMUP):
            start = time.perf_counter()
            job = await q.enqueue(TASKS[args.task])
            if await job.latest_result(timeout=5) is None:
                raise TimeoutError(f"no result for job {job.id}")
            if i >= _common.LATENCY_WARMUP:
                samples.append(time.perf_counter() - start)
        return _common.latency_result(samples)
    finally:
        worker.stop()


def _concurrency(args: argparse.Namespace) -> int:
    from aiorq_flask.worker import Worker

    return _common.concurrency_of(args) or _common.default_of(Worker, "concurrency")


def _env(args: argparse.Namespace) -> dict[str, str]:
    return {**os.environ, "AIORQ_BENCH_REDIS_URL": args.redis_url}


async def worker(args: argparse.Namespace) -> None:
    _common.quiet_logging()
    app, rq = _app(args)
    concurrency = _common.concurrency_of(args)
    options = {} if concurrency is None else {"concurrency": concurrency}
    w = rq.make_worker(connection="default", app=app, **options)
    _common.announce_ready()
    await w.work()


if __name__ == "__main__":
    _common.run(
        {
            "enqueue": enqueue,
            "enqueue_bulk": enqueue_bulk,
            "drain": drain,
            "latency": latency,
            "worker": worker,
        }
    )
