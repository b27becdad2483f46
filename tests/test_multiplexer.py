"""The shared script connection: replies reach the right callers, failures stay contained."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis
from redis.asyncio import BlockingConnectionPool, Connection, Redis
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool

from aiorq_flask._multiplexer import Multiplexer, endpoint_of, locator_of
from aiorq_flask.worker._server_version import hello_fields

from .apps.worker_support import async_wait_until
from .client_list import blocked_in_wait, connections_named, named, wait_for_connections
from .redis_server import RedisServer


@pytest.fixture
async def multiplexer(redis_url: str) -> AsyncIterator[Multiplexer]:
    client = Redis(**named(redis_url, "mux-test"))
    multiplexer = Multiplexer.for_client(client)
    yield multiplexer
    await multiplexer.aclose()
    await client.aclose()


async def test_concurrent_callers_each_get_their_own_reply(multiplexer: Multiplexer) -> None:
    replies = await asyncio.gather(*(multiplexer.execute_command("ECHO", i) for i in range(500)))

    assert replies == [str(i).encode() for i in range(500)]


async def test_concurrent_callers_share_one_connection(
    multiplexer: Multiplexer, sync_redis: redis.Redis
) -> None:
    await asyncio.gather(*(multiplexer.execute_command("INCR", "mux:n") for _ in range(200)))

    assert sync_redis.get("mux:n") == b"200"
    assert connections_named(sync_redis, "mux-test") == 1


async def test_an_error_reply_fails_only_its_caller(multiplexer: Multiplexer) -> None:
    before = multiplexer.execute_command("ECHO", "before")
    missing = multiplexer.evalsha("0" * 40, 0)
    after = multiplexer.execute_command("ECHO", "after")

    results = await asyncio.gather(before, missing, after, return_exceptions=True)

    assert results[0] == b"before"
    assert isinstance(results[1], redis.exceptions.NoScriptError)
    assert results[2] == b"after"


async def test_a_transaction_returns_exec_s_replies_and_no_other_command_comes_between(
    multiplexer: Multiplexer, sync_redis: redis.Redis
) -> None:
    await multiplexer.execute_command("PING")  # connected: callers write in the order they run
    others = [multiplexer.execute_command("RPUSH", "mux:l", "other") for _ in range(50)]
    batch = multiplexer.transaction([["RPUSH", "mux:l", "mine"] for _ in range(100)])

    results = await asyncio.gather(*others[:25], batch, *others[25:])

    assert results[25] == list(range(26, 126))
    assert sync_redis.lrange("mux:l", 25, 124) == [b"mine"] * 100


async def test_a_command_refused_in_a_transaction_raises_and_nothing_runs(
    multiplexer: Multiplexer, sync_redis: redis.Redis
) -> None:
    with pytest.raises(redis.exceptions.ResponseError, match="wrong number of arguments"):
        await multiplexer.transaction([["SET", "mux:a", "1"], ["INCR"]])

    assert sync_redis.exists("mux:a") == 0
    assert await multiplexer.execute_command("ECHO", "next") == b"next"


async def test_a_command_failing_inside_exec_raises_its_error(
    multiplexer: Multiplexer, sync_redis: redis.Redis
) -> None:
    with pytest.raises(redis.exceptions.ResponseError, match="not an integer"):
        await multiplexer.transaction([["SET", "mux:b", "x"], ["INCR", "mux:b"]])

    assert sync_redis.get("mux:b") == b"x"  # run, as any MULTI runs what came before
    assert await multiplexer.execute_command("ECHO", "next") == b"next"


async def test_a_caller_that_gives_up_does_not_shift_the_next_callers_reply(
    multiplexer: Multiplexer, sync_redis: redis.Redis
) -> None:
    # The blocked command's reply comes late; the caller stops waiting for it first.
    blocked = asyncio.create_task(multiplexer.execute_command("BLPOP", "mux:list", 5))
    await asyncio.sleep(0)  # let it write
    blocked.cancel()
    behind = asyncio.create_task(multiplexer.execute_command("ECHO", "mine"))
    sync_redis.rpush("mux:list", "late")

    assert await behind == b"mine"
    assert blocked.cancelled()


@pytest.mark.parametrize("yields_before_cancel", [0, 1, 2, 5])
async def test_cancelling_every_other_caller_at_any_point_leaves_the_rest_their_replies(
    multiplexer: Multiplexer, sync_redis: redis.Redis, yields_before_cancel: int
) -> None:
    calls = [asyncio.create_task(multiplexer.execute_command("ECHO", i)) for i in range(400)]
    for _ in range(yields_before_cancel):
        await asyncio.sleep(0)
    for call in calls[::2]:
        call.cancel()

    results = await asyncio.gather(*calls, return_exceptions=True)

    for i, result in enumerate(results):
        if i % 2:
            assert result == str(i).encode()
        else:  # cancelled, or answered before the cancel reached it
            assert isinstance(result, asyncio.CancelledError) or result == str(i).encode()
    assert await multiplexer.execute_command("ECHO", "after") == b"after"
    assert connections_named(sync_redis, "mux-test") == 1


async def test_a_reply_slower_than_the_socket_timeout_fails_and_the_next_call_reconnects(
    redis_url: str,
) -> None:
    client = Redis(**named(redis_url, "mux-timeout", socket_timeout=0.2))
    multiplexer = Multiplexer.for_client(client)
    try:
        with pytest.raises(redis.exceptions.TimeoutError):
            await multiplexer.execute_command("BLPOP", "mux:never", 2)

        assert await multiplexer.execute_command("PING") == b"PONG"
    finally:
        await multiplexer.aclose()
        await client.aclose()


async def test_an_idle_connection_closed_by_a_redis_restart_is_replaced_for_the_next_call(
    redis_server: RedisServer | None, multiplexer: Multiplexer
) -> None:
    if redis_server is None:
        pytest.skip("needs the private redis-server (AIORQ_TEST_REDIS_URL is set)")
    assert await multiplexer.execute_command("PING") == b"PONG"
    channel = multiplexer._channel
    assert channel is not None
    redis_server.stop()
    redis_server.start()

    # The idle channel's reader sees the server close the connection...
    await async_wait_until(lambda: channel.closed, what="the channel to notice the close")

    # ...so the next call goes out on a new connection instead of failing.
    assert await multiplexer.execute_command("PING") == b"PONG"


async def test_commands_in_flight_when_redis_goes_away_raise_connection_error(
    redis_server: RedisServer | None, multiplexer: Multiplexer
) -> None:
    if redis_server is None:
        pytest.skip("needs the private redis-server (AIORQ_TEST_REDIS_URL is set)")
    blocked = asyncio.create_task(multiplexer.execute_command("BLPOP", "mux:list", 5))
    await asyncio.sleep(0.05)
    try:
        redis_server.stop()
        with pytest.raises(redis.exceptions.ConnectionError):
            await blocked
    finally:
        redis_server.start()
    assert await multiplexer.execute_command("PING") == b"PONG"


async def test_aclose_disconnects_and_a_later_call_opens_a_new_connection(
    multiplexer: Multiplexer, sync_redis: redis.Redis
) -> None:
    await multiplexer.execute_command("PING")
    await multiplexer.aclose()

    assert wait_for_connections(sync_redis, "mux-test", 0) == 0
    assert await multiplexer.execute_command("PING") == b"PONG"
    assert connections_named(sync_redis, "mux-test") == 1


async def test_a_unix_socket_connection_keeps_its_database_from_the_handshake(
    redis_server: RedisServer | None,
) -> None:
    if redis_server is None:
        pytest.skip("needs the private redis-server (AIORQ_TEST_REDIS_URL is set)")
    client = Redis.from_url(f"unix://{redis_server.unix_socket}?db=3")
    multiplexer = Multiplexer.for_client(client)
    try:
        await multiplexer.execute_command("SET", "mux:where", "db3")
    finally:
        await multiplexer.aclose()
        await client.aclose()

    with redis.Redis(port=redis_server.port, db=3) as db3:
        assert db3.get("mux:where") == b"db3"


async def test_writes_larger_than_the_socket_buffer_wait_and_all_replies_arrive(
    multiplexer: Multiplexer,
) -> None:
    payload = b"x" * 200_000  # 200 callers write 40 MB: the transport pauses and resumes

    replies = await asyncio.gather(
        *(multiplexer.execute_command("ECHO", payload + str(i).encode()) for i in range(200))
    )

    assert replies == [payload + str(i).encode() for i in range(200)]


async def test_the_channel_speaks_resp2_when_the_client_asks_for_resp3(redis_url: str) -> None:
    client = Redis(**named(redis_url, "mux-resp3", protocol=3))
    multiplexer = Multiplexer.for_client(client)
    try:  # HELLO without arguments names the connection's protocol (CLIENT INFO: from 7.0)
        info = await multiplexer.execute_command("CLIENT", "INFO")
        hello = await multiplexer.execute_command("HELLO")
        own = await client.execute_command("HELLO")
    finally:
        await multiplexer.aclose()
        await client.aclose()

    assert hello_fields(own)["proto"] == "3"  # the client's own connections
    fields = dict(field.split(b"=", 1) for field in info.split())
    assert (fields[b"name"], hello_fields(hello)["proto"]) == (b"mux-resp3", "2")


READONLY = "return redis.error_reply('READONLY You can\\'t write against a read only replica.')"


async def test_a_readonly_reply_fails_its_caller_and_the_next_call_reconnects(
    multiplexer: Multiplexer, sync_redis: redis.Redis
) -> None:
    before = await multiplexer.execute_command("CLIENT", "ID")

    with pytest.raises(redis.exceptions.ReadOnlyError):
        await multiplexer.execute_command("EVAL", READONLY, 0)

    assert await multiplexer.execute_command("CLIENT", "ID") != before
    assert wait_for_connections(sync_redis, "mux-test", 1) == 1


async def test_replies_owed_when_readonly_comes_still_reach_their_callers(
    multiplexer: Multiplexer,
) -> None:
    before = await multiplexer.execute_command("CLIENT", "ID")
    calls = [
        multiplexer.execute_command("ECHO", "first"),
        multiplexer.execute_command("EVAL", READONLY, 0),
        multiplexer.execute_command("ECHO", "owed"),
    ]

    first, readonly, owed = await asyncio.gather(*calls, return_exceptions=True)

    assert (first, owed) == (b"first", b"owed")
    assert isinstance(readonly, redis.exceptions.ReadOnlyError)
    assert await multiplexer.execute_command("CLIENT", "ID") != before


@pytest.fixture
async def replicated(redis_url: str) -> AsyncIterator[Multiplexer]:
    """A multiplexer that waits for a replica, as behind Sentinel, on a server that has
    none: each turn's ``WAIT`` blocks for ``REPLICA_WAIT_MS``, then answers 0."""
    client = Redis(**named(redis_url, "mux-wait"))
    endpoint = endpoint_of(client.connection_pool)

    async def locate() -> tuple[str, int]:  # Sentinel's answer: this server
        return endpoint.host, endpoint.port

    multiplexer = Multiplexer(endpoint, locate)
    yield multiplexer
    await multiplexer.aclose()
    await client.aclose()


