"""``python -m benchmarks.big_payload``: tiny jobs' latency while a 50 MiB job goes through.

Issue 10's goal: other jobs' latency stays under 100 ms while a job with a 50 MiB argument
is enqueued and run. This starts a private ``redis-server`` and one worker process
(``python -m aiorq_flask.worker`` on ``benchmarks.aiorq_app``), then enqueues a tiny job
every ``--every`` ms and times each from the moment it was due (so a blocked event loop
counts) to its result. After a quiet stretch it enqueues the big job, waits for its result,
and keeps the stream going a little longer.

The big job is enqueued from this same event loop (``--big-from loop``: a web app that
enqueues it while serving other requests), or from another process (``--big-from
process``: only what Redis and the worker add). ``--big-from floor`` is the floor any
client of rq's data model pays: another process writes the same payload into a job hash's
``data`` field and reads it back with plain redis-py (``HSET``, ``HGET``), and no worker
touches it; Redis copies the value at each, blocking every client meanwhile. The big
argument is ``--payload random`` (random bytes: incompressible) or ``text`` (a
compressible str). With ``--prepare-in-thread`` the big job is built with
``asyncio.to_thread(queue.prepare_data, ...)`` and written with ``enqueue_many``.

Printed: the tiny jobs' p50, p99 and max before the big job (those done before its enqueue
began) and during the window (those due or waiting at any time from the big enqueue until
``TAIL_S`` after its result), how long the big enqueue call and its job took, whether the
goal was met, this loop's longest stall, the Redis commands that ran over 10 ms (from the
server's slowlog: each blocked every client that long), and a ``RESULT {json}`` line. The
worker's output goes to ``benchmarks/results/logs/big_payload-worker.log``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import redis

from .redis_server import redis_server
from .runner import LOG_DIR, REPO_ROOT

TINY = "benchmarks.tasks.noop"
BIG = "benchmarks.tasks.size"
GOAL_MS = 100.0
QUIET_S = 1.0  # tiny jobs alone, before the big one
TAIL_S = 0.5  # the window goes on this long after the big job's result
WARMUP = 20  # tiny jobs run before the stream: connections, scripts and code paths warm
RESULT_TIMEOUT_S = 60.0
READY_TIMEOUT_S = 30.0
MIB = 1 << 20
SLOW_COMMAND_MS = 10  # Redis commands longer than this are listed (from its slowlog)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.big_payload", description=__doc__)
    parser.add_argument("--mib", type=int, default=50, help="size of the big argument (50)")
    parser.add_argument("--payload", choices=("random", "text"), default="random")
    parser.add_argument("--big-from", choices=("loop", "process", "floor"), default="loop")
    parser.add_argument("--every", type=float, default=10.0, help="ms between tiny jobs (10)")
    parser.add_argument(
        "--prepare-in-thread",
        action="store_true",
        help="build the big job in a thread (prepare_data) and write it with enqueue_many",
    )
    parser.add_argument("--redis-url", help=argparse.SUPPRESS)  # the --enqueue-big child's
    parser.add_argument("--enqueue-big", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def make_payload(kind: str, size: int) -> bytes | str:
    """``size`` bytes of random data, or ``size`` characters of text that zlib halves."""
    if kind == "random":
        return os.urandom(size)
    rng = random.Random(10)
    letters = "abcdefghijklmnopqrstuvwxyz"
    words = ["".join(rng.choices(letters, k=rng.randint(2, 9))) for _ in range(5000)]
    # 1 MiB of text, repeated: zlib's window is 32 KiB, so it never sees the repetition.
    block = " ".join(rng.choices(words, k=MIB // 5))[:MIB]
    return (block * (size // MIB + 1))[:size]


def _queue(redis_url: str) -> Any:
    os.environ["AIORQ_BENCH_REDIS_URL"] = redis_url  # read by the app at import
    from .aiorq_app import app, rq

    return rq.state(app).get_queue("default")


# -- the worker process ---------------------------------------------------------------------------


@contextmanager
def worker_process(redis_url: str) -> Iterator[subprocess.Popen[bytes]]:
    """``python -m aiorq_flask.worker`` on the benchmark app, registered before the block
    starts; stopped (its whole process group) when it ends."""
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "AIORQ_BENCH_REDIS_URL": redis_url, "PYTHONPATH": str(REPO_ROOT)}
    argv = [sys.executable, "-m", "aiorq_flask.worker", "--app", "benchmarks.aiorq_app:app"]
    with open(LOG_DIR / "big_payload-worker.log", "wb") as log:
        process = subprocess.Popen(
            argv,
            cwd=REPO_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        _wait_registered(redis_url, process)
        yield process
    finally:
        _stop(process)


def _wait_registered(redis_url: str, process: subprocess.Popen[bytes]) -> None:
    client = redis.Redis.from_url(redis_url)
    deadline = time.monotonic() + READY_TIMEOUT_S
    try:
        while not client.scard("rq:workers"):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"the worker did not start: see {LOG_DIR}/big_payload-worker.log"
                )
            time.sleep(0.05)  # polling the worker's start-up, with a deadline
    finally:
        client.close()


def _stop(process: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(10)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    except ProcessLookupError:
        process.wait()


# -- the stream of tiny jobs ----------------------------------------------------------------------


class Stream:
    """Tiny jobs due every ``every`` seconds, each timed from when it was due to its result."""

    def __init__(self, queue: Any, every: float) -> None:
        self.queue = queue
        self.every = every
        self.samples: list[tuple[float, float]] = []  # (due, seconds from due to result)
        self._probes: list[asyncio.Task[None]] = []
        self._running = True

    async def run(self) -> None:
        start = time.monotonic()
        due = start
        while self._running:
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)  # pacing the stream
            self._probes.append(asyncio.create_task(self._probe(due)))
            due += self.every

    async def _probe(self, due: float) -> None:
        job = await self.queue.enqueue(TINY)
        if await job.latest_result(timeout=RESULT_TIMEOUT_S) is None:
            raise TimeoutError(f"no result for tiny job {job.id}")
        self.samples.append((due, time.monotonic() - due))

    async def stop(self) -> None:
        self._running = False
        await asyncio.gather(*self._probes)

    def finished_before(self, moment: float) -> list[float]:
        return [latency for due, latency in self.samples if due + latency < moment]

    def overlapping(self, start: float, end: float) -> list[float]:
        """Jobs that were due or waiting at some point between ``start`` and ``end``."""
        return [latency for due, latency in self.samples if due <= end and due + latency >= start]


async def loop_stalls(stalls: list[float]) -> None:
    """Record how late each 1 ms sleep of this loop wakes: the loop's longest stall."""
    while True:
        asleep = time.monotonic()
        await asyncio.sleep(0.001)  # a probe of the loop's responsiveness
        stalls.append(time.monotonic() - asleep - 0.001)


