"""Outages: Redis restarts and network cuts while one worker drains a queue (issue 10, cases
3 and 4).

The promise under test: a worker that never dies keeps serving through an outage, loses no
job, and never runs a job twice, because a job it is still running is its own, however long
Redis was gone. Each job records its start and its end in a Redis the fault does not touch
(``outage_support.traced``), so with one worker that never died every job must start
exactly once. The worker runs with ``--heartbeat 1``: wip scores 2 s ahead, its key
expiring after 3 s, so outages of a few seconds outlive both.
"""

from __future__ import annotations

import asyncio
import re
import socket
import subprocess
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest
import redis
from quart import Quart

from aiorq_flask import AsyncRQ

from ..apps.worker_support import (
    BIN,
    ROOT,
    SERIALIZER,
    Process,
    all_have_status,
    enqueue_calls,
    latest_result,
    our_worker,
    statuses,
    unique_name,
    wait_until,
)
from .conftest import Figures
from .outage_support import PersistentRedis, Proxy, Trace, traced_calls

TRACED = "tests.faults.outage_support.traced"
JOBS = 48
DURATIONS = (0.5, 1.0, 1.5, 2.0)  # seconds; 16 at once drain 48 in about 4 s
WORKER_OPTIONS = ("--heartbeat", "1", "--concurrency", "16")


def wait_mid_drain(trace_redis: redis.Redis, key: str, worker: Process) -> Trace:
    """Wait until some jobs have ended and many are running; return the trace then."""

    def mid_drain() -> Trace | None:
        trace = Trace.read(trace_redis, key)
        if worker.popen.poll() is not None:
            raise AssertionError(f"the worker exited:\n{worker.output()}")
        return trace if trace.ended >= 6 and trace.started - trace.ended >= 8 else None

    return wait_until(mid_drain, 20, lambda: f"jobs in flight:\n{worker.output()}")


def wait_drained(jobs_redis: redis.Redis, ids: list[str], worker: Process, timeout: float) -> float:
    """Wait until every job is finished (the worker still up); return when, monotonic."""
    wait_until(
        lambda: all_have_status(jobs_redis, ids, "finished") or worker.popen.poll() is not None,
        timeout,
        lambda: f"every job to finish: {Counter(statuses(jobs_redis, ids))}\n{worker.output()}",
    )
    drained_at = time.monotonic()
    assert worker.popen.poll() is None, f"the worker exited:\n{worker.output()}"
    return drained_at


def assert_every_job_ran_once_on(
    jobs_redis: redis.Redis, trace: Trace, ids: list[str], labels: list[str], worker_name: str
) -> None:
    """Finished, recorded by ``worker_name``, started and ended exactly once; no leftovers."""
    assert trace.started_twice() == [], f"live jobs run twice: {trace.started_twice()}"
    assert trace.starts == dict.fromkeys(labels, 1)
    assert trace.ends == dict.fromkeys(labels, 1)
    outcomes = [latest_result(jobs_redis, job_id) for job_id in ids]
    assert [o.return_value if o else None for o in outcomes] == labels
    assert {o.worker_name for o in outcomes if o} == {worker_name}
    assert jobs_redis.llen("rq:queue:default") == 0
    assert jobs_redis.zcard("rq:wip:default") == 0


# -- case 3: Redis restart --------------------------------------------------------------------


@pytest.mark.parametrize(
    "outage", [1.5, 5.0], ids=["shorter-than-3-heartbeats", "longer-than-3-heartbeats"]
)
def test_the_same_worker_runs_every_job_exactly_once_across_a_redis_restart(
    tmp_path: Path, redis_url: str, sync_redis: redis.Redis, outage: float, figures: Figures
) -> None:
    key = unique_name("restart")
    name = unique_name("restart-worker")
    with (
        PersistentRedis(tmp_path / "redis") as server,
        redis.Redis.from_url(server.url) as jobs_redis,
    ):
        calls = traced_calls(redis_url, key, JOBS, DURATIONS)
        labels = [label for _, _, label, _ in calls]
        ids = enqueue_calls(server.url, TRACED, calls)

        with our_worker(tmp_path, server.url, *WORKER_OPTIONS, "--name", name) as worker:
            at_kill = wait_mid_drain(sync_redis, key, worker)
            server.kill()
            down_at = time.monotonic()
            time.sleep(outage)  # the outage itself, not a synchronisation
            server.start()
            up_at = time.monotonic()
            drained_at = wait_drained(jobs_redis, ids, worker, timeout=30)

        trace = Trace.read(sync_redis, key)
        figures.record("outage (s)", f"{up_at - down_at:.2f}")
        figures.record("jobs in flight at the kill", at_kill.started - at_kill.ended)
        figures.record("drain after Redis returned (s)", f"{drained_at - up_at:.2f}")
        figures.record("live jobs run twice", len(trace.started_twice()))
        assert_every_job_ran_once_on(jobs_redis, trace, ids, labels, name)


