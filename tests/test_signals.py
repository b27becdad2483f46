"""Job signals (``aiorq_flask.signals``): who sends each, with which job and outcome, and
that a broken receiver harms nothing. A real redis-server, an in-process worker."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
import redis
from blinker import NamedSignal
from quart import Quart

from aiorq_flask import AsyncRQ, Job, JobStatus, Retry
from aiorq_flask.outcomes import Outcome
from aiorq_flask.signals import (
    job_abandoned,
    job_enqueued,
    job_failed,
    job_finished,
    job_retried,
    job_started,
)
from aiorq_flask.worker import Worker

from .apps.worker_support import burst, latest_result

Heard = list[tuple[str, Any, dict[str, Any]]]


@pytest.fixture
async def app_rq(make_quart_app: Callable[..., Quart]) -> AsyncIterator[tuple[Quart, AsyncRQ]]:
    app = make_quart_app()
    rq = AsyncRQ(app)
    yield app, rq
    await rq.state(app).pools.aclose()


@pytest.fixture
def listen() -> Iterator[Callable[..., Heard]]:
    """``listen(signal, ..., sender=app)``: a list that fills with what each signal sends;
    disconnected after the test."""
    connected: list[tuple[NamedSignal, Callable[..., None]]] = []

    def connect(*signals: NamedSignal, sender: Any) -> Heard:
        heard: Heard = []
        for signal in signals:

            def receiver(app: Any, _name: str = signal.name, **kwargs: Any) -> None:
                heard.append((_name, app, kwargs))

            signal.connect(receiver, sender=sender, weak=False)
            connected.append((signal, receiver))
        return heard

    yield connect
    for signal, receiver in connected:
        signal.disconnect(receiver)


def worker_of(app: Quart, rq: AsyncRQ) -> Worker:
    return rq.make_worker(app=app)


async def test_enqueued_is_sent_by_the_app_for_each_job_written(
    app_rq: tuple[Quart, AsyncRQ], listen: Callable[..., Heard]
) -> None:
    app, rq = app_rq
    heard = listen(job_enqueued, sender=app)
    queue = rq.state(app).queues["default"]

    one = await queue.enqueue("tests.tasks.add", 1, 2)
    many = await queue.enqueue_many(
        [queue.prepare_data("tests.tasks.add", (1, 2)), queue.prepare_data("tests.tasks.echo")]
    )
    later = await queue.enqueue_in(60, "tests.tasks.add", 3, 4)
    child = await queue.enqueue("tests.tasks.add", 5, 6, depends_on=later.id)

    assert [(name, sender) for name, sender, _ in heard] == [("job-enqueued", app)] * 5
    jobs = [kwargs["job"] for _, _, kwargs in heard]
    assert [j.id for j in jobs] == [one.id, many[0].id, many[1].id, later.id, child.id]
    assert [j.status for j in jobs] == [
        JobStatus.QUEUED,
        JobStatus.QUEUED,
        JobStatus.QUEUED,
        JobStatus.SCHEDULED,
        JobStatus.DEFERRED,
    ]


async def test_a_receiver_connected_for_one_app_hears_only_that_app(
    app_rq: tuple[Quart, AsyncRQ],
    make_quart_app: Callable[..., Quart],
    listen: Callable[..., Heard],
) -> None:
    app, rq = app_rq
    other = make_quart_app()
    other_rq = AsyncRQ(other)
    heard = listen(job_enqueued, sender=app)

    await other_rq.state(other).queues["default"].enqueue("tests.tasks.add", 1, 2)
    mine = await rq.state(app).queues["default"].enqueue("tests.tasks.add", 1, 2)
    await other_rq.state(other).pools.aclose()

    assert [kwargs["job"].id for _, _, kwargs in heard] == [mine.id]


async def test_the_worker_sends_started_then_how_each_job_ended(
    app_rq: tuple[Quart, AsyncRQ], listen: Callable[..., Heard], redis_url: str
) -> None:
    app, rq = app_rq
    heard = listen(job_started, job_finished, job_failed, job_retried, sender=app)
    queue = rq.state(app).queues["default"]
    done = await queue.enqueue("tests.tasks.add", 1, 2)
    failed = await queue.enqueue("tests.tasks.fail", "on purpose")
    retried = await queue.enqueue(
        "tests.worker_jobs.fail_once", redis_url, "signals:attempts", retry=Retry(1)
    )

    await burst(worker_of(app, rq))

    def told(job: Job) -> list[tuple[str, str | None]]:
        return [
            (name, kwargs["outcome"].status.value if "outcome" in kwargs else None)
            for name, _, kwargs in heard
            if kwargs["job"].id == job.id
        ]

    assert told(done) == [("job-started", None), ("job-finished", "finished")]
    assert told(failed) == [("job-started", None), ("job-failed", "failed")]
    assert told(retried) == [
        ("job-started", None),
        ("job-retried", "failed"),  # the run failed; it is queued for its retry
        ("job-started", None),
        ("job-finished", "finished"),
    ]
    assert {sender for _, sender, _ in heard} == {app}
    finished = [k for name, _, k in heard if name == "job-finished" and k["job"].id == done.id]
    assert finished[0]["outcome"].raw_id == done.id.encode()


async def test_a_job_the_worker_cannot_read_is_failed_with_no_job(
    app_rq: tuple[Quart, AsyncRQ], listen: Callable[..., Heard], sync_redis: redis.Redis
) -> None:
    app, rq = app_rq
    heard = listen(job_started, job_failed, sender=app)
    sync_redis.hset("rq:job:unreadable", mapping={"status": "queued", "origin": "default"})
    sync_redis.rpush("rq:queue:default", "unreadable")

    await burst(worker_of(app, rq))

    [(name, _, kwargs)] = heard
    assert (name, kwargs["job"], kwargs["outcome"].status) == ("job-failed", None, Outcome.INVALID)
    assert kwargs["outcome"].raw_id == b"unreadable"


async def test_the_sweep_sends_abandoned_for_each_dead_workers_job(
    app_rq: tuple[Quart, AsyncRQ], listen: Callable[..., Heard], sync_redis: redis.Redis
) -> None:
    app, rq = app_rq
    heard = listen(job_abandoned, sender=app)
    for job_id, retries_left in (("again", None), ("used-up", 0)):
        mapping = {"status": "started", "origin": "default", "worker_name": "dead-worker"}
        if retries_left is not None:
            mapping["retries_left"] = str(retries_left)
        sync_redis.hset(f"rq:job:{job_id}", mapping=mapping)
        sync_redis.zadd("rq:wip:default", {f"{job_id}:{'0' * 32}": 1})

    await worker_of(app, rq)._sweep()

    assert sorted((k["job_id"], k["queue"], k["requeued"]) for _, _, k in heard) == [
        ("again", "default", True),
        ("used-up", "default", False),
    ]


async def test_a_failing_receiver_is_logged_and_neither_the_enqueue_nor_the_job_fails(
    app_rq: tuple[Quart, AsyncRQ], sync_redis: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    app, rq = app_rq

    def broken(sender: Any, **kwargs: Any) -> None:
        raise RuntimeError("receiver bug")

    async def not_plain(sender: Any, **kwargs: Any) -> None: ...

    signals = (job_enqueued, job_started, job_finished)
    for signal in signals:
        signal.connect(broken, sender=app)
        signal.connect(not_plain, sender=app)
    try:
        with caplog.at_level(logging.ERROR, logger="aiorq_flask.signals"):
            job = await rq.state(app).queues["default"].enqueue("tests.tasks.add", 2, 2)
            await burst(worker_of(app, rq))
    finally:
        for signal in signals:
            signal.disconnect(broken)
            signal.disconnect(not_plain)

    result = latest_result(sync_redis, job.id)
    assert result is not None and result.return_value == 4
    failures = [r for r in caplog.records if r.name == "aiorq_flask.signals"]
    assert len(failures) == 6
    assert {r.exc_info[0] for r in failures if r.exc_info} == {RuntimeError, TypeError}
