"""Sentinel: one primary, one replica and three sentinels, real processes started here.

Jobs go through a ``redis+sentinel://`` URL or a dict with ``sentinels``; after a
failover (``SENTINEL FAILOVER``, or the primary killed) the pools and the script channel
reconnect to the new primary, and a worker draining while a web app enqueues loses no
job and runs none twice, neither side restarted.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import os
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
from quart import Quart, request
from redis.asyncio import Redis

from aiorq_flask import AsyncRQ

from .apps.worker_support import Process, async_wait_until, our_worker, statuses, wait_until
from .deployments.jobs import run_a_job
from .deployments.servers import SERVICE, SentinelSetup

JOBS = 1000
RECORD_RUN = "tests.deployments.jobs.record_run"


@pytest.fixture(scope="module")
def steady(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelSetup]:
    """A setup no test fails over."""
    with SentinelSetup(tmp_path_factory.mktemp("sentinel")) as setup:
        yield setup.start()


@pytest.fixture
def sentinels(tmp_path: Path) -> Iterator[SentinelSetup]:
    """A setup of the test's own, to fail over."""
    with SentinelSetup(tmp_path / "sentinel") as setup:
        yield setup.start()


def as_dict(setup: SentinelSetup, **options: Any) -> dict[str, Any]:
    return {"sentinels": setup.addresses, "service_name": SERVICE, **options}


@pytest.mark.parametrize("form", ["url", "dict"])
async def test_a_sentinel_managed_primary_runs_jobs(steady: SentinelSetup, form: str) -> None:
    connection = steady.url(db=3) if form == "url" else as_dict(steady, db=3)

    assert await run_a_job(connection) == ("finished", 5)
    with steady.node(steady.primary_port()).client(db=3) as primary:
        assert primary.keys("rq:job:*")


