"""Case 7 of issue 10: Redis answers with an error reply instead of doing the work.

``LOADING`` (Redis restarted and still reading a large append-only file), ``READONLY`` (the
server turned into a replica) and ``OOM`` (``maxmemory`` reached, nothing may be evicted)
are states Redis leaves by itself or by an operator's hand. A worker meeting one must wait
and retry with backoff, log one line when the state begins (and one when it ends, not one
per retry), never exit, and never half-write an outcome (``fault_contract.md``, "Error
replies"): every job enqueued before the state (some of them running when it begins) and
right after it (while the worker may still be backing off) ends ``finished`` exactly once,
with one trace, one result entry and one count in the worker's hash.

Each test has a ``redis-server`` of its own, which it reconfigures; the jobs leave their
traces on the session's server, which no fault touches, so a job running while Redis
refuses writes still leaves its trace.
"""

from __future__ import annotations

import re
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest
import redis

from ..apps.worker_support import (
    Process,
    enqueue_calls,
    is_registered,
    our_worker,
    statuses,
    unique_name,
    wait_until,
)
from ..redis_server import free_port, program_version, redis_program
from .conftest import Figures

T = TypeVar("T")

JOB = "tests.worker_jobs.async_record"  # (url, key, value, seconds): sleeps, then RPUSHes
JOB_SECONDS = 0.5
CONCURRENCY = 5
HEARTBEAT = 5  # wip entries and registration outlive every state here: no sweep interferes
BEFORE = 20  # jobs enqueued before the state: some run through it, the rest wait it out
AFTER = 5  # jobs enqueued as the state ends, while the worker may still be backing off
STATE_SECONDS = 3.0  # each state lasts at least this long
MAX_STATE_LINES = 3  # log lines naming the state: one when it begins, not one per retry
REFUSALS_PER_SECOND = 50  # backoff (0.1 s doubling to 5 s) keeps the refused commands few
DRAIN_SECONDS = 30.0

LOADING_BALLAST_KEYS = 20_000  # loaded at key-load-delay 100 us: about 3 s of LOADING
OOM_BALLAST_BYTES = 2 << 20
OOM_BALLAST_CHUNK = 64 << 10

# What a log line says when it names the state (an error class, the reply code or words).
STATE_WORDS = {
    "LOADING": re.compile(r"loading", re.IGNORECASE),
    "READONLY": re.compile(r"read.?only", re.IGNORECASE),
    "OOM": re.compile(r"\bOOM\b|out.?of.?memory|maxmemory", re.IGNORECASE),
}


# -- a redis-server of the test's own ------------------------------------------------------------


class PrivateRedis:
    """A ``redis-server`` on a free port with its own directory and extra options; it can be
    stopped and started again on the same port and directory (and so the same AOF)."""

    def __init__(self, directory: Path, *options: str) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.options = options
        self.process: subprocess.Popen[bytes] | None = None
        self.client = redis.Redis.from_url(self.url)

    def start(self, *extra: str) -> None:
        """Start, and return once the server answers ``INFO`` (it does while loading)."""
        argv = [redis_program(), "--port", str(self.port), "--bind", "127.0.0.1"]
        argv += ["--dir", str(self.dir), "--save", "", *self.options, *extra]
        with open(self.dir / "redis.log", "ab") as log:
            self.process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        process = self.process
        wait_until(
            lambda: process.poll() is not None or self._answers(),
            10,
            lambda: f"redis-server {argv} to answer",
        )
        assert process.poll() is None, (self.dir / "redis.log").read_text()

    def _answers(self) -> bool:
        try:
            self.client.info("server")
        except redis.ConnectionError:
            return False
        return True

    def stop(self) -> None:
        """SIGTERM: Redis syncs its append-only file and exits."""
        if self.process is not None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(10)
            self.process = None

    def info(self, section: str) -> dict[str, object]:
        return dict(self.client.info(section))

    def refused(self, code: str) -> int:
        """How many commands Redis has answered with error ``code`` since it started.

        Before Redis 7, a script whose ``redis.call`` met ``code`` fails with ``ERR Error
        running script ... -CODE ...``, which ``errorstats`` does not count under ``code``:
        failed ``EVALSHA`` calls count too, but for ``NOSCRIPT`` (a script not loaded yet),
        as the worker's scripts fail for nothing else but the state a test holds.
        """
        errors = self.info("errorstats")
        refused = _count(errors.get(f"errorstat_{code}"), "count")
        if program_version() < (7,):
            evalsha = self.info("commandstats").get("cmdstat_evalsha")
            refused += _count(evalsha, "failed_calls") - _count(
                errors.get("errorstat_NOSCRIPT"), "count"
            )
        return refused

    def __enter__(self) -> PrivateRedis:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(10)
        self.client.close()


