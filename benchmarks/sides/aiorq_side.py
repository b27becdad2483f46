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


def _drained(q, n: int, queue: str = "default"):  # type: ignore[no-untyped-def]
    """``done()`` for a drain: ``n`` jobs of ``queue`` finished (raises if one failed)."""
    redis = q.connection
    finished, failed = keys.finished(queue), keys.failed(queue)

    async def done() -> bool:
        async with redis.pipeline(transaction=False) as pipe:
            ok, bad = await pipe.zcard(finished).zcard(failed).execute()
        if bad:
            raise RuntimeError(f"{bad} aiorq_flask jobs failed")
        return bool(ok >= n)

    return done


async def drain(args: argparse.Namespace) -> dict[str, object]:
    q = await _queue(args)
    await _bulk(q, TASKS[args.task], args.n)
    done = _drained(q, args.n)
    worker = _common.WorkerProcess(__file__, _common.worker_args(args), env=_env(args))
    try:
        finished_at = await _common.await_until(done, args.timeout)
        return _common.drain_result(worker, finished_at, args.n, _concurrency(args), args.baseline)
    finally:
        worker.stop()


async def enqueue_concurrent(args: argparse.Namespace) -> dict[str, object]:
    q = await _queue(args)
    task = TASKS[args.task]
    return await _common.concurrent_calls(lambda: q.enqueue(task), args.n)


async def cpu(args: argparse.Namespace) -> dict[str, object]:
    """Redis CPU of each part of a job's life: enqueue, drain, result read."""
    q = await _queue(args)
    meter, phases = _common.CpuMeter(args.redis_url), {}
    meter.start()
    jobs = [await q.enqueue(TASKS[args.task]) for _ in range(args.n)]
    phases["enqueue"] = meter.stop()
    meter.start()
    worker = _common.WorkerProcess(__file__, _common.worker_args(args), env=_env(args))
    try:
        await _common.await_until(_drained(q, args.n), args.timeout, _common.CPU_POLL_S)
        phases["drain"] = meter.stop()
    finally:
        worker.stop()
    meter.start()
    for job in jobs:
        if await job.latest_result() is None:
            raise RuntimeError(f"no result for job {job.id}")
    phases["read"] = meter.stop()
    return {**_common.cpu_result(args.n, phases), "scripts": await _script_split(args, q)}


async def _script_split(args: argparse.Namespace, q) -> dict[str, float]:  # type: ignore[no-untyped-def]
    """µs inside Redis per job for each script, and its calls per job, from SLOWLOG with
    every command logged, in a second, smaller round (logging costs CPU itself). Redis 7
    logs the commands a script runs as well: they are in their script's time, so only
    EVALSHA entries are counted."""
    from aiorq_flask import _scripts

    names = {
        script.sha: f"{script.name}.lua"
        for script in vars(_scripts).values()
        if isinstance(script, _scripts.Script)
    }
    n = max(100, args.n // 4)
    redis = q.connection
    await redis.config_set("slowlog-max-len", 1_000_000)
    await redis.config_set("slowlog-log-slower-than", 0)
    await redis.slowlog_reset()
    try:
        jobs = [await q.enqueue(TASKS[args.task]) for _ in range(n)]
        worker = _common.WorkerProcess(__file__, _common.worker_args(args), env=_env(args))
        try:
            done = _drained(q, args.n + n)  # the first round's jobs are in the registry too
            await _common.await_until(done, args.timeout, _common.CPU_POLL_S)
        finally:
            worker.stop()
        for job in jobs:
            await job.latest_result()
        entries = await redis.slowlog_get(-1)
    finally:
        await redis.config_set("slowlog-log-slower-than", 10_000)  # Redis's defaults
        await redis.config_set("slowlog-max-len", 128)
        await redis.slowlog_reset()
    split: dict[str, float] = {}
    for entry in entries:
        command = entry["command"].split()[:2]
        if command[0] == b"EVALSHA":
            name = names.get(command[1].decode(), "other scripts")
            split[name] = split.get(name, 0.0) + entry["duration"] / n
            split[f"{name} calls"] = split.get(f"{name} calls", 0.0) + 1 / n
    return split


async def fleet(args: argparse.Namespace) -> dict[str, object]:
    """``--workers`` worker processes drain ``n`` jobs together."""
    q = await _queue(args)
    await _bulk(q, TASKS[args.task], args.n)
    meter = _common.CpuMeter(args.redis_url)
    meter.start()
    workers = _common.start_workers(
        __file__, _common.worker_args(args), args.workers, env=_env(args)
    )
    try:
        finished_at = await _common.await_until(_drained(q, args.n), args.timeout)
        phase = meter.stop()
    finally:
        for w in workers:
            w.stop()
    started = min(w.ready_at for w in workers)
    return {
        "n": args.n,
        "seconds": finished_at - started,
        "workers": args.workers,
        "cpu_us_per_job": float(phase["cpu_us"]) / args.n,  # type: ignore[arg-type]
    }


async def latency_loaded(args: argparse.Namespace) -> dict[str, object]:
    """Single jobs on the high queue while one worker drains ``n`` jobs on ``default``."""
    app, rq = _app(args)
    async with app.app_context():
        high, low = rq.get_queue(args.queue), rq.queue
    await _bulk(low, TASKS[args.task], args.n)
    worker_args = _common.worker_args(args, "default")
    worker = _common.WorkerProcess(__file__, worker_args, env=_env(args))
    try:
        samples, warm = [], _common.LATENCY_WARMUP  # not timed: the worker is starting
        deadline = time.monotonic() + _common.LOADED_BUDGET_S
        while len(samples) < _common.LOADED_SAMPLES and time.monotonic() < deadline:
            start = time.perf_counter()
            job = await high.enqueue(TASKS[args.task])
            if await job.latest_result(timeout=5) is None:
                raise TimeoutError(f"no result for job {job.id}")
            took = time.perf_counter() - start
            if await low.count() == 0:
                break  # the backlog is gone: later samples would not be under load
            if warm:
                warm -= 1
            else:
                samples.append(took)
        return {**_common.latency_result(samples), "backlog_left": await low.count()}
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
    queues = ["default"] if args.queue == "default" else [args.queue, "default"]
    w = rq.make_worker(connection="default", app=app, queues=queues, **options)
    _common.announce_ready()
    await w.work()


def baseline(args: argparse.Namespace) -> None:
    """What a web process has imported: the app module (Quart, aiorq_flask)."""
    _app(args)


if __name__ == "__main__":
    _common.run(
        {
            "enqueue": enqueue,
            "enqueue_bulk": enqueue_bulk,
            "enqueue_concurrent": enqueue_concurrent,
            "drain": drain,
            "cpu": cpu,
            "fleet": fleet,
            "latency": latency,
            "latency_loaded": latency_loaded,
            "worker": worker,
            "baseline": baseline,
        }
    )