def slow_commands(redis_url: str, since: float) -> list[str]:
    """Redis commands that ran longer than ``SLOW_COMMAND_MS`` (the server's slowlog),
    scripts named by file: each one blocked every other client for that long."""
    from aiorq_flask import _scripts

    names = {
        script.sha: f"{script.name}.lua"
        for script in vars(_scripts).values()
        if isinstance(script, _scripts.Script)
    }
    client = redis.Redis.from_url(redis_url)
    try:
        entries = client.slowlog_get(128)
    finally:
        client.close()
    lines = []
    for entry in sorted(entries, key=lambda e: e["id"]):
        if entry["start_time"] < int(since):
            continue
        words = entry["command"].split(b" ")
        name = words[0].decode(errors="replace")
        if name.upper() == "EVALSHA" and len(words) > 1:
            name = names.get(words[1].decode(errors="replace"), "EVALSHA")
        lines.append(f"{name} {entry['duration'] / 1000:.0f} ms")
    return lines


def summary(latencies: list[float]) -> dict[str, float]:
    """n, p50, p99 and max in ms (nearest rank, as ``sides/_common.latency_result``)."""
    ordered = sorted(latencies)

    def rank(q: float) -> float:
        index = max(0, min(len(ordered) - 1, round(q * len(ordered)) - 1))
        return ordered[index] * 1000 if ordered else float("nan")

    return {"n": len(ordered), "p50_ms": rank(0.5), "p99_ms": rank(0.99), "max_ms": rank(1.0)}


# -- the big job -----------------------------------------------------------------------------------


async def enqueue_big(queue: Any, payload: bytes | str, in_thread: bool) -> dict[str, float]:
    """Enqueue the big job and wait for its result: monotonic times of each step.

    ``in_thread``: build the job in a thread (``prepare_data``) and write it with
    ``enqueue_many``, on a pooled connection rather than the shared one.
    """
    started = time.monotonic()
    if in_thread:
        prepared = await asyncio.to_thread(queue.prepare_data, BIG, (payload,))
        [job] = await queue.enqueue_many([prepared])
    else:
        job = await queue.enqueue(BIG, payload)
    enqueued = time.monotonic()
    result = await job.latest_result(timeout=RESULT_TIMEOUT_S)
    if result is None or result.return_value != len(payload):
        raise RuntimeError(f"the big job did not finish: {result!r}")
    return {"started": started, "enqueued": enqueued, "done": time.monotonic()}


async def enqueue_big_elsewhere(args: argparse.Namespace, redis_url: str) -> dict[str, float]:
    """``enqueue_big`` in a child process (this same script, ``--enqueue-big``)."""
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "benchmarks.big_payload", "--enqueue-big",
        "--redis-url", redis_url, "--mib", str(args.mib), "--payload", args.payload,
        "--big-from", args.big_from,
        *(["--prepare-in-thread"] if args.prepare_in_thread else []),
        cwd=REPO_ROOT, stdout=subprocess.PIPE,
    )  # fmt: skip
    out, _ = await child.communicate()
    if child.returncode:
        raise RuntimeError(f"the --enqueue-big child exited with {child.returncode}")
    times: dict[str, float] = json.loads(out.decode().splitlines()[-1])
    return times


