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
    # An enqueue the old primary acknowledged in the instant before the switch, and never
    # passed on to its replica, is gone from the new primary with its hash: Redis
    # replication is asynchronous (min-replicas-to-write narrows that window, only WAIT
    # would close it). What the worker must never do is lose or rerun a job whose hash
    # the new primary has.
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
    assert (figures.enqueued, lost) == (JOBS, {}), worker.output()
    if how == "primary-killed":
        assert twice == {}, worker.output()
    else:
        # SENTINEL FAILOVER: a claim the old primary acknowledged in its last instant and
        # never replicated is rolled back by the switch, and the job waits on the new
        # primary's queue again: at least once, as for a worker that died. Seen for one
        # job in about 1 run of 10; only WAIT after the claim would close it (issue 11).
        assert len(twice) <= 1 and all(n == 2 for n in twice.values()), worker.output()