async def test_enqueue_while_redis_is_down_fails_within_a_second_writes_nothing_then_works(
    tmp_path: Path, figures: Figures
) -> None:
    with PersistentRedis(tmp_path / "redis") as server:
        app = Quart(__name__)
        app.config.update(RQ_CONNECTION=server.url, RQ_QUEUES=["default"], RQ_ASYNC=True)
        rq = AsyncRQ(app)
        lost_id = f"during-outage-{uuid.uuid4().hex[:8]}"
        async with app.app_context():
            try:
                before = await rq.queue.enqueue("tests.tasks.add", 1, 2)
                server.kill()
                started = time.monotonic()
                try:
                    await asyncio.wait_for(
                        rq.queue.enqueue("tests.tasks.add", 1, 2, job_id=lost_id), 10
                    )
                except (redis.ConnectionError, redis.TimeoutError):
                    failed_after = time.monotonic() - started
                except TimeoutError:
                    raise AssertionError("an enqueue while Redis was down hung for 10 s") from None
                else:
                    raise AssertionError("an enqueue while Redis was down succeeded")
                await asyncio.to_thread(server.start)
                after = await rq.queue.enqueue("tests.tasks.add", 1, 2)
            finally:
                await rq.state().pools.aclose()

        figures.record("enqueue failed after (s)", f"{failed_after:.3f}")
        assert failed_after < 1.0
        with redis.Redis.from_url(server.url) as client:
            assert client.exists(f"rq:job:{lost_id}", f"rq:results:{lost_id}") == 0
            queued = [raw.decode() for raw in client.lrange("rq:queue:default", 0, -1)]
        assert queued == [before.id, after.id]


# -- case 4: network cut ----------------------------------------------------------------------


def rq_info_worker_line(redis_url: str, name: str) -> str:
    """The line stock ``rq info`` prints for worker ``name`` (raw format), or what it
    printed instead."""
    done = subprocess.run(
        [str(BIN / "rq"), "info", "--url", redis_url, "-S", SERIALIZER, "--only-workers", "--raw"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stdout.splitlines() if line.startswith(f"worker {name} ")]
    return lines[0] if lines else f"(no line for {name} in)\n{done.stdout}"


def test_a_network_cut_and_stall_lose_no_job_run_none_twice_and_keep_the_worker_registered(
    tmp_path: Path, redis_url: str, sync_redis: redis.Redis, figures: Figures
) -> None:
    cut, stall = 3.0, 7.0
    key = unique_name("cut")
    name = unique_name("cut-worker")
    calls = traced_calls(redis_url, key, JOBS, DURATIONS)
    labels = [label for _, _, label, _ in calls]
    ids = enqueue_calls(redis_url, TRACED, calls)  # straight to Redis, as the traces go

    with (
        Proxy(redis_url) as proxy,
        our_worker(tmp_path, proxy.url, *WORKER_OPTIONS, "--name", name) as worker,
    ):
        at_cut = wait_mid_drain(sync_redis, key, worker)
        cut_at = time.monotonic()
        proxy.outage(cut, stall).result(cut + stall + 10)
        assert proxy.flowing_again_at is not None
        drained_at = wait_drained(sync_redis, ids, worker, timeout=35)
        trace = Trace.read(sync_redis, key)
        figures.record("cut + stall (s)", f"{proxy.flowing_again_at - cut_at:.2f}")
        figures.record("jobs in flight at the cut", at_cut.started - at_cut.ended)
        figures.record(
            "drain after traffic returned (s)", f"{drained_at - proxy.flowing_again_at:.2f}"
        )
        figures.record("live jobs run twice", len(trace.started_twice()))
        assert_every_job_ran_once_on(sync_redis, trace, ids, labels, name)

        worker_key = f"rq:worker:{name}"
        wait_until(
            lambda: (
                sync_redis.sismember("rq:workers", worker_key)
                and sync_redis.hget(worker_key, "birth")
            ),
            10,
            lambda: (
                f"the worker to register again: {sync_redis.hgetall(worker_key)}\n{worker.output()}"
            ),
        )
        line = rq_info_worker_line(redis_url, name)
        hostname = re.escape(socket.gethostname())
        assert re.fullmatch(
            rf"worker {re.escape(name)} \({hostname} \S* ?{worker.pid}\) \w+ default\. .*", line
        ), line