INCR = "return redis.call('INCR', KEYS[1])"


async def test_a_write_whose_wait_is_cut_off_raises_instead_of_returning_as_confirmed(
    replicated: Multiplexer, sync_redis: redis.Redis
) -> None:
    """Behind Sentinel, a script call whose ``WAIT`` never answered (its primary died
    after running it) may be undone by the failover: it raises as a lost reply does, and
    never returns as if a replica had it (a claim taken as done ran its job twice)."""
    call = asyncio.create_task(replicated.evalsha(sync_redis.script_load(INCR), 1, "mux:n"))
    waiting = await async_wait_until(
        lambda: blocked_in_wait(sync_redis, "mux-wait"), what="the call's WAIT to block"
    )
    sync_redis.client_kill_filter(_id=waiting)

    with pytest.raises(redis.exceptions.ConnectionError, match="before a replica confirmed"):
        await call
    assert sync_redis.get("mux:n") == b"1"  # it ran: only the confirmation is missing


async def test_a_caller_cancelled_in_its_turn_s_wait_leaves_the_others_their_answer(
    replicated: Multiplexer, sync_redis: redis.Redis
) -> None:
    """The callers of one turn share its ``WAIT``: one giving up must not cancel it for
    the rest, who get what it answers (no replica here: the unconfirmed error)."""
    sha = sync_redis.script_load(INCR)
    calls = [asyncio.create_task(replicated.evalsha(sha, 1, "mux:n")) for _ in range(3)]
    await async_wait_until(
        lambda: blocked_in_wait(sync_redis, "mux-wait"), what="the turn's WAIT to block"
    )
    calls[1].cancel()

    outcomes = await asyncio.gather(*calls, return_exceptions=True)

    assert isinstance(outcomes[1], asyncio.CancelledError)
    for outcome in (outcomes[0], outcomes[2]):
        assert isinstance(outcome, redis.exceptions.ConnectionError), repr(outcome)
        assert "no replica confirmed" in str(outcome)


