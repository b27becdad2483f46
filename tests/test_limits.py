"""Input limits: ``RQ_MAX_JOB_BYTES`` (default 64 MiB) bounds a job's ``data`` field.

A payload above it is refused at enqueue, naming the limit and the size, with nothing
written. A worker that meets one in Redis (written by another writer) fails it unread:
``claim.lua`` reports the field's size (``HSTRLEN``) and leaves a payload past the limit
out of its reply, and the worker never asks for it.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import redis
from quart import Quart

from aiorq_flask import AsyncRQ, ConfigError, InvalidJobError, Queue

from .apps.worker_support import burst, latest_result, status

LIMIT = 10_000
MiB = 1 << 20


@pytest.fixture
async def limited(make_quart_app: Callable[..., Quart]) -> AsyncIterator[tuple[Quart, AsyncRQ]]:
    app = make_quart_app(RQ_MAX_JOB_BYTES=LIMIT, RQ_WORKER_ALLOWED_MODULES=["tests"])
    rq = AsyncRQ(app)
    yield app, rq
    await rq.state(app).pools.aclose()


def queue_of(pair: tuple[Quart, AsyncRQ]) -> Queue:
    app, rq = pair
    return rq.state(app).queues["default"]


# -- the config key --------------------------------------------------------------------------


def test_the_default_limit_is_64_mib(make_quart_app: Callable[..., Quart]) -> None:
    app = make_quart_app()

    assert AsyncRQ(app).state(app).queues["default"].max_job_bytes == 64 * MiB


@pytest.mark.parametrize("value", [0, -1, "64MiB", 1.5, True, None], ids=repr)
def test_a_limit_that_is_not_a_positive_int_fails_at_init_app(
    make_quart_app: Callable[..., Quart], value: Any
) -> None:
    with pytest.raises(ConfigError, match=f"RQ_MAX_JOB_BYTES = {value!r}"):
        AsyncRQ(make_quart_app(RQ_MAX_JOB_BYTES=value))


# -- at enqueue ----------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["enqueue", "enqueue_in", "enqueue_many"])
async def test_a_payload_above_the_limit_is_refused_naming_limit_and_size_and_nothing_is_written(
    limited: tuple[Quart, AsyncRQ], sync_redis: redis.Redis, how: str
) -> None:
    queue = queue_of(limited)
    big = os.urandom(2 * LIMIT)  # random: zlib cannot bring it under the limit

    with pytest.raises(InvalidJobError) as caught:
        if how == "enqueue":
            await queue.enqueue("tests.tasks.echo", big)
        elif how == "enqueue_in":
            await queue.enqueue_in(60, "tests.tasks.echo", big)
        else:
            small = queue.prepare_data("tests.tasks.echo", ("small",))
            await queue.enqueue_many([small, queue.prepare_data("tests.tasks.echo", (big,))])

    size = len(queue.prepare_data("tests.tasks.echo", (big,)).payload)
    message = str(caught.value)
    assert f"RQ_MAX_JOB_BYTES = {LIMIT:,}" in message
    assert f"{size:,} bytes" in message
    assert "tests.tasks.echo" in message
    assert sync_redis.dbsize() == 0


async def test_a_payload_at_the_limit_is_written_and_runs(
    limited: tuple[Quart, AsyncRQ], sync_redis: redis.Redis
) -> None:
    app, rq = limited
    queue = queue_of(limited)
    data = queue.prepare_data("tests.tasks.echo", (os.urandom(LIMIT - 200),))
    assert len(data.payload) <= LIMIT

    [job] = await queue.enqueue_many([data])
    await burst(rq.make_worker(app=app))

    assert status(sync_redis, job.id) == "finished"


# -- in the worker -----------------------------------------------------------------------------


@pytest.mark.parametrize("size", [2 * LIMIT, 2 * MiB], ids=["small", "past-BIG_DATA"])
async def test_a_worker_fails_a_payload_above_its_limit_unread(
    make_quart_app: Callable[..., Quart],
    limited: tuple[Quart, AsyncRQ],
    sync_redis: redis.Redis,
    size: int,
) -> None:
    """Written by a writer with a higher limit; the payload is garbage, so a worker that
    decoded it would fail it for that instead."""
    writer_app = make_quart_app(RQ_MAX_JOB_BYTES=64 * MiB)
    writer = AsyncRQ(writer_app)
    job = await writer.state(writer_app).queues["default"].enqueue("tests.tasks.add", 1, 2)
    await writer.state(writer_app).pools.aclose()
    sync_redis.hset(f"rq:job:{job.id}", "data", b"\x00" * size)
    app, rq = limited

    await burst(rq.make_worker(app=app))

    result = latest_result(sync_redis, job.id)
    assert result is not None and result.type == 2
    assert result.exc_string == (
        f"the worker did not read this job: its payload is {size:,} bytes, above "
        f"RQ_MAX_JOB_BYTES = {LIMIT:,}"
    )
    assert status(sync_redis, job.id) == "failed"