def _count(stats: object, field: str) -> int:
    return int(stats[field]) if isinstance(stats, dict) else 0


# -- one worker draining traced jobs through a state ---------------------------------------------


class Trial:
    """A worker draining traced jobs from ``server``, and what it did around one state."""

    def __init__(
        self, log_dir: Path, server: PrivateRedis, traces: redis.Redis, trace_url: str
    ) -> None:
        self.server = server
        self.traces = traces
        self.trace_url = trace_url
        self.trace = unique_name("trace")
        self.name = unique_name("replies")
        self.job_ids: list[str] = []
        self.values: list[str] = []
        self.worker: Process = our_worker(
            log_dir,
            server.url,
            "--name",
            self.name,
            "--heartbeat",
            str(HEARTBEAT),
            "--concurrency",
            str(CONCURRENCY),
        )
        self._log_offset = 0
        self.began = self.ended = 0.0
        self.wait(lambda: is_registered(server.client, self.name), "the worker to register", 30)

    def wait(
        self, predicate: Callable[[], T], what: str | Callable[[], str], timeout: float = 10.0
    ) -> T:
        """Poll ``predicate``; fail at the deadline, or at once if the worker dies. ``what``
        may be a function, called at the deadline, to show what was still missing."""

        def describe() -> str:
            return what if isinstance(what, str) else what()

        alive = self.alive
        value = wait_until(
            lambda: not alive() or predicate(),
            timeout,
            lambda: f"{describe()}; the worker logged:\n{self.worker.output()}",
        )
        assert alive(), f"the worker died waiting for {describe()}:\n{self.worker.output()}"
        return value

    def alive(self) -> bool:
        return self.worker.popen.poll() is None

    def enqueue(self, label: str, count: int) -> None:
        values = [f"{label}-{i}" for i in range(count)]
        calls = [[self.trace_url, self.trace, value, JOB_SECONDS] for value in values]
        self.job_ids += enqueue_calls(self.server.url, JOB, calls)
        self.values += values

    def traced(self) -> Counter[str]:
        return Counter(value.decode() for value in self.traces.lrange(self.trace, 0, -1))

    def wait_mid_drain(self) -> None:
        """Until the first jobs are done and the next ones are running."""
        self.wait(lambda: sum(self.traced().values()) >= CONCURRENCY, "the first jobs to end")

    def begin(self) -> int:
        """Mark the state's start; return how many jobs are running then."""
        self._log_offset = len(self.worker.output())
        self.began = time.monotonic()
        return statuses(self.server.client, self.job_ids).count("started")

    def hold(self, code: str) -> None:
        """Keep the state for ``STATE_SECONDS``, and until Redis has refused the worker."""
        self.wait(
            lambda: (
                time.monotonic() - self.began >= STATE_SECONDS and self.server.refused(code) > 0
            ),
            f"Redis to refuse the worker with {code}",
            STATE_SECONDS + 20,
        )

    def end(self) -> None:
        self.ended = time.monotonic()

    def state_lines(self, code: str) -> list[str]:
        """The lines the worker logged since the state began that name it."""
        logged = self.worker.output()[self._log_offset :]
        return [line for line in logged.splitlines() if STATE_WORDS[code].search(line)]

    def check(self, code: str, refused: int, figures: Figures) -> None:
        """Enqueue ``AFTER`` more jobs, let all drain, and check the case's promises."""
        self.enqueue("after", AFTER)
        client = self.server.client
        self.wait(
            lambda: set(statuses(client, self.job_ids)) == {"finished"},
            lambda: f"every job to finish (statuses: {Counter(statuses(client, self.job_ids))})",
            DRAIN_SECONDS,
        )
        drained = time.monotonic()
        self.wait(
            lambda: (
                client.zcard("rq:wip:default") == 0
                and client.scard(f"rq:worker:{self.name}:executions") == 0
            ),
            "the worker to hold no execution",
        )
        traced = self.traced()
        ran_twice = sorted(v for v, n in traced.items() if n > 1)
        lines = self.state_lines(code)
        state_seconds = self.ended - self.began
        figures.record(f"{code} lasted (s)", round(state_seconds, 1))
        figures.record(f"drained after {code} (s)", round(drained - self.ended, 1))
        figures.record(f"log lines naming {code}", len(lines))
        figures.record(f"commands refused with {code}", refused)
        figures.record("jobs run twice", len(ran_twice))

        assert self.alive() and is_registered(client, self.name), self.worker.output()
        assert ran_twice == [], f"jobs run twice: {ran_twice}"
        assert set(traced) == set(self.values), f"never ran: {set(self.values) - set(traced)}"
        with client.pipeline(transaction=False) as pipe:
            for job_id in self.job_ids:
                pipe.xrange(f"rq:results:{job_id}")
                pipe.zscore("rq:finished:default", job_id)
            replies = pipe.execute()
        results = dict(zip(self.job_ids, replies[::2], strict=True))
        not_once = {j: r for j, r in results.items() if [e[1][b"type"] for e in r] != [b"1"]}
        assert not_once == {}, f"jobs without exactly one success result: {not_once}"
        assert None not in replies[1::2], "jobs missing from rq:finished:default"
        counted = client.hget(f"rq:worker:{self.name}", "successful_job_count")
        assert counted == str(len(self.job_ids)).encode(), f"successes counted: {counted!r}"
        assert 1 <= len(lines) <= MAX_STATE_LINES, "\n".join(lines) or self.worker.output()
        assert refused <= REFUSALS_PER_SECOND * state_seconds, (
            f"{refused} commands refused in {state_seconds:.1f}s: no backoff?"
        )

    def close(self) -> None:
        self.worker.kill()