# -- endpoint_of: the one reading of redis-py's connection layer ------------------------------


def test_endpoint_of_a_tcp_url_has_every_setting_redis_py_resolved() -> None:
    pool = BlockingConnectionPool.from_url(
        "redis://alice:s3cret@redis.example:6380/4?client_name=web&socket_timeout=2"
        "&socket_connect_timeout=1"
    )

    found = endpoint_of(pool)

    assert (found.host, found.port, found.path, found.tls) == ("redis.example", 6380, None, None)
    assert (found.username, found.password, found.db) == ("alice", "s3cret", 4)
    assert (found.client_name, found.timeout, found.connect_timeout) == ("web", 2.0, 1.0)
    assert "s3cret" not in repr(found)


def test_endpoint_of_a_unix_url_has_its_path_and_database() -> None:
    found = endpoint_of(BlockingConnectionPool.from_url("unix:///run/redis.sock?db=2"))

    assert (found.path, found.db, found.tls, found.keepalive) == ("/run/redis.sock", 2, None, None)


def test_endpoint_of_a_tls_client_has_redis_py_s_tls_context() -> None:
    client = Redis(host="redis.example", ssl=True, ssl_cert_reqs="none")

    found = endpoint_of(client.connection_pool)

    assert isinstance(found.tls, ssl.SSLContext)
    assert found.tls.verify_mode == ssl.CERT_NONE
    assert (found.host, found.port) == ("redis.example", 6379)


async def test_endpoint_of_a_sentinel_pool_locates_the_primary_through_the_pool() -> None:
    manager = Sentinel([("127.0.0.1", 26379)])
    pool = SentinelConnectionPool("mymaster", manager, db=3, password="p")

    found = endpoint_of(pool)

    assert (found.db, found.password) == (3, "p")
    assert locator_of(pool) == pool.get_master_address
    assert locator_of(BlockingConnectionPool()) is None


class _ConnectionWithoutAName(Connection):
    """What a redis-py that renamed a connection setting would look like."""

    def __getattribute__(self, name: str) -> Any:
        if name == "client_name":
            raise AttributeError(name, name=name, obj=self)
        return super().__getattribute__(name)


def test_endpoint_of_a_connection_lacking_a_setting_is_a_clear_error() -> None:
    pool = BlockingConnectionPool(connection_class=_ConnectionWithoutAName)

    with pytest.raises(RuntimeError, match="cannot read 'client_name' from a _ConnectionWith"):
        endpoint_of(pool)
