"""What every side script shares: its command line, its result line, and worker processes.

A side script runs one scenario for one library inside that library's own interpreter
(a peer's venv, or the suite's for aiorq_flask), so this module is stdlib-only and is
imported as a top-level module from the script's own folder.

Timing rule, the same for every library: a drain starts when the worker process says
``READY <monotonic seconds>`` on stdout, just before it enters its work loop, and ends
when the side, polling Redis every ``POLL_S``, sees the last job finished. Interpreter
start-up and imports are excluded; CLOCK_MONOTONIC is system-wide on Linux, so the two
processes' clocks agree.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import inspect
import json
import logging
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import IO

POLL_S = 0.005
ENQUEUE_WARMUP = 100  # untimed enqueues first: connections, scripts, code paths warmed
LATENCY_WARMUP = 3  # jobs run before the latency samples, to warm worker and connections
READY_TIMEOUT_S = 30.0
RESULT_PREFIX = "RESULT "
_PR_SET_PDEATHSIG = 1


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse ``SCENARIO --redis-url URL [--n N] [--concurrency C] [--task T] [--timeout S]``.

    ``--concurrency default`` means "whatever the library does when not told".
    """
    parser = argparse.ArgumentParser()
    parser.add_argument("scenario")
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--concurrency", default="default")
    parser.add_argument("--task", default="noop")
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("--results", action="store_true", help="worker stores results (dramatiq)")
    return parser.parse_args(argv)


def concurrency_of(args: argparse.Namespace) -> int | None:
    """Return the requested concurrency, or None for the library's default."""
    return None if args.concurrency == "default" else int(args.concurrency)


def emit(result: dict[str, object]) -> None:
    """Print the one line the suite reads back: ``RESULT {json}``."""
    print(RESULT_PREFIX + json.dumps(result), flush=True)


def quiet_logging() -> None:
    """Keep per-job INFO lines out of every worker, so logging is not what we time."""
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)


def announce_ready() -> None:
    """Tell the side the worker is about to enter its loop; call it last before the loop."""
    print(f"READY {time.monotonic()!r}", flush=True)


# Looked up before any fork, so the child only makes one libc call.
_prctl = ctypes.CDLL(None, use_errno=True).prctl


def _die_with_parent() -> None:
    # If the side is killed (suite timeout), its worker must not outlive it.
    _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _discard(stream: IO[bytes]) -> None:
    while stream.read1(65536):
        pass


class WorkerProcess:
    """A worker subprocess running this same script with the ``worker`` scenario.

    It shares the side's process group, so the suite's group kill takes it too, and it
    gets SIGKILL if the side dies first. Its stderr goes to a log file, never to a pipe
    that could fill up and stall it.
    """

    def __init__(self, script: str, worker_args: list[str], env: dict[str, str] | None = None):
        log_path = Path(os.environ.get("BENCH_LOG_DIR", "/tmp")) / f"{Path(script).stem}.log"
        self.log = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, script, "worker", *worker_args],
            stdout=subprocess.PIPE,
            stderr=self.log,
            env=env,
            preexec_fn=_die_with_parent,
        )
        self.ready_at = self._wait_ready()

    def _wait_ready(self) -> float:
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], READY_TIMEOUT_S)
        line = self.proc.stdout.readline().decode() if ready else ""
        if not line.startswith("READY "):
            self.stop()
            raise RuntimeError(f"worker did not start (got {line!r}); see {self.log.name}")
        # Keep reading, so a worker that prints after READY never blocks on a full pipe.
        threading.Thread(target=_discard, args=(self.proc.stdout,), daemon=True).start()
        return float(line.split()[1])

    @property
    def pid(self) -> int:
        return self.proc.pid

    def peak_rss_kib(self) -> int:
        """Return VmHWM (peak resident set) of the worker process, in KiB."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
        raise RuntimeError(f"no VmHWM for pid {self.pid}")

    def stop(self) -> None:
        """SIGKILL the worker: nothing after the measurement needs a graceful shutdown."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def wait_until(done: Callable[[], bool], timeout: float) -> float:
    """Poll ``done`` every POLL_S; return the monotonic time it first held.

    Raises TimeoutError after ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise TimeoutError(f"not done after {timeout:.0f} s")
        time.sleep(POLL_S)
    return time.monotonic()


async def await_until(done: Callable[[], Awaitable[bool]], timeout: float) -> float:
    """The asyncio twin of :func:`wait_until`."""
    deadline = time.monotonic() + timeout
    while not await done():
        if time.monotonic() > deadline:
            raise TimeoutError(f"not done after {timeout:.0f} s")
        await asyncio.sleep(POLL_S)
    return time.monotonic()


def drain_result(
    worker: WorkerProcess, finished_at: float, n: int, concurrency: int
) -> dict[str, object]:
    """A drain's result: seconds from READY to the last job, the worker's peak RSS, and
    the concurrency it actually ran at (the library's own default when none was asked)."""
    return {
        "n": n,
        "seconds": finished_at - worker.ready_at,
        "rss_kib": worker.peak_rss_kib(),
        "concurrency": concurrency,
    }


def default_of(func: Callable[..., object], parameter: str) -> int:
    """The default value of ``parameter`` in ``func``'s signature, read from the library."""
    return int(inspect.signature(func).parameters[parameter].default)


def latency_result(samples_s: list[float]) -> dict[str, object]:
    """p50 and p99 (nearest rank) of enqueue-to-result samples, in ms."""
    ordered = sorted(samples_s)

    def rank(q: float) -> float:
        index = max(0, min(len(ordered) - 1, round(q * len(ordered)) - 1))
        return ordered[index] * 1000

    return {"n": len(ordered), "p50_ms": rank(0.50), "p99_ms": rank(0.99), "max_ms": rank(1.0)}


def worker_args(args: argparse.Namespace, concurrency: str | None = None) -> list[str]:
    """The command line a side passes on to its ``worker`` scenario."""
    out = ["--redis-url", args.redis_url, "--task", args.task]
    out += ["--concurrency", concurrency or args.concurrency]
    if args.results:
        out.append("--results")
    return out


def run(scenarios: dict[str, Callable[[argparse.Namespace], object]]) -> None:
    """Dispatch to ``scenarios[args.scenario]``; emit its dict unless it is the worker."""
    args = parse_args()
    result = scenarios[args.scenario](args)
    if asyncio.iscoroutine(result):
        result = asyncio.run(result)
    if args.scenario != "worker":
        assert isinstance(result, dict)
        emit(result)
