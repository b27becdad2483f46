"""Pools per (resolved connection, running loop): sharing, isolation, bounds and closing."""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import Callable
from urllib.parse import urlsplit

import pytest
import redis
from flask import Flask
from quart import Quart
from redis.asyncio import Redis

from aiorq_flask import AsyncRQ

from .client_list import ConnectionSampler, connections_named, named, wait_for_connections


def with_db(url: str, db: int) -> str:
    """``url`` pointing at database ``db`` of the same server."""
    return urlsplit(url)._replace(path=f"/{db}").geturl()


# -- one client per connection within a loop -----------------------------------------------


async def test_queues_on_the_same_connection_share_one_client_in_a_loop(
    quart_rq: AsyncRQ,
) -> None:
    high, default, low = quart_rq.queues.values()

    assert high.connection is default.connection is low.connection


async def test_queue_connection_is_the_same_client_on_every_access(quart_rq: AsyncRQ) -> None:
    assert quart_rq.queue.connection is quart_rq.queue.connection


async def test_queues_referencing_a_connection_share_its_client(
    make_quart_app: Callable[..., Quart], redis_url: str
) -> None:
    app = make_quart_app(
        RQ_QUEUES=["x", "y", "z"],
        RQ_QUEUE_CONNECTIONS={"x": with_db(redis_url, 1), "y": "x", "z": "y"},
    )
    rq = AsyncRQ(app)

    async with app.app_context():
        x, y, z = rq.get_queue("x"), rq.get_queue("y"), rq.get_queue("z")
        try:
            assert x.connection is y.connection is z.connection
        finally:
            await rq.state().pools.aclose()


async def test_queues_on_different_connections_get_different_clients(
    make_quart_app: Callable[..., Quart], redis_url: str
) -> None:
    app = make_quart_app(RQ_QUEUES=["x", "y"], RQ_QUEUE_CONNECTIONS={"y": with_db(redis_url, 1)})
    rq = AsyncRQ(app)

    async with app.app_context():
        try:
            assert rq.queue.connection is rq.get_queue("x").connection
            assert rq.queue.connection is not rq.get_queue("y").connection
        finally:
            await rq.state().pools.aclose()


async def test_entries_with_identical_urls_get_different_clients(
    make_quart_app: Callable[..., Quart], redis_url: str
) -> None:
    url = with_db(redis_url, 1)
    app = make_quart_app(RQ_QUEUES=["x", "y"], RQ_QUEUE_CONNECTIONS={"x": url, "y": url})
    rq = AsyncRQ(app)

    async with app.app_context():
        try:
            assert rq.get_queue("x").connection is not rq.get_queue("y").connection
        finally:
            await rq.state().pools.aclose()


async def test_each_connection_reaches_its_own_database(
    make_quart_app: Callable[..., Quart], redis_url: str
) -> None:
    app = make_quart_app(RQ_QUEUES=["x"], RQ_QUEUE_CONNECTIONS={"x": with_db(redis_url, 1)})
    rq = AsyncRQ(app)
    db1 = redis.Redis.from_url(with_db(redis_url, 1))
    db1.delete("which")

    async with app.app_context():
        try:
            await rq.queue.connection.set("which", "db0")
            await rq.get_queue("x").connection.set("which", "db1")
        finally:
            await rq.state().pools.aclose()

    try:
        assert db1.get("which") == b"db1"
    finally:
        db1.delete("which")
        db1.close()
    db0 = redis.Redis.from_url(with_db(redis_url, 0))
    try:
        assert db0.get("which") == b"db0"
    finally:
        db0.close()


# -- one client per loop -------------------------------------------------------------------


def test_another_asyncio_run_gets_another_client(
    make_quart_app: Callable[..., Quart],
) -> None:
    app = make_quart_app()
    rq = AsyncRQ(app)

    async def client_of_this_loop() -> Redis:
        async with app.app_context():
            client = rq.queue.connection
            await client.ping()
            return client

    first = asyncio.run(client_of_this_loop())
    second = asyncio.run(client_of_this_loop())

    assert first is not second


async def test_a_threads_loop_gets_another_client(quart_rq: AsyncRQ) -> None:
    async def ping_and_return_client() -> Redis:
        client = quart_rq.queue.connection
        await client.ping()
        return client

    mine = quart_rq.queue.connection
    await mine.ping()
    theirs = await asyncio.to_thread(asyncio.run, ping_and_return_client())

    assert theirs is not mine
    assert quart_rq.queue.connection is mine


def test_queue_connection_outside_a_running_loop_raises_runtime_error(redis_url: str) -> None:
    app = Flask(__name__)
    app.config.update(RQ_CONNECTION=redis_url)
    rq = AsyncRQ(app)

    with app.app_context(), pytest.raises(RuntimeError, match="running event loop"):
        _ = rq.queue.connection


# -- the in-process Quart app --------------------------------------------------------------


async def test_quart_queues_on_one_connection_share_the_client_and_others_do_not(
    make_quart_app: Callable[..., Quart], redis_url: str
) -> None:
    app = make_quart_app(
        RQ_QUEUES=["x", "y", "other"],
        RQ_QUEUE_CONNECTIONS={"y": "default", "other": with_db(redis_url, 1)},
    )
    rq = AsyncRQ(app)

    async with app.app_context():
        try:
            assert rq.queue.connection is rq.queues["x"].connection is rq.queues["y"].connection
            assert rq.queues["other"].connection is not rq.queue.connection
        finally:
            await rq.state().pools.aclose()


# -- bounds --------------------------------------------------------------------------------


