"""Periodic jobs: ``rq.register_cron(...)`` and ``@rq.job``'s ``.register_cron(...)``.

Registration is validated before anything runs; each tick is enqueued once however many
workers run (the last tick per name lives in Redis, compared and set with the enqueue),
and a restart neither skips nor repeats a tick. Worker processes run the cron app
(``tests/apps/cron_app.py``).
"""

from __future__ import annotations

import re
import signal
import sys
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import redis
from quart import Quart

from aiorq_flask import AsyncRQ, ConfigError, InvalidJobError, RateLimit
from aiorq_flask.cron import CronJob, cron_job
from aiorq_flask.worker._cron import CronPass, enqueue_tick

from .apps.worker_support import (
    Process,
    all_have_status,
    async_wait_until,
    is_registered,
    other_db_url,
    serving,
    unique_name,
    wait_until,
    worker_env,
)

CRON_APP = "tests.apps.cron_app:app"
CRON_STATE = "rq:cron:tests.tick"
RECORD = "tests.worker_jobs.record"


# -- registration -----------------------------------------------------------------------------


def test_exactly_one_of_cron_and_interval_is_given() -> None:
    with pytest.raises(InvalidJobError, match="exactly one of cron"):
        cron_job(RECORD)
    with pytest.raises(InvalidJobError, match="exactly one of cron"):
        cron_job(RECORD, cron="* * * * *", interval=60)


@pytest.mark.parametrize("expression", ["* * * *", "* * * * * *", "61 * * * *", "daily"])
def test_a_cron_expression_must_have_five_valid_fields(expression: str) -> None:
    with pytest.raises(InvalidJobError, match=re.escape(f"cron={expression!r}")):
        cron_job(RECORD, cron=expression)


@pytest.mark.parametrize("interval", [0, 0.5, -3, timedelta(milliseconds=1500), "60"])
def test_an_interval_is_whole_seconds_of_at_least_one(interval: object) -> None:
    with pytest.raises(InvalidJobError, match="interval="):
        cron_job(RECORD, interval=interval)  # type: ignore[arg-type]


def test_an_unknown_timezone_is_refused_by_name() -> None:
    with pytest.raises(InvalidJobError, match="Mars/Olympus"):
        cron_job(RECORD, cron="0 9 * * *", timezone="Mars/Olympus")


def test_bad_options_and_arguments_are_refused_at_registration() -> None:
    with pytest.raises(TypeError, match="bogus"):
        cron_job(RECORD, interval=60, bogus=1)
    with pytest.raises(InvalidJobError, match="job_id"):
        cron_job(RECORD, interval=60, job_id="x")
    with pytest.raises(InvalidJobError, match="lambda"):
        cron_job(lambda: None, interval=60)


reports = AsyncRQ()  # registrations come before init_app, as routes do


@reports.job(queue="email", job_timeout=30)
def send_report() -> None: ...


def test_the_name_defaults_to_the_functions_path() -> None:
    job = reports.register_cron("tests.tasks.add", interval=60, args=(1, 2))
    decorated = send_report.register_cron(cron="0 9 * * *")

    assert job.name == "tests.tasks.add"
    assert decorated.name == "tests.test_cron.send_report"
    assert (decorated.queue, decorated.options) == ("email", {"job_timeout": 30})


def test_registering_a_name_twice_is_an_error_naming_it(
    make_quart_app: Callable[..., Quart],
) -> None:
    rq = AsyncRQ(make_quart_app())
    rq.register_cron("tests.tasks.add", interval=60, name="nightly")

    with pytest.raises(InvalidJobError, match="'nightly'"):
        rq.register_cron("tests.tasks.echo", cron="0 3 * * *", name="nightly")
    rq.register_cron("tests.tasks.echo", interval=60, name="reports.daily")
    with pytest.raises(InvalidJobError, match="same job ids"):
        rq.register_cron("tests.tasks.echo", interval=60, name="reports_daily")


def test_a_periodic_job_on_an_unconfigured_queue_stops_the_worker_at_start(
    make_quart_app: Callable[..., Quart],
) -> None:
    app = make_quart_app()
    rq = AsyncRQ(app)
    rq.register_cron("tests.tasks.add", interval=60, args=(1, 2), queue="reports")

    with pytest.raises(ConfigError, match="'reports'"):
        rq.make_worker(app=app)


# -- ticks --------------------------------------------------------------------------------------


