"""One bounded ``redis.asyncio`` pool per (resolved connection, running event loop), and
beside it the ``Multiplexer`` that carries that connection's script calls.

A Sentinel-managed connection's pool asks the sentinels for the primary whenever it opens
a connection (``redis.asyncio.sentinel``), and so does its multiplexer: after a failover
both reconnect to the new primary.

A ``redis.asyncio`` connection belongs to the loop that opened it and can only be closed
by awaiting on that loop. Quart and the worker run one long-lived loop; Flask runs each
``async def`` view on a new loop that ``asyncio.run`` closes when the view returns. So
clients (and multiplexers) are kept per loop, and each loop's are closed on that loop, before it
closes: explicitly (``aclose``, used by Quart's ``after_serving``), or when ``asyncio.run``
shuts the loop down (a Flask view's loop, a script's, the worker's).
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import AsyncGenerator, Mapping
from typing import Any

from redis.asyncio import BlockingConnectionPool, ConnectionPool, Redis
from redis.asyncio.connection import AbstractConnection, SSLConnection
from redis.asyncio.sentinel import (
    Sentinel,
    SentinelConnectionPool,
    SentinelManagedConnection,
    SentinelManagedSSLConnection,
)

from ._config import ConnectionSpec
from ._multiplexer import Endpoint, Multiplexer, endpoint_of, locator_of

DEFAULT_MAX_CONNECTIONS = 50


def make_client(spec: ConnectionSpec, client_class: type[Any]) -> Redis:
    """Build a client over a pool that waits for a free connection instead of raising."""
    if spec.url is not None:
        pool: ConnectionPool = BlockingConnectionPool.from_url(
            spec.url, max_connections=DEFAULT_MAX_CONNECTIONS, timeout=None
        )
    else:
        options = dict(spec.options or {})
        max_connections = options.pop("max_connections", DEFAULT_MAX_CONNECTIONS)
        template = client_class(**options).connection_pool
        if spec.sentinels is None:
            pool = BlockingConnectionPool(
                connection_class=template.connection_class,
                max_connections=max_connections,
                timeout=None,
                **template.connection_kwargs,
            )
        else:
            pool = _sentinel_pool(spec, template, max_connections)
    # Spell out the read timeout the connections will use (redis-py 8 defaults to 5 s),
    # so block_slice can keep blocking commands under it.
    default_timeout = pool.connection_class(**pool.connection_kwargs).socket_timeout
    pool.connection_kwargs.setdefault("socket_timeout", default_timeout)
    client: Redis = client_class.from_pool(pool)
    return client


class _BlockingSentinelPool(SentinelConnectionPool, BlockingConnectionPool):
    """A Sentinel-managed pool that waits for a free connection, like every pool here.

    A connection to a former primary is dropped when it comes back, so its next use
    connects to the new one (redis-py's own pool drops only the idle ones).
    """

    async def release(self, connection: AbstractConnection) -> None:
        # (SentinelConnectionPool.owns_connection would say, but it fails in redis-py's
        # asyncio pools: it calls a method their base class lacks.)
        address = (getattr(connection, "host", None), getattr(connection, "port", None))
        if self.master_address is not None and address != self.master_address:
            await connection.disconnect()
        await super().release(connection)


def _sentinel_pool(
    spec: ConnectionSpec, template: ConnectionPool, max_connections: int
) -> SentinelConnectionPool:
    """The pool of a Sentinel-managed primary, with a ``Sentinel`` of this loop's own.

    ``template`` is what the client class makes of the options (TLS, credentials,
    database...); only the address is left to the sentinels.
    """
    assert spec.sentinels is not None
    kwargs = dict(template.connection_kwargs)
    for address_key in ("host", "port", "path"):
        kwargs.pop(address_key, None)
    tls = issubclass(template.connection_class, SSLConnection)
    sentinel_kwargs = dict(spec.sentinels.options) if spec.sentinels.options else None
    manager = Sentinel(  # type: ignore[no-untyped-call]
        list(spec.sentinels.addresses), sentinel_kwargs=sentinel_kwargs, **kwargs
    )
    return _BlockingSentinelPool(  # type: ignore[no-untyped-call]
        spec.sentinels.service_name,
        manager,
        connection_class=SentinelManagedSSLConnection if tls else SentinelManagedConnection,
        max_connections=max_connections,
        timeout=None,
        **kwargs,
    )


async def close_client(client: Redis) -> None:
    """Close ``client``, its pool, and the connections to the sentinels behind it."""
    pool = client.connection_pool
    await client.aclose()
    if isinstance(pool, SentinelConnectionPool):
        for sentinel in pool.sentinel_manager.sentinels:
            await sentinel.aclose()


def dedicated_client(client: Redis) -> Redis:
    """A client like ``client`` whose connections are its own, outside the bounded pool.

    For a connection held for as long as a worker lives (its pub/sub subscription): taken
    from the pool, it would leave one connection fewer to the steps that wait for one.
    The caller closes it (``aclose``); a Sentinel-managed one shares ``client``'s
    sentinels, which close with ``client``.
    """
    pool = client.connection_pool
    kwargs = {k: v for k, v in pool.connection_kwargs.items() if k != "connection_pool"}
    own: ConnectionPool
    if isinstance(pool, SentinelConnectionPool):
        own = SentinelConnectionPool(  # type: ignore[no-untyped-call]
            pool.service_name,
            pool.sentinel_manager,
            connection_class=pool.connection_class,
            **kwargs,
        )
    else:
        own = ConnectionPool(connection_class=pool.connection_class, **kwargs)
    return Redis.from_pool(own)


def block_slice(client: Redis, seconds: float) -> float:
    """How long one blocking command (``XREAD BLOCK``, ``BLMOVE``) may wait on ``client``.

    A blocked read must end before the client's socket read timeout (redis-py 8 sets 5 s
    by default), or the wait surfaces as a ``TimeoutError``; longer waits are sliced.
    """
    read_timeout = client.connection_pool.connection_kwargs.get("socket_timeout")
    if read_timeout:
        seconds = min(seconds, read_timeout / 2)  # half: room for a slow reply
    return max(seconds, 0.001)


class _LoopClients:
    """The clients opened on one event loop, closed with that loop.

    The closing is an async generator's ``finally``: ``asyncio.run`` finalizes async
    generators (``shutdown_asyncgens``) after it has cancelled and awaited every leftover
    task, so this runs last on the loop, after anything that might still use a client.
    """

    def __init__(self) -> None:
        self.clients: dict[str, Redis] = {}
        self.multiplexers: dict[str, Multiplexer] = {}
        self._closer: AsyncGenerator[None, None] | None = self._close_at_loop_end()
        # Start the generator by hand (it reaches its yield without awaiting): the first
        # step registers it with the running loop's shutdown_asyncgens.
        with contextlib.suppress(StopIteration):
            self._closer.asend(None).send(None)

    async def _close_at_loop_end(self) -> AsyncGenerator[None, None]:
        try:
            yield
        finally:
            while self.clients or self.multiplexers:  # a late user may have opened one
                await self.close()
            self._closer = None  # the finished generator holds its frame, and so its loop

    async def close(self) -> None:
        clients, self.clients = self.clients, {}
        multiplexers, self.multiplexers = self.multiplexers, {}
        for multiplexer in multiplexers.values():
            await multiplexer.aclose()
        for client in clients.values():
            await close_client(client)

    async def aclose(self) -> None:
        if self._closer is not None:
            await self._closer.aclose()
        await self.close()


class ConnectionPools:
    """Clients for one app's resolved connections, created lazily per running loop."""

    def __init__(self, specs: Mapping[str, ConnectionSpec], client_class: type[Any]) -> None:
        self._specs = specs
        self._client_class = client_class
        self._endpoints: dict[str, Endpoint] = {}  # loop-independent: built once per connection
        self._loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopClients] = (
            weakref.WeakKeyDictionary()
        )

    def client(self, connection: str) -> Redis:
        """The client of ``connection`` for the running loop.

        Raises ``RuntimeError`` outside a running event loop (a pool needs one).
        """
        clients = self._loop_clients()
        client = clients.clients.get(connection)
        if client is None:
            client = make_client(self._specs[connection], self._client_class)
            clients.clients[connection] = client
        return client

    def multiplexer(self, connection: str) -> Multiplexer:
        """The running loop's shared connection for ``connection``'s script calls."""
        clients = self._loop_clients()
        multiplexer = clients.multiplexers.get(connection)
        if multiplexer is None:
            multiplexer = self._make_multiplexer(connection)
            clients.multiplexers[connection] = multiplexer
        return multiplexer

    def _make_multiplexer(self, connection: str) -> Multiplexer:
        """A Sentinel-managed connection's multiplexer finds the primary through this
        loop's pool; any other's needs no pool (a Flask view that only enqueues opens
        none)."""
        endpoint = self._endpoints.get(connection)
        if endpoint is not None and self._specs[connection].sentinels is None:
            return Multiplexer(endpoint)
        pool = self.client(connection).connection_pool
        if endpoint is None:
            endpoint = self._endpoints[connection] = endpoint_of(pool)
        return Multiplexer(endpoint, locator_of(pool))

    def _loop_clients(self) -> _LoopClients:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            raise RuntimeError(
                "aiorq_flask needs a running event loop to reach Redis: use it from an "
                "'async def' view, job or coroutine"
            ) from None
        clients = self._loops.get(loop)
        if clients is None:
            clients = self._loops[loop] = _LoopClients()
        return clients

    async def aclose(self) -> None:
        """Close every client and multiplexer opened on the running loop; later use opens
        new ones."""
        clients = self._loops.pop(asyncio.get_running_loop(), None)
        if clients is not None:
            await clients.aclose()