async def child_main(args: argparse.Namespace) -> None:
    payload = make_payload(args.payload, args.mib * MIB)
    if args.big_from == "floor":
        print(json.dumps(write_and_read_plainly(args.redis_url, payload)), flush=True)
        return
    queue = _queue(args.redis_url)
    print(json.dumps(await enqueue_big(queue, payload, args.prepare_in_thread)), flush=True)


def write_and_read_plainly(redis_url: str, payload: bytes | str) -> dict[str, float]:
    """The floor: ``payload`` into a hash's ``data`` field and back, with plain redis-py."""
    client = redis.Redis.from_url(redis_url)
    key = "rq:job:big-payload-floor"
    try:
        started = time.monotonic()
        client.hset(key, "data", payload)
        enqueued = time.monotonic()
        if client.hstrlen(key, "data") != len(payload):
            raise RuntimeError("the floor's HSET did not write the whole payload")
        client.hget(key, "data")
        return {"started": started, "enqueued": enqueued, "done": time.monotonic()}
    finally:
        client.close()


# -- the run ---------------------------------------------------------------------------------------


async def measure(args: argparse.Namespace, redis_url: str) -> dict[str, Any]:
    queue = _queue(redis_url)
    payload = make_payload(args.payload, args.mib * MIB) if args.big_from == "loop" else ""
    for _ in range(WARMUP):
        job = await queue.enqueue(TINY)
        await job.latest_result(timeout=RESULT_TIMEOUT_S)
    stream = Stream(queue, args.every / 1000)
    streaming = asyncio.create_task(stream.run())
    stalls: list[float] = []
    monitor = asyncio.create_task(loop_stalls(stalls))
    await asyncio.sleep(QUIET_S)  # tiny jobs alone for a while
    quiet_stalls = len(stalls)
    since = time.time()
    if args.big_from == "loop":
        big = await enqueue_big(queue, payload, args.prepare_in_thread)
    else:
        big = await enqueue_big_elsewhere(args, redis_url)
    await asyncio.sleep(TAIL_S + 0.2)  # the window's tail, and a little after it
    await stream.stop()
    await streaming
    monitor.cancel()
    before = summary(stream.finished_before(big["started"]))
    during = summary(stream.overlapping(big["started"], big["done"] + TAIL_S))
    return {
        "mib": args.mib,
        "payload": args.payload,
        "big_from": args.big_from,
        "prepare_in_thread": args.prepare_in_thread,
        "before": before,
        "during": during,
        "loop_stall_max_ms": max(stalls[quiet_stalls:], default=0.0) * 1000,
        "slow_redis_commands": slow_commands(redis_url, since),
        "big_enqueue_ms": (big["enqueued"] - big["started"]) * 1000,
        "big_job_ms": (big["done"] - big["started"]) * 1000,
        "goal_met": during["max_ms"] < GOAL_MS,
    }


def _print(result: dict[str, Any]) -> None:
    kind = "random bytes" if result["payload"] == "random" else "compressible text"
    where = {
        "loop": "this loop",
        "process": "another process",
        "floor": "another process with plain redis-py (HSET, HGET: the floor, no worker)",
    }[result["big_from"]]
    how = (
        " (prepared in a thread, written with enqueue_many)" if result["prepare_in_thread"] else ""
    )
    print(f"{result['mib']} MiB of {kind}, enqueued from {where}{how}")
    for phase in ("before", "during"):
        s = result[phase]
        print(
            f"  tiny jobs {phase:6s}: n={s['n']:4d}  p50 {s['p50_ms']:7.1f} ms"
            f"  p99 {s['p99_ms']:7.1f} ms  max {s['max_ms']:7.1f} ms"
        )
    print(
        f"  big job: enqueue call {result['big_enqueue_ms']:.0f} ms, "
        f"enqueue to result {result['big_job_ms']:.0f} ms"
    )
    print(f"  this loop's longest stall: {result['loop_stall_max_ms']:.0f} ms")
    slow = ", ".join(result["slow_redis_commands"]) or "none"
    print(f"  Redis commands over {SLOW_COMMAND_MS} ms (they block every client): {slow}")
    verdict = "met" if result["goal_met"] else "missed"
    print(f"  goal (tiny jobs' max < {GOAL_MS:.0f} ms during the window): {verdict}")
    print("RESULT " + json.dumps(result), flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.enqueue_big:
        asyncio.run(child_main(args))
        return 0
    with redis_server() as url, worker_process(url):
        client = redis.Redis.from_url(url)
        client.config_set("slowlog-log-slower-than", SLOW_COMMAND_MS * 1000)
        client.close()
        result = asyncio.run(measure(args, url))
    _print(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