@pytest.fixture
def trial_of(
    tmp_path: Path, sync_redis: redis.Redis, redis_url: str
) -> Iterator[Callable[[PrivateRedis], Trial]]:
    """Start a ``Trial`` on a server; its worker is killed when the test ends."""
    trials: list[Trial] = []

    def start(server: PrivateRedis) -> Trial:
        trials.append(Trial(tmp_path, server, sync_redis, redis_url))
        return trials[-1]

    yield start
    for trial in trials:
        trial.close()


# -- the cases -----------------------------------------------------------------------------------


def loading_options() -> list[str]:
    """``DEBUG`` allowed, and clients served (with ``LOADING``) every KiB loaded, not only
    every 2 MiB. Redis 6.2 has neither option: ``DEBUG`` is always on, and the ballast's
    values are bigger instead (``ballast_value_bytes``), and stored uncompressed."""
    if program_version() < (7,):
        return ["--rdbcompression", "no"]
    return ["--enable-debug-command", "local", "--loading-process-events-interval-bytes", "1024"]


def ballast_value_bytes() -> int:
    """Redis 6.2 serves clients while loading every 2 MiB loaded: 1 KiB values make the
    ballast 20 MiB, so about ten times in its load."""
    return 1024 if program_version() < (7,) else 10


def test_worker_waits_out_redis_loading_a_large_append_only_file(
    tmp_path: Path, trial_of: Callable[[PrivateRedis], Trial], figures: Figures
) -> None:
    """Redis is stopped mid-drain and started again on its append-only file, which holds a
    ballast of keys loaded slowly (``key-load-delay``): about 3 s of ``LOADING``."""
    persistent = ["--appendonly", "yes", "--appendfsync", "always"]
    with PrivateRedis(tmp_path / "redis", *persistent, *loading_options()) as server:
        server.client.execute_command(
            "DEBUG", "POPULATE", LOADING_BALLAST_KEYS, "ballast", ballast_value_bytes()
        )
        server.client.bgrewriteaof()
        wait_until(
            lambda: (
                server.info("persistence")["aof_rewrite_in_progress"] == 0
                and server.info("persistence")["aof_rewrite_scheduled"] == 0
            ),
            10,
            "the append-only file to be rewritten with the ballast",
        )
        trial = trial_of(server)
        trial.enqueue("before", BEFORE)
        trial.wait_mid_drain()

        running = trial.begin()
        server.stop()
        server.start("--key-load-delay", "100")  # microseconds per key loaded
        assert server.info("persistence")["loading"] == 1, "Redis loaded too fast to test"
        trial.wait(
            lambda: server.info("persistence")["loading"] == 0, "Redis to finish loading", 30
        )
        trial.end()
        refused = server.refused("LOADING")  # counted since the restart

        assert running > 0, "no job was running when the state began"
        assert refused > 0, "the worker never met LOADING"
        trial.check("LOADING", refused, figures)


