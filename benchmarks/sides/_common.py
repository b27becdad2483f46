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
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import IO
from urllib.parse import urlsplit

POLL_S = 0.005
ENQUEUE_WARMUP = 100  # untimed enqueues first: connections, scripts, code paths warmed
LATENCY_WARMUP = 3  # jobs run before the latency samples, to warm worker and connections
READY_TIMEOUT_S = 30.0
CPU_POLL_S = 0.05  # a drain measured for Redis CPU polls rarely: the polls cost CPU too
CONCURRENT_TASKS = 100
LOADED_SAMPLES = 200  # single jobs timed on the high queue while a backlog drains...
LOADED_BUDGET_S = 20.0  # ...for this long at most (a slow peer takes fewer samples)
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
    parser.add_argument("--baseline", action="store_true", help="drain: measure the baseline RSS")
    parser.add_argument("--workers", type=int, default=1, help="worker processes (fleet)")
    parser.add_argument("--queue", default="default", help="the queue a worker serves first")
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

    def __init__(
        self,
        script: str,
        worker_args: list[str],
        env: dict[str, str] | None = None,
        wait: bool = True,
    ) -> None:
        log_path = Path(os.environ.get("BENCH_LOG_DIR", "/tmp")) / f"{Path(script).stem}.log"
        self.script, self.env = script, env
        self.redis_url = worker_args[worker_args.index("--redis-url") + 1]
        self.log = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, script, "worker", *worker_args],
            stdout=subprocess.PIPE,
            stderr=self.log,
            env=env,
            preexec_fn=_die_with_parent,
        )
        self.ready_at = self.wait_ready() if wait else 0.0

    def wait_ready(self) -> float:
        """Block until the worker says READY; return when it did (monotonic seconds)."""
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], READY_TIMEOUT_S)
        line = self.proc.stdout.readline().decode() if ready else ""
        if not line.startswith("READY "):
            self.stop()
            raise RuntimeError(f"worker did not start (got {line!r}); see {self.log.name}")
        # Keep reading, so a worker that prints after READY never blocks on a full pipe.
        threading.Thread(target=_discard, args=(self.proc.stdout,), daemon=True).start()
        self.ready_at = float(line.split()[1])
        return self.ready_at

    @property
    def pid(self) -> int:
        return self.proc.pid

    def peak_rss_kib(self) -> int:
        """Return VmHWM (peak resident set) of the worker process, in KiB."""
        return peak_rss_kib(self.pid)

    def stop(self) -> None:
        """SIGKILL the worker: nothing after the measurement needs a graceful shutdown."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def start_workers(
    script: str, worker_args: list[str], count: int, env: dict[str, str] | None = None
) -> list[WorkerProcess]:
    """``count`` workers started together, each READY when this returns."""
    workers = [WorkerProcess(script, worker_args, env, wait=False) for _ in range(count)]
    try:
        for worker in workers:
            worker.wait_ready()
    except BaseException:
        for worker in workers:
            worker.stop()
        raise
    return workers


def wait_until(done: Callable[[], bool], timeout: float, poll: float = POLL_S) -> float:
    """Poll ``done`` every ``poll`` seconds; return the monotonic time it first held.

    Raises TimeoutError after ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise TimeoutError(f"not done after {timeout:.0f} s")
        time.sleep(poll)
    return time.monotonic()


async def await_until(
    done: Callable[[], Awaitable[bool]], timeout: float, poll: float = POLL_S
) -> float:
    """The asyncio twin of :func:`wait_until`."""
    deadline = time.monotonic() + timeout
    while not await done():
        if time.monotonic() > deadline:
            raise TimeoutError(f"not done after {timeout:.0f} s")
        await asyncio.sleep(poll)
    return time.monotonic()


def drain_result(
    worker: WorkerProcess, finished_at: float, n: int, concurrency: int, baseline: bool = False
) -> dict[str, object]:
    """A drain's result: seconds from READY to the last job, the worker's peak RSS, the
    concurrency it actually ran at (the library's own default when none was asked), and
    with ``baseline`` the peak RSS of a process that only imported its app or job module."""
    result: dict[str, object] = {
        "n": n,
        "seconds": finished_at - worker.ready_at,
        "rss_kib": worker.peak_rss_kib(),
        "concurrency": concurrency,
    }
    if baseline:
        result["base_rss_kib"] = baseline_rss_kib(worker.script, worker.redis_url, worker.env)
    return result


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
    out += ["--concurrency", concurrency or args.concurrency, "--queue", args.queue]
    if args.results:
        out.append("--results")
    return out


def run(scenarios: dict[str, Callable[[argparse.Namespace], object]]) -> None:
    """Dispatch to ``scenarios[args.scenario]``; emit its dict unless it is the worker.

    ``baseline`` imports what the side's ``baseline`` imports (its app or job module;
    nothing more for a side that is its own job module) and emits its peak RSS.
    """
    args = parse_args()
    if args.scenario == "baseline":
        scenarios.get("baseline", lambda _: None)(args)
        emit({"rss_kib": peak_rss_kib()})
        return
    result = scenarios[args.scenario](args)
    if asyncio.iscoroutine(result):
        result = asyncio.run(result)
    if args.scenario != "worker":
        assert isinstance(result, dict)
        emit(result)