def test_interval_ticks_fall_on_multiples_of_the_interval() -> None:
    job = cron_job(RECORD, interval=3600)
    now = datetime(2026, 12, 1, 10, 17, 5, tzinfo=timezone.utc).timestamp()

    assert job.latest_tick(now) == datetime(2026, 12, 1, 10, tzinfo=timezone.utc).timestamp()
    assert job.next_tick(now) == datetime(2026, 12, 1, 11, tzinfo=timezone.utc).timestamp()


def test_cron_ticks_are_read_in_the_jobs_timezone() -> None:
    job = cron_job(RECORD, cron="0 9 * * *", timezone="America/New_York")
    now = datetime(2026, 7, 1, 12, tzinfo=timezone.utc).timestamp()  # 08:00 in New York

    latest = datetime.fromtimestamp(job.latest_tick(now), ZoneInfo("America/New_York"))
    following = datetime.fromtimestamp(job.next_tick(now), ZoneInfo("America/New_York"))
    assert (latest.day, latest.hour, following.day, following.hour) == (30, 9, 1, 9)


# -- one tick, one job ----------------------------------------------------------------------------


@pytest.fixture
def tick_job() -> CronJob:
    return cron_job("tests.tasks.add", interval=10, args=(1, 2), name="adder")


async def test_a_new_name_starts_at_its_next_tick_then_each_tick_is_enqueued_once(
    quart_rq: AsyncRQ, tick_job: CronJob, sync_redis: redis.Redis
) -> None:
    queue = quart_rq.queue

    assert not await enqueue_tick(queue, tick_job, 100)  # first sight: no job
    assert await queue.count() == 0
    assert await enqueue_tick(queue, tick_job, 110)
    assert not await enqueue_tick(queue, tick_job, 110)  # another worker, same tick
    assert not await enqueue_tick(queue, tick_job, 100)  # a late worker's older tick
    assert await enqueue_tick(queue, tick_job, 150)  # missed ticks: caught up once

    assert await queue.job_ids() == ["cron-adder-110", "cron-adder-150"]
    assert sync_redis.hgetall("rq:cron:adder") == {b"tick": b"150", b"job_id": b"cron-adder-150"}


async def test_a_pass_asks_redis_once_per_tick(
    quart_rq: AsyncRQ, tick_job: CronJob, sync_redis: redis.Redis
) -> None:
    cron_pass = CronPass([tick_job], quart_rq.queues)
    sync_redis.hset("rq:cron:adder", "tick", 0)

    assert await cron_pass.run() == 1
    sync_redis.delete("rq:cron:adder")  # were Redis asked again, it would enqueue again
    assert await cron_pass.run() == 0
    assert await quart_rq.queue.count() == 1


async def test_without_a_scheduler_a_worker_moves_no_due_job_and_enqueues_no_tick(
    quart_rq: AsyncRQ, sync_redis: redis.Redis
) -> None:
    quart_rq.register_cron("tests.tasks.add", interval=1, args=(1, 2), name="adder")
    sync_redis.hset("rq:cron:adder", "tick", 0)
    scheduled = await quart_rq.queue.enqueue_in(0, "tests.tasks.add", 1, 2)
    worker = quart_rq.make_worker(scheduler=False, heartbeat=0.2)

    async with serving(worker, sync_redis):
        # a few heartbeats' worth of upkeep passes, which would have moved it
        await _wait_for_heartbeats(sync_redis, worker.name, 3)

    assert sync_redis.zscore("rq:scheduled:default", scheduled.id) is not None
    assert sync_redis.hget("rq:cron:adder", "tick") == b"0"


async def _wait_for_heartbeats(client: redis.Redis, name: str, count: int) -> None:
    seen: set[bytes] = set()

    def beats() -> bool:
        beat = client.hget(f"rq:worker:{name}", "last_heartbeat")
        if beat:
            seen.add(beat)
        return len(seen) >= count

    await async_wait_until(beats, what=f"{count} heartbeats")


# -- worker processes -----------------------------------------------------------------------------


def cron_worker(log_dir: Path, redis_url: str, key: str, interval: int, name: str) -> Process:
    """Our worker process on the cron app: ``record(url, key, "tick")`` every ``interval``."""
    argv = [sys.executable, "-m", "aiorq_flask.worker", "--app", CRON_APP, "--name", name]
    env = worker_env(redis_url)
    env.update(CRON_APP_KEY=key, CRON_APP_INTERVAL=str(interval))
    return Process([*argv, "--heartbeat", "1"], env, log_dir / f"{name}.log")


def _cron_ticks(client: redis.Redis) -> list[int]:
    ids = [key.decode().removeprefix("rq:job:") for key in client.scan_iter("rq:job:cron-*")]
    return sorted(int(job_id.rsplit("-", 1)[1]) for job_id in ids)