async def test_dict_form_sets_the_pools_max_connections(
    make_quart_app: Callable[..., Quart], redis_url: str
) -> None:
    app = make_quart_app(RQ_CONNECTION=named(redis_url, "max-dict", max_connections=3))
    rq = AsyncRQ(app)

    async with app.app_context():
        try:
            assert rq.queue.connection.connection_pool.max_connections == 3
        finally:
            await rq.state().pools.aclose()


async def test_url_form_sets_the_pools_max_connections(
    make_quart_app: Callable[..., Quart], redis_url: str
) -> None:
    app = make_quart_app(RQ_CONNECTION=f"{redis_url}?max_connections=3")
    rq = AsyncRQ(app)

    async with app.app_context():
        try:
            assert rq.queue.connection.connection_pool.max_connections == 3
        finally:
            await rq.state().pools.aclose()


async def test_pool_without_max_connections_is_still_bounded(quart_rq: AsyncRQ) -> None:
    # redis-py's own default, 2**31, would mean "unbounded".
    assert quart_rq.queue.connection.connection_pool.max_connections < 2**31


async def test_pool_of_three_serves_twenty_concurrent_blpops_on_at_most_three_connections(
    make_quart_app: Callable[..., Quart],
    redis_url: str,
) -> None:
    app = make_quart_app(RQ_CONNECTION=named(redis_url, "pool-of-three", max_connections=3))
    rq = AsyncRQ(app)

    async with app.app_context():
        client = rq.queue.connection
        try:
            with ConnectionSampler(redis_url, "pool-of-three") as sampler:
                results = await asyncio.gather(
                    *(client.blpop(["never-pushed"], timeout=0.2) for _ in range(20))
                )
        finally:
            await rq.state().pools.aclose()

    assert results == [None] * 20
    assert sampler.samples > 0
    assert sampler.highest["pool-of-three"] == 3


# -- closing -------------------------------------------------------------------------------


async def test_aclose_closes_the_running_loops_connections(
    make_quart_app: Callable[..., Quart], redis_url: str, sync_redis: redis.Redis
) -> None:
    app = make_quart_app(RQ_CONNECTION=named(redis_url, "aclose-me"))
    rq = AsyncRQ(app)

    async with app.app_context():
        await asyncio.gather(*(rq.queue.connection.blpop(["never"], 0.05) for _ in range(3)))
        assert connections_named(sync_redis, "aclose-me") == 3
        await rq.state().pools.aclose()

    assert wait_for_connections(sync_redis, "aclose-me", 0) == 0


async def test_queue_connection_after_aclose_is_a_new_working_client(quart_rq: AsyncRQ) -> None:
    before = quart_rq.queue.connection
    await before.ping()

    await quart_rq.state().pools.aclose()
    after = quart_rq.queue.connection

    assert after is not before
    assert await after.ping() is True


def test_asyncio_run_closes_the_loops_connections_before_the_loop_closes(
    make_quart_app: Callable[..., Quart], redis_url: str, sync_redis: redis.Redis
) -> None:
    app = make_quart_app(RQ_CONNECTION=named(redis_url, "closed-with-loop"))
    rq = AsyncRQ(app)
    seen: list[int] = []

    async def use_two_connections() -> None:
        async with app.app_context():
            await asyncio.gather(*(rq.queue.connection.blpop(["never"], 0.05) for _ in range(2)))
            seen.append(connections_named(sync_redis, "closed-with-loop"))

    asyncio.run(use_two_connections())
    gc.collect()  # a connection left for the garbage collector would warn here

    assert seen == [2]
    assert wait_for_connections(sync_redis, "closed-with-loop", 0) == 0


def test_a_finished_loop_is_not_kept_alive_by_its_pools(
    make_quart_app: Callable[..., Quart],
) -> None:
    app = make_quart_app()
    rq = AsyncRQ(app)
    loops: list[weakref.ref[asyncio.AbstractEventLoop]] = []

    async def ping() -> None:
        loops.append(weakref.ref(asyncio.get_running_loop()))
        async with app.app_context():
            await rq.queue.connection.ping()

    for _ in range(3):
        asyncio.run(ping())
    gc.collect()

    assert [loop() for loop in loops] == [None, None, None]


def run_a_loop_whose_cancelled_task_writes(app: Quart, first: str) -> None:
    """``asyncio.run`` a coroutine that leaves a task behind; cancelled at loop end, the task
    writes to Redis. ``first`` says whether the loop's client or the task exists first."""
    rq = AsyncRQ(app)

    async def write_on_cancel() -> None:
        try:
            await asyncio.get_running_loop().create_future()
        finally:
            await rq.queue.connection.set("cleanup", "done")

    async def start_task_and_return() -> None:
        async with app.app_context():
            if first == "connection":
                await rq.queue.connection.ping()
                asyncio.create_task(write_on_cancel())  # noqa: RUF006
            else:
                asyncio.create_task(write_on_cancel())  # noqa: RUF006
                await rq.queue.connection.ping()
            await asyncio.sleep(0)

    asyncio.run(start_task_and_return())


@pytest.mark.parametrize("first", ["connection", "task"])
def test_connection_used_by_a_task_cancelled_at_loop_end_is_closed_before_the_loop_closes(
    make_quart_app: Callable[..., Quart],
    redis_url: str,
    sync_redis: redis.Redis,
    first: str,
) -> None:
    # A Flask view's loop ends with asyncio.run cancelling leftover tasks; their cleanup
    # may still write to Redis, and whatever it opens must be closed with the loop.
    app = make_quart_app(RQ_CONNECTION=named(redis_url, "late-user"))

    run_a_loop_whose_cancelled_task_writes(app, first)
    del app  # nothing here keeps the pools alive: a leaked connection warns at gc.collect()

    try:
        assert sync_redis.get("cleanup") == b"done"
        assert wait_for_connections(sync_redis, "late-user", 0) == 0
    finally:
        gc.collect()