# -- Redis's own counters ---------------------------------------------------------------


def redis_info(url: str, section: str) -> dict[str, str]:
    """``INFO section`` as ``name -> value``, over a plain socket: sides run in peer venvs
    with different Redis clients (or none of redis-py's), and this must be the same for all."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 6379)) as sock:
        sock.sendall(f"*2\r\n$4\r\nINFO\r\n${len(section)}\r\n{section}\r\n".encode())
        reader = sock.makefile("rb")
        header = reader.readline()
        if not header.startswith(b"$"):
            raise RuntimeError(f"INFO {section}: {header!r}")
        body = reader.read(int(header[1:]) + 2).decode()
    pairs = (line.split(":", 1) for line in body.splitlines() if ":" in line)
    return {name: value for name, value in pairs}


def redis_cpu_us(url: str) -> float:
    """Redis's CPU time so far (user + system, every thread), in µs."""
    info = redis_info(url, "cpu")
    return (float(info["used_cpu_user"]) + float(info["used_cpu_sys"])) * 1e6


def command_stats(url: str) -> dict[str, tuple[int, int]]:
    """``INFO commandstats`` as ``command -> (calls, usec)``."""
    out = {}
    for name, value in redis_info(url, "commandstats").items():
        fields = dict(item.split("=") for item in value.split(","))
        out[name.removeprefix("cmdstat_")] = (int(fields["calls"]), int(fields["usec"]))
    return out


class CpuMeter:
    """Redis CPU and per-command time between ``start()`` and ``stop()``, for one phase."""

    def __init__(self, url: str) -> None:
        self.url = url

    def start(self) -> None:
        self._stats = command_stats(self.url)
        self._cpu = redis_cpu_us(self.url)

    def stop(self) -> dict[str, object]:
        """``{"cpu_us": ..., "commands": {command: [calls, usec]}}`` for the phase (our own
        INFO calls left out of the commands)."""
        cpu = redis_cpu_us(self.url) - self._cpu
        after = command_stats(self.url)
        commands = {}
        for name, (calls, usec) in after.items():
            calls0, usec0 = self._stats.get(name, (0, 0))
            if calls > calls0 and name != "info":
                commands[name] = [calls - calls0, usec - usec0]
        return {"cpu_us": cpu, "commands": commands}


def cpu_result(n: int, phases: dict[str, dict[str, object]]) -> dict[str, object]:
    """The ``cpu`` scenario's result: µs of Redis CPU per job for each phase and the
    commands each phase sent (calls and µs inside Redis)."""
    result: dict[str, object] = {"n": n}
    for phase, measured in phases.items():
        result[f"{phase}_us"] = float(measured["cpu_us"]) / n  # type: ignore[arg-type]
        result[f"{phase}_commands"] = measured["commands"]
    return result


# -- concurrent callers and memory ----------------------------------------------------


async def concurrent_calls(call: Callable[[], Awaitable[object]], n: int) -> dict[str, object]:
    """``n`` calls made by ``CONCURRENT_TASKS`` tasks on one loop, each task calling again
    as soon as its call returns; jobs/s over all and p99 of each call's own time."""
    latencies: list[float] = []
    per_task = [n // CONCURRENT_TASKS + (i < n % CONCURRENT_TASKS) for i in range(CONCURRENT_TASKS)]

    async def task(count: int) -> None:
        for _ in range(count):
            began = time.perf_counter()
            await call()
            latencies.append(time.perf_counter() - began)

    await asyncio.gather(*(task(1) for _ in range(CONCURRENT_TASKS)))  # warm-up
    latencies.clear()
    start = time.perf_counter()
    await asyncio.gather(*(task(count) for count in per_task))
    seconds = time.perf_counter() - start
    ordered = sorted(latencies)
    p99 = ordered[max(0, round(0.99 * len(ordered)) - 1)] * 1000
    return {"n": n, "seconds": seconds, "p99_ms": p99, "tasks": CONCURRENT_TASKS}


def peak_rss_kib(pid: int | str = "self") -> int:
    """VmHWM (peak resident set) of process ``pid`` (this one by default), in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmHWM for pid {pid}")


def baseline_rss_kib(script: str, redis_url: str, env: dict[str, str] | None = None) -> int:
    """Peak RSS of a process that only imports what the worker's app (or job module)
    imports: the side's ``baseline`` verb, in the same interpreter as its worker."""
    out = subprocess.run(
        [sys.executable, script, "baseline", "--redis-url", redis_url],
        capture_output=True,
        env=env,
        check=True,
        timeout=READY_TIMEOUT_S,
    )
    for line in reversed(out.stdout.decode().splitlines()):
        if line.startswith(RESULT_PREFIX):
            return int(json.loads(line[len(RESULT_PREFIX) :])["rss_kib"])
    raise RuntimeError(f"baseline printed no result: {out.stderr.decode()[-300:]}")
