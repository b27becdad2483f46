"""dramatiq's side with its Redis broker, run in its own venv.

The worker is ``dramatiq.Worker`` in one process with ``worker_threads`` threads (8 by
default, as the ``dramatiq`` CLI), built directly rather than through the CLI so it is
one process whose readiness and memory we can see. The no-op is a plain function, its
native fast path; the 50 ms sleep is an ``async def`` actor run by the AsyncIO
middleware's event loop thread. dramatiq stores no results by default, so only the
latency scenario adds the Results middleware (Redis backend) to have something to wait on.
dramatiq has no bulk enqueue.
"""

from __future__ import annotations

import argparse
import asyncio
import threading
import time

import _common
import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware import AsyncIO
from dramatiq.results import Results
from dramatiq.results.backends import RedisBackend


def noop() -> None:
    """A plain function: dramatiq's worker threads call it directly."""


async def sleep_50ms() -> None:
    await asyncio.sleep(0.05)


def _actor(args: argparse.Namespace) -> dramatiq.Actor:  # type: ignore[type-arg]
    """Build the broker and the one actor this run needs, the same in side and worker."""
    broker = RedisBroker(url=args.redis_url)
    broker.add_middleware(AsyncIO())
    if args.results:
        broker.add_middleware(Results(backend=RedisBackend(url=args.redis_url)))
    dramatiq.set_broker(broker)
    fn = {"noop": noop, "sleep_50ms": sleep_50ms}[args.task]
    options = {"store_results": True} if args.results else {}
    return dramatiq.actor(fn, queue_name="default", **options)


def enqueue(args: argparse.Namespace) -> dict[str, object]:
    actor = _actor(args)
    for _ in range(_common.ENQUEUE_WARMUP):
        actor.send()
    start = time.perf_counter()
    for _ in range(args.n):
        actor.send()
    return {"n": args.n, "seconds": time.perf_counter() - start}


def _drained(actor: dramatiq.Actor):  # type: ignore[no-untyped-def, type-arg]
    client = actor.broker.client  # type: ignore[attr-defined]
    messages = f"{actor.broker.namespace}:default.msgs"  # type: ignore[attr-defined]

    def done() -> bool:
        # A message stays in the queue's hash until the worker acks it.
        return bool(client.hlen(messages) == 0)

    return done


def drain(args: argparse.Namespace) -> dict[str, object]:
    actor = _actor(args)
    for _ in range(args.n):
        actor.send()
    done = _drained(actor)

    threads = _common.concurrency_of(args) or _common.default_of(dramatiq.Worker, "worker_threads")
    worker = _common.WorkerProcess(__file__, _common.worker_args(args))
    try:
        finished_at = _common.wait_until(done, args.timeout)
        return _common.drain_result(worker, finished_at, args.n, threads, args.baseline)
    finally:
        worker.stop()


def cpu(args: argparse.Namespace) -> dict[str, object]:
    """Redis CPU of each part of a job's life, with the Results middleware so that
    dramatiq stores and reads results as the others do."""
    args.results = True
    actor = _actor(args)
    meter, phases = _common.CpuMeter(args.redis_url), {}
    meter.start()
    messages = [actor.send() for _ in range(args.n)]
    phases["enqueue"] = meter.stop()
    meter.start()
    worker = _common.WorkerProcess(__file__, _common.worker_args(args))
    try:
        _common.wait_until(_drained(actor), args.timeout, _common.CPU_POLL_S)
        phases["drain"] = meter.stop()
    finally:
        worker.stop()
    meter.start()
    for message in messages:
        message.get_result()
    phases["read"] = meter.stop()
    return _common.cpu_result(args.n, phases)


def latency(args: argparse.Namespace) -> dict[str, object]:
    args.results = True
    actor = _actor(args)
    worker = _common.WorkerProcess(__file__, _common.worker_args(args, "default"))
    try:
        samples = []
        for i in range(args.n + _common.LATENCY_WARMUP):
            start = time.perf_counter()
            actor.send().get_result(block=True, timeout=5000)
            if i >= _common.LATENCY_WARMUP:
                samples.append(time.perf_counter() - start)
        return _common.latency_result(samples)
    finally:
        worker.stop()


def worker(args: argparse.Namespace) -> None:
    _common.quiet_logging()
    actor = _actor(args)
    concurrency = _common.concurrency_of(args)
    extra = {} if concurrency is None else {"worker_threads": concurrency}
    w = dramatiq.Worker(actor.broker, **extra)
    _common.announce_ready()
    w.start()
    threading.Event().wait()  # the worker threads run until the side kills this process


if __name__ == "__main__":
    _common.run(
        {"enqueue": enqueue, "drain": drain, "cpu": cpu, "latency": latency, "worker": worker}
    )