async def retry(step: Any, timeout: float = 20) -> Any:
    """Await ``step()`` until it succeeds; Redis errors are the failover going on."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await step()
        except redis.RedisError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.05)


async def test_pools_and_the_script_channel_follow_a_failover(sentinels: SentinelSetup) -> None:
    old = sentinels.primary_port()
    app = Quart(__name__)
    app.config.update(RQ_CONNECTION=f"{sentinels.url()}?client_name=follower", RQ_ASYNC=True)
    rq = AsyncRQ(app)
    async with app.app_context():
        try:
            await rq.queue.enqueue("tests.tasks.add", 1, 1)  # the script channel, on the old
            await rq.queue.connection.ping()  # and a pooled connection

            sentinels.failover()
            new = sentinels.wait_for_primary(other_than=old)

            job = await retry(lambda: rq.queue.enqueue("tests.tasks.add", 2, 2))
            await retry(lambda: rq.queue.connection.set("written", "through the pool"))
        finally:
            await rq.state().pools.aclose()

    with sentinels.node(new).client() as primary:
        assert primary.exists(f"rq:job:{job.id}")
        assert primary.get("written") == b"through the pool"


def wait_calls(client: redis.Redis) -> int:
    stats: dict[str, Any] = client.info("commandstats")
    return int(stats.get("cmdstat_wait", {}).get("calls", 0))


async def enqueue_concurrently(connection: str, count: int) -> list[str]:
    """``count`` enqueues at once, after one that opens the script channel (callers that
    find it opening queue for it, and get through one per loop turn)."""
    app = Quart(__name__)
    app.config.update(RQ_CONNECTION=connection, RQ_ASYNC=True)
    rq = AsyncRQ(app)
    async with app.app_context():
        try:
            await rq.queue.enqueue("tests.tasks.add", 0, 0)
            calls = (rq.queue.enqueue("tests.tasks.add", n, n) for n in range(count))
            return [job.id for job in await asyncio.gather(*calls)]
        finally:
            await rq.state().pools.aclose()


async def test_an_enqueue_returns_once_the_replica_has_the_job(steady: SentinelSetup) -> None:
    """Group commit: the enqueues sent in one loop turn share one ``WAIT``, and each
    returns only once the replica has its job, so a failover cannot take it back."""
    primary_port = steady.primary_port()
    replica_port = next(node.port for node in steady.nodes if node.port != primary_port)
    with steady.node(primary_port).client() as primary:
        before = wait_calls(primary)
        ids = await enqueue_concurrently(steady.url(db=4), 200)
        waits = wait_calls(primary) - before
    with steady.node(replica_port).client(db=4) as replica:
        assert all(replica.exists(f"rq:job:{job_id}") for job_id in ids)
    assert 2 <= waits < 10, waits


async def test_an_enqueue_many_returns_once_the_replica_has_its_jobs(
    steady: SentinelSetup,
) -> None:
    """The MULTI and its ``WAIT`` go out in one write: one ``WAIT`` for the whole batch."""
    primary_port = steady.primary_port()
    replica_port = next(node.port for node in steady.nodes if node.port != primary_port)
    app = Quart(__name__)
    app.config.update(RQ_CONNECTION=steady.url(db=5), RQ_ASYNC=True)
    rq = AsyncRQ(app)
    with steady.node(primary_port).client() as primary:
        async with app.app_context():
            try:
                queue = rq.queue
                before = wait_calls(primary)
                prepared = [queue.prepare_data("tests.tasks.add", (n, n)) for n in range(100)]
                jobs = await queue.enqueue_many(prepared)
            finally:
                await rq.state().pools.aclose()
        assert wait_calls(primary) - before == 1
    with steady.node(replica_port).client(db=5) as replica:
        assert all(replica.exists(f"rq:job:{job.id}") for job in jobs)


async def test_a_write_no_replica_confirms_fails_then_writes_go_on(
    sentinels: SentinelSetup,
) -> None:
    """With the replica gone, the first write's ``WAIT`` times out: that enqueue raises (a
    failover could undo it), and the next ones go through without waiting."""
    primary_port = sentinels.primary_port()
    app = Quart(__name__)
    app.config.update(RQ_CONNECTION=sentinels.url(), RQ_ASYNC=True)
    rq = AsyncRQ(app)
    with sentinels.node(primary_port).client() as primary:
        primary.config_set("min-replicas-to-write", 0)  # else it refuses writes at once
        async with app.app_context():
            try:
                await rq.queue.enqueue("tests.tasks.add", 0, 0)  # confirmed
                next(node for node in sentinels.nodes if node.port != primary_port).kill()
                before = wait_calls(primary)
                with pytest.raises(redis.ConnectionError, match="no replica confirmed"):
                    await rq.queue.enqueue("tests.tasks.add", 1, 1)
                jobs = [await rq.queue.enqueue("tests.tasks.add", n, n) for n in range(20)]
            finally:
                await rq.state().pools.aclose()
        assert wait_calls(primary) - before == 1
        assert all(primary.exists(f"rq:job:{job.id}") for job in jobs)


# -- a failover under load -------------------------------------------------------------------


@dataclass
class Figures:
    """What a failover under load did, as the issue asks to report it."""

    how: str
    enqueued: int  # jobs whose enqueue returned
    enqueue_errors: int  # enqueues that failed during the failover (retried with a new job)
    lost: int  # enqueued, never finished, though the new primary had the job
    lost_by_replication: int  # acknowledged by the old primary, never replicated
    run_twice: int
    seconds_to_first_finish: float  # from the failover's start to the first job finished
    # on the new primary


def web_app(connection: str, runs: Path) -> Quart:
    """An app that enqueues one ``record_run`` job per POST; 503 while Redis is away."""
    app = Quart(__name__)
    app.config.update(RQ_CONNECTION=connection, RQ_ASYNC=True)
    rq = AsyncRQ(app)

    @app.post("/jobs")
    async def enqueue() -> Any:
        token = (await request.get_json())["token"]
        try:
            job = await rq.queue.enqueue(RECORD_RUN, str(runs), token)
        except redis.RedisError as error:
            return {"error": repr(error)}, 503
        return {"id": job.id}

    @app.after_serving
    async def close() -> None:
        await rq.state().pools.aclose()

    return app


async def enqueue_all(app: Quart, returned: dict[str, str], errors: list[str]) -> None:
    """POST ``JOBS`` jobs, one every few milliseconds; a failed one is sent again as a new
    job (its token says which try it was), as a client of the app would."""
    client = app.test_client()
    for number in range(JOBS):
        for attempt in range(1000):
            token = f"{number}.{attempt}"
            response = await client.post("/jobs", json={"token": token})
            if response.status_code == 200:
                returned[token] = (await response.get_json())["id"]
                break
            errors.append((await response.get_json())["error"])
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.003)


async def first_finish_on(port: int, started: float) -> float:
    """Seconds from ``started`` until the node on ``port`` is the primary and has recorded
    one more finished job than when it became one."""
    async with Redis(host="127.0.0.1", port=port) as node:
        baseline = None
        while True:
            try:
                async with node.pipeline(transaction=False) as pipe:
                    reads = pipe.info("replication").zcard("rq:finished:default")
                    role, finished = await reads.execute()
            except redis.ConnectionError:  # a promoted node cuts its clients off once
                continue
            if role["role"] == "master":
                if baseline is None:
                    baseline = finished
                elif finished > baseline:
                    return time.monotonic() - started
            await asyncio.sleep(0.005)


@contextlib.asynccontextmanager
async def serving(app: Quart) -> AsyncIterator[None]:
    await app.startup()
    try:
        yield
    finally:
        await app.shutdown()


def report(figures: Figures) -> None:
    """Print the figures; with ``AIORQ_FAILOVER_FIGURES`` set, also append them to that
    file (``.ci/run`` shows it)."""
    line = json.dumps(asdict(figures))
    print(line, file=sys.stderr)
    if os.environ.get("AIORQ_FAILOVER_FIGURES"):
        with open(os.environ["AIORQ_FAILOVER_FIGURES"], "a") as record:
            record.write(line + "\n")


@pytest.mark.parametrize("how", ["sentinel-failover", "primary-killed"])
async def test_a_failover_while_a_worker_drains_and_an_app_enqueues_loses_no_job(
    sentinels: SentinelSetup, tmp_path: Path, how: str
) -> None:
    runs = tmp_path / "runs.log"
    old = sentinels.primary_port()
    new = next(node.port for node in sentinels.nodes if node.port != old)
    returned: dict[str, str] = {}
    errors: list[str] = []
    app = web_app(sentinels.url(), runs)
    worker: Process = our_worker(
        tmp_path, sentinels.url(), "--heartbeat", "1", "--concurrency", "20"
    )
    with worker:
        worker.wait_for_output("serving", 20)
        async with serving(app):
            enqueuing = asyncio.create_task(enqueue_all(app, returned, errors))
            await async_wait_until(lambda: len(returned) >= JOBS // 3, 20, "jobs enqueued")
            started = time.monotonic()
            first_finish = asyncio.create_task(first_finish_on(new, started))
            if how == "primary-killed":
                sentinels.node(old).kill()
            else:
                sentinels.failover()
            seconds = await asyncio.wait_for(first_finish, 30)
            await asyncio.wait_for(enqueuing, 40)

        with sentinels.node(new).client() as primary:
            done = lambda: all(s == "finished" for s in statuses(primary, list(returned.values())))  # noqa: E731
            with contextlib.suppress(AssertionError):
                wait_until(done, 30, "every enqueued job to finish")
            final = statuses(primary, list(returned.values()))
        assert worker.popen.poll() is None, f"the worker ended:\n{worker.output()}"

    counts = collections.Counter(runs.read_text().split())
    outcomes = {
        token: (status, counts[token]) for token, status in zip(returned, final, strict=True)
    }
    # Replication is asynchronous, but no script call returns before the replica has its
    # writes (WAIT): an enqueue that returned, or a claim, cannot be rolled back by the
    # switch. ``unreplicated`` (the job's hash gone from the new primary) would show one.
    unreplicated = {t: o for t, o in outcomes.items() if o[0] is None and o[1] <= 1}
    lost = {t: o for t, o in outcomes.items() if o != ("finished", 1) and t not in unreplicated}
    twice = {token: count for token, count in counts.items() if count > 1}
    figures = Figures(
        how=how,
        enqueued=len(returned),
        enqueue_errors=len(errors),
        lost=len(lost),
        lost_by_replication=len(unreplicated),
        run_twice=len(twice),
        seconds_to_first_finish=round(seconds, 3),
    )
    report(figures)
    assert (figures.enqueued, lost, unreplicated, twice) == (JOBS, {}, {}, {}), worker.output()
