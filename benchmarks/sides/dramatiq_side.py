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


def drain(args: argparse.Namespace) -> dict[str, object]:
    actor = _actor(args)
    for _ in range(args.n):
        actor.send()
    client = actor.broker.client  # type: ignore[attr-defined]
    messages = f"{actor.broker.namespace}:default.msgs"  # type: ignore[attr-defined]

    def done() -> bool:
        # A message stays in the queue's hash until the worker acks it.
        return client.hlen(messages) == 0

    threads = _common.concurrency_of(args) or _common.default_of(dramatiq.Worker, "worker_threads")
    worker = _common.WorkerProcess(__file__, _common.worker_args(args))
    try:
        finished_at = _common.wait_until(done, args.timeout)
        return _common.drain_result(worker, finished_at, args.n, threads)
    finally:
        worker.stop()


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
    _common.run({"enqueue": enqueue, "drain": drain, "latency": latency, "worker": worker})
