"""The examples, end to end over HTTP, and the demo, run as a user runs them.

Each example app is served by a real server process (Quart on hypercorn, async Flask on
werkzeug's threaded server ``flask run``) with a worker process (``python -m
aiorq_flask.worker``) on the private test Redis. 50 concurrent HTTP clients send 500
requests, each enqueueing a job and reading its result back with ``?wait=1``. A burst
takes seconds, so it runs once per app and the tests read what it recorded.

Every process runs with ``PYTHONWARNINGS=default`` (so unclosed clients and loops reach its
output) in a process group of its own, killed when its fixture ends. App and worker
connections carry a client name (``?client_name=`` in ``REDIS_URL``), so CLIENT LIST
tells them apart.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from .apps.worker_support import Process, wait_until
from .client_list import ConnectionSampler, wait_for_connections
from .redis_server import RedisServer, free_port

REQUESTS = 500
CLIENTS = 50
WORKER_CONCURRENCY = 50
SYNC_EVERY = 10  # every tenth request enqueues the plain-function job
# One more client meanwhile waits (``?wait=1``, up to 10 s) for a job that takes this long:
# longer than redis-py's default 5 s socket read timeout.
SLOW_JOB_SECONDS = 6
APP_CLIENT = "e2e-app"
WORKER_CLIENT = "e2e-worker"
LOG_PROBLEMS = (
    "attached to a different loop",
    "Event loop is closed",
    "Unclosed",
    "unclosed",
    "Traceback",
)


@dataclass(frozen=True)
class Example:
    name: str
    app: str
    serve: Callable[[str, int], list[str]]  # (app, port) -> server command line


EXAMPLES = {
    "quart": Example(
        "quart",
        "examples.quart_app.app:app",
        lambda app, port: [sys.executable, "-m", "hypercorn", "--bind", f"127.0.0.1:{port}", app],
    ),
    "flask": Example(
        "flask",
        "examples.flask_app.app:app",
        lambda app, port: [
            *(sys.executable, "-m", "flask", "--app", app, "run"),
            *("--host", "127.0.0.1", "--port", str(port)),  # threaded by default
        ],
    ),
}


# -- the test Redis, once per module ---------------------------------------------------------


@pytest.fixture(scope="module")
def module_redis_url(redis_server: RedisServer | None) -> str:
    """The private test server (as ``redis_url`` gives it), flushed once for module-wide runs."""
    url = os.environ.get("AIORQ_TEST_REDIS_URL") or (redis_server.url if redis_server else "")
    with redis.Redis.from_url(url) as client:
        client.flushdb()
    return url


def with_client_name(url: str, name: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}client_name={name}"


# -- one burst against one example ----------------------------------------------------------


@dataclass
class Reply:
    expected: int
    enqueue_status: int
    status_code: int = 0
    body: dict[str, Any] = field(default_factory=dict)


@dataclass
class BurstRun:
    example: Example
    replies: list[Reply]
    slow_reply: Reply
    sampler: ConnectionSampler
    app_connections_after: int | None  # Flask only: per-request pools must all be closed
    exit_codes: dict[str, int]
    logs: dict[str, str]


async def enqueue_and_wait(client: httpx.AsyncClient, path: str, body: Any, expected: Any) -> Reply:
    """POST a job, then GET its status with ``?wait=1``."""
    posted = await client.post(path, json=body)
    reply = Reply(expected, posted.status_code)
    if posted.status_code == 202:
        fetched = await client.get(f"/jobs/{posted.json()['job_id']}?wait=1")
        reply.status_code = fetched.status_code
        is_json = fetched.headers.get("content-type") == "application/json"
        reply.body = fetched.json() if is_json else {"text": fetched.text[-500:]}
    return reply


async def burst(base_url: str) -> tuple[list[Reply], Reply]:
    """REQUESTS jobs from CLIENTS concurrent clients, and meanwhile one slow job."""
    limits = httpx.Limits(max_connections=CLIENTS + 1, max_keepalive_connections=CLIENTS + 1)
    gate = asyncio.Semaphore(CLIENTS)
    async with httpx.AsyncClient(
        base_url=base_url, limits=limits, trust_env=False, timeout=60
    ) as client:

        async def one(index: int) -> Reply:
            async with gate:
                if index % SYNC_EVERY == SYNC_EVERY - 1:
                    words = index % 7 + 1
                    return await enqueue_and_wait(
                        client, "/count-words", {"text": "word " * words}, words
                    )
                return await enqueue_and_wait(client, "/add", {"a": index, "b": 1}, index + 1)

        slow = enqueue_and_wait(client, "/add", {"a": 20, "b": 22, "delay": SLOW_JOB_SECONDS}, 42)
        slow_reply, *replies = await asyncio.gather(slow, *(one(i) for i in range(REQUESTS)))
        return replies, slow_reply


def wait_for_http(process: Process, base_url: str, timeout: float = 30) -> None:
    def serving() -> bool:
        assert process.popen.poll() is None, f"the server exited:\n{process.output()}"
        try:
            return httpx.get(base_url + "/", trust_env=False, timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    wait_until(serving, timeout, f"{base_url} to serve")


def run_example(example: Example, redis_url: str, log_dir: Path) -> BurstRun:
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"

    def env(client_name: str) -> dict[str, str]:
        url = with_client_name(redis_url, client_name)
        return {
            **os.environ,
            "REDIS_URL": url,
            "PYTHONUNBUFFERED": "1",
            "PYTHONWARNINGS": "default",
        }

    worker_argv = [sys.executable, "-m", "aiorq_flask.worker", "--app", example.app]
    worker_argv += ["--concurrency", str(WORKER_CONCURRENCY)]
    with (
        Process(worker_argv, env(WORKER_CLIENT), log_dir / f"{example.name}-worker.log") as worker,
        Process(
            example.serve(example.app, port), env(APP_CLIENT), log_dir / f"{example.name}-app.log"
        ) as server,
        redis.Redis.from_url(redis_url) as client,
    ):
        worker.wait_for_output(" serving ", timeout=30)
        wait_for_http(server, base_url)
        with ConnectionSampler(redis_url, APP_CLIENT, WORKER_CLIENT, interval=0.01) as sampler:
            replies, slow_reply = asyncio.run(burst(base_url))
        after = (
            wait_for_connections(client, APP_CLIENT, 0, timeout=10)
            if example.name == "flask"
            else None
        )
        for process in (server, worker):
            process.signal(signal.SIGINT)
        exit_codes = {"app": server.wait(30), "worker": worker.wait(30)}
        logs = {"app": server.output(), "worker": worker.output()}
    return BurstRun(example, replies, slow_reply, sampler, after, exit_codes, logs)


@pytest.fixture(scope="module")
def quart_run(module_redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> BurstRun:
    return run_example(EXAMPLES["quart"], module_redis_url, tmp_path_factory.mktemp("quart"))


@pytest.fixture(scope="module")
def flask_run(module_redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> BurstRun:
    return run_example(EXAMPLES["flask"], module_redis_url, tmp_path_factory.mktemp("flask"))


both_examples = pytest.mark.parametrize("run_fixture", ["quart_run", "flask_run"])


def problems(log: str) -> list[str]:
    """Each line that names a loop problem or an unclosed resource, and each traceback whole
    (chained ones included, down to the last exception line)."""
    lines = log.splitlines()
    found: list[str] = []
    i = 0
    while i < len(lines):
        if any(p in lines[i] for p in LOG_PROBLEMS):
            end = _traceback_end(lines, i) if lines[i].startswith("Traceback") else i
            found.append("\n".join(lines[i : end + 1]))
            i = end
        i += 1
    return found


def _traceback_end(lines: list[str], start: int) -> int:
    """The index of the last exception line of the traceback that starts at ``start``."""
    end = start + 1
    while end < len(lines):
        if lines[end].startswith((" ", "\t")) or not lines[end]:
            end += 1
            continue
        after = next((line for line in lines[end + 1 :] if line.strip()), "")
        if not after.startswith(("During handling", "The above exception")):
            return end  # the exception line, and no exception chained after it
        end += 1
        while end < len(lines) and not lines[end].startswith("Traceback"):
            end += 1
        end += 1
    return len(lines) - 1


@both_examples
def test_example_finishes_every_job_of_500_requests_from_50_clients_and_serves_its_result(
    run_fixture: str, request: pytest.FixtureRequest
) -> None:
    run: BurstRun = request.getfixturevalue(run_fixture)

    wrong = [
        reply
        for reply in run.replies
        if (reply.enqueue_status, reply.status_code) != (202, 200)
        or reply.body.get("status") != "finished"
        or reply.body.get("result") != reply.expected
    ]

    assert len(run.replies) == REQUESTS
    assert wrong[:3] == [], f"{len(wrong)} of {REQUESTS} requests went wrong"


@both_examples
def test_example_wait_returns_the_result_of_a_job_that_takes_6_s(
    run_fixture: str, request: pytest.FixtureRequest
) -> None:
    run: BurstRun = request.getfixturevalue(run_fixture)

    reply = run.slow_reply

    assert reply.enqueue_status == 202
    assert reply.status_code == 200, reply.body
    assert reply.body == {"id": reply.body["id"], "status": "finished", "result": 42}


@both_examples
def test_example_keeps_redis_connections_bounded_during_the_burst(
    run_fixture: str, request: pytest.FixtureRequest
) -> None:
    run: BurstRun = request.getfixturevalue(run_fixture)

    assert run.sampler.samples > 0
    assert 0 < run.sampler.highest[APP_CLIENT] <= CLIENTS + 1  # one per request in flight
    assert 0 < run.sampler.highest[WORKER_CLIENT] <= 10
    assert run.sampler.highest_total <= 60


def test_flask_example_closes_every_per_request_pool_after_the_burst(flask_run: BurstRun) -> None:
    assert flask_run.sampler.highest[APP_CLIENT] > 0
    assert flask_run.app_connections_after == 0


@both_examples
def test_example_server_and_worker_log_no_loop_errors_unclosed_warnings_or_tracebacks(
    run_fixture: str, request: pytest.FixtureRequest
) -> None:
    run: BurstRun = request.getfixturevalue(run_fixture)

    for process in ("app", "worker"):
        found = problems(run.logs[process])
        assert found == [], f"{process} output:\n" + "\n...\n".join(found)


@both_examples
def test_example_server_and_worker_exit_0_on_sigint(
    run_fixture: str, request: pytest.FixtureRequest
) -> None:
    run: BurstRun = request.getfixturevalue(run_fixture)

    assert run.exit_codes == {"app": 0, "worker": 0}


# -- the demo -----------------------------------------------------------------------------------


@dataclass
class DemoRun:
    returncode: int
    output: str
    leftovers: list[str]


def leftovers(marker: str, output: str) -> list[str]:
    """Live processes the demo started, as "pid command line": those whose environment holds
    ``marker``, and the redis-server its output names (redis-server overwrites its
    environment with its process title)."""
    port = re.search(r"throwaway redis-server on port (\d+)", output)
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            ours = marker.encode() in (entry / "environ").read_bytes()
        except OSError:  # gone meanwhile, or not ours to read
            continue
        if ours or (port and re.search(rf"^\S*redis-server \S*:{port[1]}\b", command)):
            found.append(f"{entry.name} {command}")
    return found


def kill_all(processes: list[str]) -> None:
    for line in processes:
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(line.split()[0]), signal.SIGKILL)


def run_demo(log_dir: Path, env: dict[str, str], *args: str, interrupt: bool = False) -> DemoRun:
    """``python -m examples.demo ARGS``, with a marker in its environment that its children
    inherit; ``interrupt``: SIGINT it once the burst is under way."""
    marker = f"AIORQ_E2E_DEMO_RUN={uuid.uuid4().hex}"
    name, value = marker.split("=")
    env = {**env, name: value, "PYTHONUNBUFFERED": "1"}
    argv = [sys.executable, "-m", "examples.demo", *args]
    demo = Process(argv, env, log_dir / "demo.log")
    try:
        if interrupt:
            demo.wait_for_output(" s  sent ", timeout=40)  # a progress line: jobs are flowing
            demo.signal(signal.SIGINT)
        returncode = demo.wait(50)
        return DemoRun(returncode, demo.output(), leftovers(marker, demo.output()))
    finally:
        demo.kill()
        kill_all(leftovers(marker, demo.output()))


@pytest.fixture(scope="module")
def demo_run(module_redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> DemoRun:
    with redis.Redis.from_url(module_redis_url) as client:
        client.flushdb()
    env = {**os.environ, "REDIS_URL": module_redis_url}
    return run_demo(tmp_path_factory.mktemp("demo"), env, "--jobs", "100")


@pytest.fixture(scope="module")
def interrupted_demo_run(tmp_path_factory: pytest.TempPathFactory) -> DemoRun:
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}  # its own redis-server
    log_dir = tmp_path_factory.mktemp("interrupted-demo")
    return run_demo(log_dir, env, "--jobs", "100000", interrupt=True)


def test_demo_exits_0_and_prints_a_summary_of_its_100_jobs(demo_run: DemoRun) -> None:
    assert demo_run.returncode == 0, demo_run.output
    assert re.search(
        r"^done: 100 jobs in [\d.]+ s, [\d,]+ jobs/s, 0 failed$", demo_run.output, re.MULTILINE
    ), demo_run.output
    assert re.search(r"latency: p50 [\d.]+ ms, p99 [\d.]+ ms", demo_run.output), demo_run.output


def test_demo_leaves_no_process_running_when_it_ends(demo_run: DemoRun) -> None:
    assert demo_run.returncode == 0, demo_run.output
    assert demo_run.leftovers == []


def test_demo_exits_130_on_ctrl_c_during_the_burst(interrupted_demo_run: DemoRun) -> None:
    assert interrupted_demo_run.returncode == 130, interrupted_demo_run.output
    assert "interrupted" in interrupted_demo_run.output


def test_demo_leaves_neither_its_redis_server_nor_any_process_running_after_ctrl_c(
    interrupted_demo_run: DemoRun,
) -> None:
    assert "throwaway redis-server" in interrupted_demo_run.output
    assert interrupted_demo_run.leftovers == []
