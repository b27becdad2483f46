"""What the kill, shutdown and load cases share (built on ``tests/apps/worker_support.py``).

- ``private_redis`` starts a throwaway ``redis-server`` for one test (free port, no
  persistence) and ``named_client`` connects to it under a name of its own, so
  ``wait_for_disconnect`` can tell the test's connections from a worker's.
- ``worker_name`` finds the random name a worker subprocess registered under (by pid);
  ``held_job_ids`` reads the jobs it has claimed and not yet recorded.
- ``wait_while_alive`` polls like ``wait_until`` but fails at once, with the worker's
  output, if the worker process has died.
- ``trace_counts`` counts the values ``tests.worker_jobs.record`` pushed; the job
  ``gated_trace`` leaves its trace in a file instead, for while Redis refuses writes.
- ``assert_deregistered`` checks what a worker leaves behind when it stops; ``rss_bytes``
  reads a process's resident memory.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import redis

from ..apps.worker_support import Process, wait_until
from ..redis_server import RedisServer

T = TypeVar("T")

TEST_CLIENT_NAME = "fault-test"


# -- Redis ---------------------------------------------------------------------------------------


@contextmanager
def private_redis() -> Iterator[RedisServer]:
    """A ``redis-server`` of this test's own (``--save "" --appendonly no``), stopped at the
    end of the block."""
    server = RedisServer()
    server.start()
    try:
        yield server
    finally:
        if server.process is not None:
            server.process.kill()
            server.process.wait(10)
        server.stop()  # removes its directory


def named_client(url: str) -> redis.Redis:
    """A client whose connections show as ``TEST_CLIENT_NAME`` in ``CLIENT LIST``."""
    return redis.Redis.from_url(url, client_name=TEST_CLIENT_NAME)


def wait_for_disconnect(client: redis.Redis, timeout: float = 10.0) -> None:
    """Wait until Redis holds no connection but the test client's (``client`` must come from
    ``named_client``). After a SIGKILL this means Redis has read, and run, every command the
    dead process had sent: it frees a connection only once it has read it to the end."""

    def others() -> list[dict[str, str]]:
        return [c for c in client.client_list() if c.get("name") != TEST_CLIENT_NAME]

    wait_until(lambda: not others(), timeout, lambda: f"connections to close: {others()}")


# -- worker subprocesses ---------------------------------------------------------------------------


def wait_while_alive(
    worker: Process, predicate: Callable[[], T], timeout: float = 10.0, what: str = "it"
) -> T:
    """``wait_until(predicate)``, failing with the worker's output if it dies meanwhile."""
    value = wait_until(
        lambda: worker.popen.poll() is not None or predicate(),
        timeout,
        lambda: f"{what}; worker output:\n{worker.output()}",
    )
    assert worker.popen.poll() is None, f"the worker died waiting for {what}:\n{worker.output()}"
    return value  # type: ignore[return-value]


def worker_name(client: redis.Redis, worker: Process, timeout: float = 15.0) -> str:
    """The name under which the worker process registered (its ``pid`` field)."""

    def find() -> str | None:
        for key in client.smembers("rq:workers"):
            if client.hget(key, "pid") == str(worker.pid).encode():
                return key.decode().removeprefix("rq:worker:")
        return None

    return wait_while_alive(worker, find, timeout, "the worker to register")


def held_job_ids(client: redis.Redis, name: str) -> set[str]:
    """Ids of the jobs worker ``name`` has claimed and not recorded the end of (the members
    ``<id>:<execution id>`` of ``rq:worker:<name>:executions``)."""
    members = client.smembers(f"rq:worker:{name}:executions")
    return {member.decode().rsplit(":", 1)[0] for member in members}


def assert_deregistered(client: redis.Redis, name: str, queues: tuple[str, ...]) -> None:
    """A stopped worker is out of ``rq:workers`` and each ``rq:workers:<q>``, its hash has a
    ``death``, its executions set is gone, and nothing is left in ``rq:wip:<q>``."""
    key = f"rq:worker:{name}"
    assert not client.sismember("rq:workers", key)
    for queue in queues:
        assert not client.sismember(f"rq:workers:{queue}", key)
        assert client.zrange(f"rq:wip:{queue}", 0, -1) == []
    assert client.hget(key, "death"), client.hgetall(key)
    assert not client.exists(f"rq:worker:{name}:executions")


def rss_bytes(pid: int) -> int:
    """The resident set size of process ``pid`` (``VmRSS`` of ``/proc/<pid>/status``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024  # reported in kB
    raise AssertionError(f"no VmRSS for process {pid}")


# -- traces ---------------------------------------------------------------------------------------


def trace_counts(client: redis.Redis, key: str) -> Counter[str]:
    """How many times each value was pushed to the list ``key`` (``tests.worker_jobs.record``)."""
    return Counter(value.decode() for value in client.lrange(key, 0, -1))


def gated_trace(directory: str, gate: str, value: str, timeout: float = 30.0) -> str:
    """A job that waits until the file ``<directory>/<gate>`` exists, then appends a line to
    ``<directory>/<value>.runs`` and returns ``value``: one line per run that reached its end,
    written without Redis (which may be refusing writes). A plain function: it runs in one of
    the worker's threads."""
    gate_path = Path(directory, gate)
    deadline = time.monotonic() + timeout
    while not gate_path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"gate {gate!r} still closed after {timeout:g}s")
        time.sleep(0.01)  # job body: the test opens the gate
    with Path(directory, f"{value}.runs").open("a") as runs:
        runs.write("ran\n")
    return value


def file_runs(directory: Path, value: str) -> int:
    """How many runs of ``gated_trace(..., value)`` reached their end."""
    path = directory / f"{value}.runs"
    return len(path.read_text().splitlines()) if path.exists() else 0
