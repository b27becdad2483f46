"""rq 3.0's side, run in its own venv: sync client, SimpleWorker or the default forking Worker.

rq has no concurrency inside a worker process. ``--concurrency default`` runs rq's default
``Worker``, which forks a work horse per job; any number runs ``SimpleWorker``, which
performs jobs one at a time in the worker process. Results are kept as rq does by default
(a result stream per job, the finished registry, ``result_ttl`` 500 s).
"""

from __future__ import annotations

import argparse
import time

import _common
from redis import Redis
from rq import Queue, SimpleWorker, Worker
from rq.registry import FailedJobRegistry, FinishedJobRegistry

TASKS = {"noop": "rq_tasks.noop", "sleep_50ms": "rq_tasks.sleep_50ms"}


def _queue(args: argparse.Namespace) -> Queue:
    return Queue("default", connection=Redis.from_url(args.redis_url))


def enqueue(args: argparse.Namespace) -> dict[str, object]:
    q = _queue(args)
    for _ in range(_common.ENQUEUE_WARMUP):
        q.enqueue(TASKS[args.task])
    start = time.perf_counter()
    for _ in range(args.n):
        q.enqueue(TASKS[args.task])
    return {"n": args.n, "seconds": time.perf_counter() - start}


def _bulk(q: Queue, task: str, n: int) -> None:
    q.enqueue_many([Queue.prepare_data(task, args=(), kwargs={}) for _ in range(n)])


def enqueue_bulk(args: argparse.Namespace) -> dict[str, object]:
    q = _queue(args)
    _bulk(q, TASKS[args.task], _common.ENQUEUE_WARMUP)
    start = time.perf_counter()
    _bulk(q, TASKS[args.task], args.n)
    return {"n": args.n, "seconds": time.perf_counter() - start}


def _drained(q: Queue, n: int):  # type: ignore[no-untyped-def]
    """``done()`` for a drain: ``n`` jobs of ``q`` finished (raises if one failed)."""
    finished = FinishedJobRegistry(queue=q).key
    failed = FailedJobRegistry(queue=q).key

    def done() -> bool:
        with q.connection.pipeline(transaction=False) as pipe:
            ok, bad = pipe.zcard(finished).zcard(failed).execute()
        if bad:
            raise RuntimeError(f"{bad} rq jobs failed")
        return bool(ok >= n)

    return done


def drain(args: argparse.Namespace) -> dict[str, object]:
    q = _queue(args)
    _bulk(q, TASKS[args.task], args.n)
    done = _drained(q, args.n)
    worker = _common.WorkerProcess(__file__, _common.worker_args(args))
    try:
        finished_at = _common.wait_until(done, args.timeout)
        return _common.drain_result(worker, finished_at, args.n, 1, args.baseline)
    finally:
        worker.stop()


def cpu(args: argparse.Namespace) -> dict[str, object]:
    """Redis CPU of each part of a job's life; SimpleWorker (the forking Worker's horses
    add no Redis work per job beyond what this does, and would take minutes)."""
    q = _queue(args)
    meter, phases = _common.CpuMeter(args.redis_url), {}
    meter.start()
    jobs = [q.enqueue(TASKS[args.task]) for _ in range(args.n)]
    phases["enqueue"] = meter.stop()
    meter.start()
    worker = _common.WorkerProcess(__file__, _common.worker_args(args, "1"))
    try:
        _common.wait_until(_drained(q, args.n), args.timeout, _common.CPU_POLL_S)
        phases["drain"] = meter.stop()
    finally:
        worker.stop()
    meter.start()
    for job in jobs:
        if job.latest_result() is None:
            raise RuntimeError(f"no result for job {job.id}")
    phases["read"] = meter.stop()
    return _common.cpu_result(args.n, phases)


def latency_loaded(args: argparse.Namespace) -> dict[str, object]:
    """Single jobs on the high queue while one worker drains ``n`` jobs on ``default``."""
    low = _queue(args)
    high = Queue(args.queue, connection=low.connection)
    _bulk(low, TASKS[args.task], args.n)
    worker = _common.WorkerProcess(__file__, _common.worker_args(args, "default"))
    try:
        samples, warm = [], _common.LATENCY_WARMUP  # not timed: the worker is starting
        deadline = time.monotonic() + _common.LOADED_BUDGET_S
        while len(samples) < _common.LOADED_SAMPLES and time.monotonic() < deadline:
            start = time.perf_counter()
            job = high.enqueue(TASKS[args.task])
            if job.latest_result(timeout=5) is None:
                raise TimeoutError(f"no result for job {job.id}")
            took = time.perf_counter() - start
            if low.count == 0:
                break  # the backlog is gone: later samples would not be under load
            if warm:
                warm -= 1
            else:
                samples.append(took)
        return {**_common.latency_result(samples), "backlog_left": low.count}
    finally:
        worker.stop()


def latency(args: argparse.Namespace) -> dict[str, object]:
    q = _queue(args)
    worker = _common.WorkerProcess(__file__, _common.worker_args(args, "default"))
    try:
        samples = []
        for i in range(args.n + _common.LATENCY_WARMUP):
            start = time.perf_counter()
            job = q.enqueue(TASKS[args.task])
            if job.latest_result(timeout=5) is None:
                raise TimeoutError(f"no result for job {job.id}")
            if i >= _common.LATENCY_WARMUP:
                samples.append(time.perf_counter() - start)
        return _common.latency_result(samples)
    finally:
        worker.stop()


def worker(args: argparse.Namespace) -> None:
    _common.quiet_logging()
    cls = Worker if _common.concurrency_of(args) is None else SimpleWorker
    connection = Redis.from_url(args.redis_url)
    names = ["default"] if args.queue == "default" else [args.queue, "default"]
    w = cls([Queue(name, connection=connection) for name in names], connection=connection)
    _common.announce_ready()
    w.work(logging_level="WARNING")


def baseline(args: argparse.Namespace) -> None:
    """What a web process has imported: rq (above) and the job module."""
    import rq_tasks  # noqa: F401


if __name__ == "__main__":
    _common.run(
        {
            "enqueue": enqueue,
            "enqueue_bulk": enqueue_bulk,
            "drain": drain,
            "cpu": cpu,
            "latency": latency,
            "latency_loaded": latency_loaded,
            "worker": worker,
            "baseline": baseline,
        }
    )