def test_worker_waits_out_redis_turning_into_a_read_only_replica(
    tmp_path: Path, trial_of: Callable[[PrivateRedis], Trial], figures: Figures
) -> None:
    """``REPLICAOF`` an address where nothing listens: the server keeps its data and
    refuses every write until ``REPLICAOF NO ONE``."""
    with PrivateRedis(tmp_path / "redis") as server:
        trial = trial_of(server)
        trial.enqueue("before", BEFORE)
        trial.wait_mid_drain()

        running = trial.begin()
        # A master that never answers: the server keeps its data and refuses writes.
        server.client.execute_command("REPLICAOF", "127.0.0.1", free_port())
        trial.hold("READONLY")
        server.client.execute_command("REPLICAOF", "NO", "ONE")
        trial.end()

        assert running > 0, "no job was running when the state began"
        trial.check("READONLY", server.refused("READONLY"), figures)


def test_idle_worker_blocked_on_its_queue_waits_out_a_read_only_replica(
    tmp_path: Path, trial_of: Callable[[PrivateRedis], Trial], figures: Figures
) -> None:
    """Turning into a replica also ends every blocked command with an ``UNBLOCKED`` error
    reply: an idle worker, blocked on its empty queue, gets that first."""
    with PrivateRedis(tmp_path / "redis") as server:
        trial = trial_of(server)
        trial.wait(
            lambda: any(c.get("cmd") == "blmove" for c in server.client.client_list()),
            "the idle worker to block on its queue",
        )

        trial.begin()
        server.client.execute_command("REPLICAOF", "127.0.0.1", free_port())
        trial.hold("READONLY")
        server.client.execute_command("REPLICAOF", "NO", "ONE")
        trial.end()

        assert server.refused("UNBLOCKED") > 0, "the worker was not blocked on its queue"
        trial.check("READONLY", server.refused("READONLY"), figures)


def test_worker_waits_out_redis_out_of_memory(
    tmp_path: Path, trial_of: Callable[[PrivateRedis], Trial], figures: Figures
) -> None:
    """``maxmemory`` goes to half of what Redis holds, a ballast included (so nothing the
    worker frees brings it back under): with ``noeviction``, every command that may grow
    memory is refused until ``maxmemory`` is lifted."""
    with PrivateRedis(tmp_path / "redis", "--maxmemory-policy", "noeviction") as server:
        trial = trial_of(server)
        trial.enqueue("before", BEFORE)
        trial.wait_mid_drain()

        running = trial.begin()
        for _ in range(OOM_BALLAST_BYTES // OOM_BALLAST_CHUNK):  # no big query buffer
            server.client.append("ballast", b"x" * OOM_BALLAST_CHUNK)
        used = server.info("memory")["used_memory"]
        assert isinstance(used, int)
        server.client.config_set("maxmemory", used // 2)
        trial.hold("OOM")
        assert server.info("memory")["used_memory"] > used // 2, "left OOM by itself"
        server.client.config_set("maxmemory", 0)
        server.client.delete("ballast")
        trial.end()

        assert running > 0, "no job was running when the state began"
        trial.check("OOM", server.refused("OOM"), figures)
