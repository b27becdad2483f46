"""The asyncio worker, run in-process with ``rq.make_worker(...)`` against a real redis-server.

Each test states one behaviour of the worker: which queues it serves and in what order,
how jobs run (async on the loop, sync in threads, under a timeout), what it books in
Redis (spec/rq-data-model.md §2, §4, §5.4-5.13), how it handles broken jobs, a Redis
restart, scheduled jobs and retries. Outcomes are read from the raw Redis keys.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timezone
from types import SimpleNamespace
from typing import Any

import pytest
import redis
from quart import Quart

from aiorq_flask import AsyncRQ, ConfigError, Retry, _scripts
from aiorq_flask.job import epoch_ts
from aiorq_flask.serializer import MsgpackSerializer

from .apps.worker_support import (
    all_have_status,
    async_wait_until,
    burst,
    latest_result,
    other_db_url,
    serving,
    status,
    statuses,
)
from .redis_server import RedisServer

TS_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


def parse_ts(raw: bytes) -> datetime:
    return datetime.strptime(raw.decode(), TS_FORMAT).replace(tzinfo=timezone.utc)


# -- two connections: default + priority on db N, email + email-priority on db N+1 -------------


@pytest.fixture
async def two_rq(
    make_quart_app: Callable[..., Quart], redis_url: str, email_redis: redis.Redis
) -> AsyncIterator[AsyncRQ]:
    app = make_quart_app(
        RQ_QUEUES=["priority", "default", "email-priority", "email"],
        RQ_QUEUE_CONNECTIONS={"email": other_db_url(redis_url), "email-priority": "email"},
    )
    rq = AsyncRQ(app)
    async with app.app_context():
        yield rq
        await rq.state().pools.aclose()


def snapshot(client: redis.Redis) -> dict[bytes, tuple[Any, ...]]:
    """Every key with its type, exact serialized content and TTL."""
    return {
        key: (client.type(key), client.dump(key), client.ttl(key)) for key in client.scan_iter()
    }


async def test_email_worker_serves_email_priority_then_email(two_rq: AsyncRQ) -> None:
    worker = two_rq.make_worker(connection="email")

    assert worker.queues == ("email-priority", "email")


async def test_email_worker_runs_email_and_email_priority_jobs(
    two_rq: AsyncRQ, email_redis: redis.Redis
) -> None:
    email = await two_rq.get_queue("email").enqueue("tests.tasks.add", 1, 2)
    urgent = await two_rq.get_queue("email-priority").enqueue("tests.tasks.add", 3, 4)

    await burst(two_rq.make_worker(connection="email"))

    assert statuses(email_redis, [email.id, urgent.id]) == ["finished", "finished"]
    assert [latest_result(email_redis, j.id).return_value for j in (email, urgent)] == [3, 7]


async def test_email_worker_leaves_the_other_connections_keys_untouched(
    two_rq: AsyncRQ, sync_redis: redis.Redis, email_redis: redis.Redis
) -> None:
    waiting = [
        await two_rq.get_queue(name).enqueue("tests.tasks.add", 1, 2)
        for name in ("default", "priority")
    ]
    before = snapshot(sync_redis)
    email = await two_rq.get_queue("email").enqueue("tests.tasks.add", 1, 2)
    worker = two_rq.make_worker(connection="email", heartbeat=0.2)

    async with serving(worker, email_redis):
        await async_wait_until(lambda: status(email_redis, email.id) == "finished")
        birth = email_redis.hget(f"rq:worker:{worker.name}", "birth")
        await async_wait_until(  # heartbeat, sweep and scheduler have run by now
            lambda: email_redis.hget(f"rq:worker:{worker.name}", "last_heartbeat") != birth,
            what="a heartbeat",
        )

    assert snapshot(sync_redis) == before
    assert statuses(sync_redis, [j.id for j in waiting]) == ["queued", "queued"]


async def test_worker_takes_every_higher_priority_job_first(
    two_rq: AsyncRQ, email_redis: redis.Redis, redis_url: str
) -> None:
    url = other_db_url(redis_url)
    for name in ("email", "email-priority"):
        for i in range(3):
            await two_rq.get_queue(name).enqueue(
                "tests.worker_jobs.record", url, "order", f"{name}{i}"
            )

    await burst(two_rq.make_worker(connection="email", concurrency=1))

    assert email_redis.lrange("order", 0, -1) == [
        b"email-priority0",
        b"email-priority1",
        b"email-priority2",
        b"email0",
        b"email1",
        b"email2",
    ]


async def test_queues_option_sets_the_priority_order(
    two_rq: AsyncRQ, email_redis: redis.Redis, redis_url: str
) -> None:
    url = other_db_url(redis_url)
    for name in ("email-priority", "email"):
        await two_rq.get_queue(name).enqueue("tests.worker_jobs.record", url, "order", name)

    worker = two_rq.make_worker(
        connection="email", concurrency=1, queues=["email", "email-priority"]
    )
    await burst(worker)

    assert email_redis.lrange("order", 0, -1) == [b"email", b"email-priority"]


async def test_queues_option_serves_only_the_listed_queues(
    two_rq: AsyncRQ, sync_redis: redis.Redis
) -> None:
    served = await two_rq.get_queue("default").enqueue("tests.tasks.add", 1, 2)
    ignored = await two_rq.get_queue("priority").enqueue("tests.tasks.add", 1, 2)

    await burst(two_rq.make_worker(queues=["default"]))

    assert statuses(sync_redis, [served.id, ignored.id]) == ["finished", "queued"]
    assert sync_redis.lrange("rq:queue:priority", 0, -1) == [ignored.id.encode()]


async def test_queues_option_rejects_a_queue_of_another_connection(two_rq: AsyncRQ) -> None:
    with pytest.raises(ConfigError) as error:
        two_rq.make_worker(connection="default", queues=["default", "email"])

    assert "'email'" in str(error.value)
    assert "'default'" in str(error.value)


# -- how jobs run ------------------------------------------------------------------------------


async def test_async_jobs_overlap_on_the_loop(quart_rq: AsyncRQ, sync_redis: redis.Redis) -> None:
    queue = quart_rq.queue
    jobs = await queue.enqueue_many(
        queue.prepare_data("tests.tasks.async_sleep", [0.2]) for _ in range(100)
    )
    worker = quart_rq.make_worker(concurrency=100)

    started = time.monotonic()
    await burst(worker)
    elapsed = time.monotonic() - started

    assert all_have_status(sync_redis, [j.id for j in jobs], "finished")
    assert elapsed < 2.0, f"100 jobs of 0.2 s at concurrency 100 took {elapsed:.2f} s"


async def test_sync_jobs_run_in_threads_and_overlap(
    quart_rq: AsyncRQ, sync_redis: redis.Redis, redis_url: str
) -> None:
    jobs = [
        await quart_rq.queue.enqueue("tests.worker_jobs.rendezvous", redis_url, "inside", 5)
        for _ in range(5)
    ]

    await burst(quart_rq.make_worker(concurrency=5))

    outcomes = [latest_result(sync_redis, j.id) for j in jobs]
    assert [o.type for o in outcomes] == [1] * 5, [o.exc_string for o in outcomes]
    threads = [o.return_value[0] for o in outcomes]
    assert "MainThread" not in threads


async def test_sync_job_sees_the_worker_apps_current_app(
    quart_rq: AsyncRQ, sync_redis: redis.Redis
) -> None:
    job = await quart_rq.queue.enqueue("tests.tasks.app_name")

    await burst(quart_rq.make_worker())

    outcome = latest_result(sync_redis, job.id)
    assert outcome.type == 1, outcome.exc_string
    assert outcome.return_value == quart_rq.state().app.name


async def test_async_job_sees_the_worker_apps_current_app(
    quart_rq: AsyncRQ, sync_redis: redis.Redis
) -> None:
    job = await quart_rq.queue.enqueue("tests.tasks.async_app_name")

    await burst(quart_rq.make_worker())

    outcome = latest_result(sync_redis, job.id)
    assert outcome.type == 1, outcome.exc_string
    assert outcome.return_value == quart_rq.state().app.name


async def test_async_job_past_its_timeout_is_cancelled_and_fails_with_job_timeout_error(
    quart_rq: AsyncRQ, sync_redis: redis.Redis, redis_url: str
) -> None:
    job = await quart_rq.queue.enqueue(
        "tests.worker_jobs.async_record", redis_url, "late", "ran", 5, job_timeout=1
    )

    await burst(quart_rq.make_worker())

    assert status(sync_redis, job.id) == "failed"
    assert sync_redis.zscore("rq:failed:default", job.id) is not None
    assert "JobTimeoutError" in latest_result(sync_redis, job.id).exc_string
    assert not sync_redis.exists("late"), "the job body ran on past its timeout"


async def test_a_jobs_own_timeout_error_fails_it_as_itself_not_as_a_job_timeout(
    quart_rq: AsyncRQ, sync_redis: redis.Redis
) -> None:
    job = await quart_rq.queue.enqueue("tests.job_funcs.own_timeout", job_timeout=30)

    await burst(quart_rq.make_worker())

    text = latest_result(sync_redis, job.id).exc_string
    assert "TimeoutError: the upstream API did not answer" in text
    assert "JobTimeoutError" not in text


# -- bookkeeping as rq does it -----------------------------------------------------------------


@pytest.fixture
async def booked(quart_rq: AsyncRQ) -> SimpleNamespace:
    """One successful and one failing job, run by a burst worker that has exited."""
    ok = await quart_rq.queue.enqueue("tests.tasks.add", 1, 2)
    bad = await quart_rq.queue.enqueue("tests.tasks.fail", "boom")
    worker = quart_rq.make_worker(concurrency=1)
    started = time.time()
    await burst(worker)
    return SimpleNamespace(
        ok=ok.id, bad=bad.id, worker=worker.name, started=started, ended=time.time()
    )


async def test_success_books_the_job_in_finished_with_expiry_result_ttl_from_now(
    booked: SimpleNamespace, sync_redis: redis.Redis
) -> None:
    score = sync_redis.zscore("rq:finished:default", booked.ok)

    assert score is not None
    assert booked.started + 500 - 1 <= score <= booked.ended + 500 + 1


async def test_success_writes_started_at_ended_at_and_worker_name_on_the_job(
    booked: SimpleNamespace, sync_redis: redis.Redis
) -> None:
    job = sync_redis.hgetall(f"rq:job:{booked.ok}")

    assert job[b"status"] == b"finished"
    assert job[b"worker_name"] == booked.worker.encode()
    started_at, ended_at = parse_ts(job[b"started_at"]), parse_ts(job[b"ended_at"])
    assert booked.started - 1 <= started_at.timestamp() <= ended_at.timestamp() <= booked.ended + 1


async def test_success_and_failure_leave_the_wip_registry_empty(
    booked: SimpleNamespace, sync_redis: redis.Redis
) -> None:
    assert sync_redis.zcard("rq:wip:default") == 0


async def test_success_writes_a_type_1_result_with_the_return_value(
    booked: SimpleNamespace, sync_redis: redis.Redis
) -> None:
    outcome = latest_result(sync_redis, booked.ok)

    assert outcome.type == 1
    assert outcome.return_value == 3
    assert outcome.worker_name == booked.worker


async def test_failure_books_the_job_in_failed_with_a_type_2_result(
    booked: SimpleNamespace, sync_redis: redis.Redis
) -> None:
    outcome = latest_result(sync_redis, booked.bad)

    assert status(sync_redis, booked.bad) == "failed"
    assert sync_redis.zscore("rq:failed:default", booked.bad) is not None
    assert outcome.type == 2
    assert "ValueError: boom" in outcome.exc_string


async def test_worker_hash_counts_successful_and_failed_jobs(
    booked: SimpleNamespace, sync_redis: redis.Redis
) -> None:
    counts = sync_redis.hmget(
        f"rq:worker:{booked.worker}", "successful_job_count", "failed_job_count"
    )

    assert counts == [b"1", b"1"]


async def test_an_outcome_sent_again_after_a_lost_reply_is_not_recorded_twice(
    quart_rq: AsyncRQ, sync_redis: redis.Redis
) -> None:
    worker = quart_rq.make_worker(concurrency=1)
    async with serving(worker, sync_redis):
        job = await quart_rq.queue.enqueue("tests.tasks.add", 1, 2)
        await async_wait_until(lambda: status(sync_redis, job.id) == "finished")
        [(_, entry)] = sync_redis.xrange(f"rq:results:{job.id}")
        now = time.time()
        outcome = [job.id, entry[b"execution_id"].decode(), "default", "finished", "", "0", "0"]

        # The same batch again, as the finish loop sends it when a reply was lost.
        batch = MsgpackSerializer.dumps([outcome])
        args = [worker.name, repr(now), epoch_ts(now), 500, 31536000, batch]
        written = await _scripts.FINISH(quart_rq.queue.multiplexer, [], args)

        assert written == [b"recorded"]
        assert sync_redis.xlen(f"rq:results:{job.id}") == 1
        assert sync_redis.hget(f"rq:worker:{worker.name}", "successful_job_count") == b"1"


async def test_worker_deregisters_on_exit_and_records_its_death(
    booked: SimpleNamespace, sync_redis: redis.Redis
) -> None:
    key = f"rq:worker:{booked.worker}"

    assert not sync_redis.sismember("rq:workers", key)
    assert not sync_redis.sismember("rq:workers:default", key)
    assert parse_ts(sync_redis.hget(key, "death")).timestamp() >= booked.started - 1


# -- jobs that cannot run ------------------------------------------------------------------------


def push_garbage_job(client: redis.Redis, queue: str = "default") -> str:
    """A job hash whose ``data`` no serializer can read, written before its id is pushed."""
    job_id = f"garbage-{uuid.uuid4().hex}"
    now = datetime.now(timezone.utc).strftime(TS_FORMAT)
    client.hset(
        f"rq:job:{job_id}",
        mapping={
            "status": "queued",
            "origin": queue,
            "description": "garbage",
            "created_at": now,
            "enqueued_at": now,
            "timeout": 180,
            "data": b"garbage",
        },
    )
    client.rpush(f"rq:queue:{queue}", job_id)
    return job_id


def push_id_without_hash(client: redis.Redis, queue: str = "default") -> str:
    job_id = f"missing-{uuid.uuid4().hex}"
    client.rpush(f"rq:queue:{queue}", job_id)
    return job_id


@pytest.fixture
async def bad_jobs(quart_rq: AsyncRQ, sync_redis: redis.Redis) -> SimpleNamespace:
    """Good, garbage data, unknown function, no hash, good: run by one burst worker."""
    before = await quart_rq.queue.enqueue("tests.tasks.add", 1, 2)
    garbage = push_garbage_job(sync_redis)
    unknown = (await quart_rq.queue.enqueue("tests.nope.missing")).id
    missing = push_id_without_hash(sync_redis)
    after = await quart_rq.queue.enqueue("tests.tasks.add", 3, 4)
    await burst(quart_rq.make_worker(concurrency=1))
    return SimpleNamespace(
        before=before.id, garbage=garbage, unknown=unknown, missing=missing, after=after.id
    )


async def test_job_with_garbage_data_fails_with_a_deserialization_error(
    bad_jobs: SimpleNamespace, sync_redis: redis.Redis
) -> None:
    outcome = latest_result(sync_redis, bad_jobs.garbage)

    assert status(sync_redis, bad_jobs.garbage) == "failed"
    assert outcome is not None and outcome.type == 2
    assert "DeserializationError" in outcome.exc_string


async def test_job_with_an_unknown_function_fails_naming_the_function(
    bad_jobs: SimpleNamespace, sync_redis: redis.Redis
) -> None:
    outcome = latest_result(sync_redis, bad_jobs.unknown)

    assert status(sync_redis, bad_jobs.unknown) == "failed"
    assert outcome is not None and outcome.type == 2
    assert "tests.nope.missing" in outcome.exc_string


async def test_job_id_without_a_hash_is_dropped_and_nothing_is_written_for_it(
    bad_jobs: SimpleNamespace, sync_redis: redis.Redis
) -> None:
    missing = bad_jobs.missing

    assert latest_result(sync_redis, missing) is None
    assert sync_redis.zscore("rq:failed:default", missing) is None
    assert not sync_redis.exists(f"rq:job:{missing}")
    assert missing.encode() not in sync_redis.lrange("rq:queue:default", 0, -1)


async def test_good_jobs_around_bad_ones_succeed(
    bad_jobs: SimpleNamespace, sync_redis: redis.Redis
) -> None:
    assert statuses(sync_redis, [bad_jobs.before, bad_jobs.after]) == ["finished", "finished"]
    assert sync_redis.llen("rq:queue:default") == 0
    assert sync_redis.zcard("rq:wip:default") == 0


async def test_worker_keeps_serving_after_bad_jobs(
    quart_rq: AsyncRQ, sync_redis: redis.Redis
) -> None:
    worker = quart_rq.make_worker(concurrency=1)
    async with serving(worker, sync_redis) as task:
        bad = [
            push_garbage_job(sync_redis),
            (await quart_rq.queue.enqueue("tests.nope.missing")).id,
            push_id_without_hash(sync_redis),
        ]
        await async_wait_until(lambda: sync_redis.llen("rq:queue:default") == 0)
        good = await quart_rq.queue.enqueue("tests.tasks.add", 1, 2)

        await async_wait_until(
            lambda: task.done() or status(sync_redis, good.id) == "finished", what="the good job"
        )
        assert not task.done(), f"the worker stopped after bad jobs {bad}"


# -- Redis restarts ------------------------------------------------------------------------------


async def test_worker_reconnects_after_redis_restarts(
    redis_server: RedisServer | None,
    quart_rq: AsyncRQ,
    sync_redis: redis.Redis,
    caplog: pytest.LogCaptureFixture,
) -> None:
    if redis_server is None:
        pytest.skip("needs the private redis-server (AIORQ_TEST_REDIS_URL is set)")
    worker = quart_rq.make_worker(heartbeat=1, grace_period=1)
    async with serving(worker, sync_redis) as task:
        try:
            redis_server.stop()
            await async_wait_until(  # the idle worker has met the dead connection
                lambda: (
                    task.done()
                    or any(
                        r.name.startswith("aiorq_flask")
                        and r.levelno >= logging.WARNING
                        and "retrying" in r.getMessage()
                        for r in caplog.records
                    )
                ),
                what="the worker to notice the outage",
            )
        finally:
            if redis_server.process is None:
                redis_server.start()
        assert not task.done(), "the worker stopped when Redis went away"
        job = await quart_rq.queue.enqueue("tests.tasks.add", 1, 2)

        await async_wait_until(
            lambda: task.done() or status(sync_redis, job.id) == "finished",
            timeout=20,
            what="the job enqueued after the restart",
        )
        assert status(sync_redis, job.id) == "finished"


async def test_idle_worker_outlives_its_clients_socket_timeout(
    quart_rq: AsyncRQ, sync_redis: redis.Redis
) -> None:
    """An empty queue for longer than the client's read timeout (redis-py 8 defaults to 5 s)
    must not end the worker: it stays up that long, then still takes a new job."""
    worker = quart_rq.make_worker(grace_period=1)
    async with serving(worker, sync_redis) as task:
        socket_timeout = worker.redis.connection_pool.connection_kwargs.get("socket_timeout") or 5
        await asyncio.wait({task}, timeout=socket_timeout + 1.5)  # the idle period under test
        assert not task.done(), f"the idle worker ended: {task}"
        job = await quart_rq.queue.enqueue("tests.tasks.add", 1, 2)

        await async_wait_until(
            lambda: task.done() or status(sync_redis, job.id) == "finished", what="the new job"
        )
        assert status(sync_redis, job.id) == "finished"


# -- scheduled jobs and retries --------------------------------------------------------------------


async def test_job_enqueued_in_one_second_runs_once_due(
    quart_rq: AsyncRQ, sync_redis: redis.Redis
) -> None:
    job = await quart_rq.queue.enqueue_in(1, "tests.tasks.add", 1, 2)
    due = sync_redis.zscore("rq:scheduled:default", job.id)
    assert status(sync_redis, job.id) == "scheduled"

    async with serving(quart_rq.make_worker(), sync_redis):
        await async_wait_until(lambda: status(sync_redis, job.id) == "finished", what="the job")

    started_at = parse_ts(sync_redis.hget(f"rq:job:{job.id}", "started_at"))
    assert started_at.timestamp() >= due
    assert latest_result(sync_redis, job.id).return_value == 3


async def test_retried_job_that_fails_once_ends_finished_after_one_retry(
    quart_rq: AsyncRQ, sync_redis: redis.Redis, redis_url: str
) -> None:
    job = await quart_rq.queue.enqueue(
        "tests.worker_jobs.fail_once", redis_url, "attempts", retry=Retry(2)
    )

    await burst(quart_rq.make_worker())

    assert status(sync_redis, job.id) == "finished"
    assert sync_redis.get("attempts") == b"2"
    assert sync_redis.hget(f"rq:job:{job.id}", "retries_left") == b"1"
    assert sync_redis.xlen(f"rq:results:{job.id}") == 1
    assert latest_result(sync_redis, job.id).return_value == 2


# -- claiming ahead (prefetch) -------------------------------------------------------------


async def test_jobs_claimed_ahead_never_run_beyond_the_concurrency(
    quart_rq: AsyncRQ, sync_redis: redis.Redis, redis_url: str
) -> None:
    worker = quart_rq.make_worker(concurrency=2, prefetch=3)
    jobs = [
        await quart_rq.queue.enqueue("tests.worker_jobs.count_overlap", redis_url, "c", 0.05)
        for _ in range(10)
    ]

    await burst(worker)

    assert sync_redis.get("c:peak") == b"2"
    assert statuses(sync_redis, [job.id for job in jobs]) == ["finished"] * 10


async def test_stop_puts_jobs_claimed_ahead_back_on_their_queue(
    quart_rq: AsyncRQ, sync_redis: redis.Redis
) -> None:
    worker = quart_rq.make_worker(concurrency=2, prefetch=3, grace_period=0)
    jobs = [await quart_rq.queue.enqueue("tests.tasks.async_sleep", 30) for _ in range(5)]
    async with serving(worker, sync_redis):
        await async_wait_until(lambda: sync_redis.llen("rq:queue:default") == 0)

    ids = {job.id.encode() for job in jobs}
    assert set(sync_redis.lrange("rq:queue:default", 0, -1)) == ids
    assert statuses(sync_redis, [job.id for job in jobs]) == ["queued"] * 5
    assert sync_redis.zcard("rq:wip:default") == 0


async def test_worker_state_is_idle_once_its_jobs_are_recorded(
    quart_rq: AsyncRQ, sync_redis: redis.Redis
) -> None:
    worker = quart_rq.make_worker()
    async with serving(worker, sync_redis):
        job = await quart_rq.queue.enqueue("tests.tasks.add", 1, 2)
        await async_wait_until(lambda: status(sync_redis, job.id) == "finished")

        assert sync_redis.hget(f"rq:worker:{worker.name}", "state") == b"idle"


# -- big payloads -------------------------------------------------------------------------------


async def test_jobs_with_big_payloads_run_with_their_whole_arguments(
    quart_rq: AsyncRQ, sync_redis: redis.Redis
) -> None:
    big = os.urandom(3 << 20)  # random: stored as plain msgpack, and never through a script
    text = "abc" * (1 << 20)  # compressible: stored compressed
    other = "é\U0001f600" * (1 << 19)  # 3 MiB of UTF-8, beside small arguments
    one = await quart_rq.queue.enqueue("tests.tasks.echo", big)
    queue = quart_rq.queue
    [two] = await queue.enqueue_many([queue.prepare_data("tests.tasks.echo", (text,))])
    three = await queue.enqueue("tests.tasks.echo", 1, (2,), name=other, blob=big[:70_000])

    await burst(quart_rq.make_worker())

    assert latest_result(sync_redis, one.id).return_value == [[big], {}]
    assert latest_result(sync_redis, two.id).return_value == [[text], {}]
    assert latest_result(sync_redis, three.id).return_value == [
        [1, (2,)],
        {"name": other, "blob": big[:70_000]},
    ]


async def test_a_failed_job_with_failure_ttl_minus_one_is_kept_for_good(
    quart_rq: AsyncRQ, sync_redis: redis.Redis
) -> None:
    job = await quart_rq.queue.enqueue("tests.tasks.fail", failure_ttl=-1)

    await burst(quart_rq.make_worker())

    assert status(sync_redis, job.id) == "failed"
    assert sync_redis.ttl(f"rq:job:{job.id}") == -1
    assert sync_redis.ttl(f"rq:results:{job.id}") == -1
    assert sync_redis.zscore("rq:failed:default", job.id) == -1