def test_three_workers_for_five_seconds_run_an_every_second_job_once_per_tick(
    tmp_path: Path, redis_url: str, sync_redis: redis.Redis
) -> None:
    key = unique_name("ticks")
    names = [unique_name("cron") for _ in range(3)]
    workers = [cron_worker(tmp_path, redis_url, key, 1, name) for name in names]
    try:
        for name, worker in zip(names, workers, strict=True):
            wait_until(lambda n=name: is_registered(sync_redis, n), 30, worker.output)
        start = int(wait_until(lambda: sync_redis.hget(CRON_STATE, "tick"), 10))
        wait_until(lambda: time.time() >= start + 5.5, 10, "five seconds of ticks")
        for worker in workers:
            worker.signal(signal.SIGTERM)
        for worker in workers:
            assert worker.wait(30) == 0, worker.output()
    finally:
        for worker in workers:
            worker.kill()

    ticks = _cron_ticks(sync_redis)
    in_window = [t for t in ticks if start < t <= start + 5]
    assert 4 <= len(in_window) <= 6, ticks
    assert ticks == list(range(ticks[0], ticks[0] + len(ticks))), "a tick skipped"
    finished = [
        t for t in ticks if all_have_status(sync_redis, [f"cron-tests_tick-{t}"], "finished")
    ]
    assert sync_redis.llen(key) == len(finished)  # no job ran twice
    for tick in finished:
        assert sync_redis.xlen(f"rq:results:cron-tests_tick-{tick}") == 1


def test_a_worker_restarted_mid_run_neither_skips_nor_repeats_a_tick(
    tmp_path: Path, redis_url: str, sync_redis: redis.Redis
) -> None:
    """The sole worker is killed just after a tick and started again: the next ticks run
    on time, and the new worker repeats none (a tick due while it starts is run late)."""
    key, every = unique_name("ticks"), 4
    worker = cron_worker(tmp_path, redis_url, key, every, unique_name("first"))
    try:
        first = int(wait_until(lambda: sync_redis.hget(CRON_STATE, "tick"), 30, worker.output))
        wait_until(lambda: _cron_ticks(sync_redis), 2 * every, worker.output)
        worker.kill()  # SIGKILL, mid-run
        worker = cron_worker(tmp_path, redis_url, key, every, unique_name("second"))
        wait_until(lambda: len(_cron_ticks(sync_redis)) >= 3, 5 * every, worker.output)
    finally:
        worker.kill()

    ticks = _cron_ticks(sync_redis)
    assert ticks[0] <= first + every
    assert ticks == [ticks[0] + every * n for n in range(len(ticks))], "a tick skipped or doubled"


async def test_a_rate_limited_periodic_job_waits_for_a_slot_like_any_other(
    quart_rq: AsyncRQ, sync_redis: redis.Redis
) -> None:
    limited = cron_job("tests.tasks.add", interval=10, args=(1, 2), rate_limit=RateLimit("r", 1))
    await quart_rq.queue.enqueue("tests.tasks.add", 0, 0, rate_limit=RateLimit("r", 1))
    sync_redis.hset("rq:cron:tests.tasks.add", "tick", 0)

    assert await enqueue_tick(quart_rq.queue, limited, 10)
    assert not await enqueue_tick(quart_rq.queue, limited, 10)

    assert sync_redis.hget("rq:job:cron-tests_tasks_add-10", "status") == b"rate_limited"
    assert sync_redis.zrange("rq:rl:r:rate_limited", 0, -1) == [b"cron-tests_tasks_add-10"]


async def test_a_periodic_job_is_enqueued_by_the_workers_of_its_queues_own_connection(
    make_quart_app: Callable[..., Quart],
    redis_url: str,
    sync_redis: redis.Redis,
    email_redis: redis.Redis,
) -> None:
    app = make_quart_app(
        RQ_QUEUES=["default", "email"], RQ_QUEUE_CONNECTIONS={"email": other_db_url(redis_url)}
    )
    rq = AsyncRQ(app)
    rq.register_cron("tests.tasks.add", interval=1, args=(1, 2), queue="email", name="mail")
    email_redis.hset("rq:cron:mail", "tick", 0)
    async with app.app_context():
        on_default, on_email = rq.make_worker("default"), rq.make_worker("email")
        assert await on_default._crons.run() == 0
        assert await on_email._crons.run() == 1
        await rq.state().pools.aclose()

    assert (email_redis.llen("rq:queue:email"), sync_redis.llen("rq:queue:email")) == (1, 0)
