"""One Redis connection shared by every caller on a loop, for the commands on a job's path.

Each job costs a few script calls (enqueue, claim, finish). Through redis-py 8 each call
pays a pool checkout under a condition variable, retry and observability hooks, and,
with a socket timeout, a task per write: about 70 µs of Python, more than the round trip
itself on a local Redis. Here a caller packs its command with hiredis and writes it at
once; one reader task matches replies to callers in the order they wrote. Concurrent
callers (many requests enqueueing at once) share the connection, so their commands reach
Redis pipelined instead of each waiting for a pooled connection.

Only commands that answer at once belong here: a blocking command (``BLMOVE``,
``XREAD BLOCK``) would hold every reply queued behind it.
"""

from __future__ import annotations

import asyncio
import collections
from typing import Any

import hiredis
from redis import exceptions
from redis.asyncio import Redis
from redis.asyncio.connection import AbstractConnection


class Multiplexer:
    """Commands of any number of tasks over one connection built like ``client``'s own.

    ``execute_command`` raises what redis-py raises: ``ResponseError`` (and subclasses
    such as ``NoScriptError``) for an error reply, which leaves the connection usable;
    ``ConnectionError`` or ``TimeoutError`` when the connection is lost or a reply takes
    longer than the client's socket timeout, which fails every command then in flight.
    The next command opens a new connection.
    """

    def __init__(self, client: Redis) -> None:
        pool = client.connection_pool
        self._connection_class = pool.connection_class
        # Replies are timed by the channel; the connection itself runs without a socket
        # timeout, so a write is a plain write, not a task.
        self._timeout: float | None = pool.connection_kwargs.get("socket_timeout")
        self._options = {**pool.connection_kwargs, "socket_timeout": None}
        self._channel: _Channel | None = None
        self._opening = asyncio.Lock()

    async def execute_command(self, *args: Any) -> Any:
        """Send one command and await its reply."""
        packed = hiredis.pack_command(args)
        channel = self._channel
        if channel is None or channel.closed:
            channel = await self._open()
        return await channel.call(packed)

    async def evalsha(self, sha: str, numkeys: int, *keys_and_args: Any) -> Any:
        return await self.execute_command("EVALSHA", sha, numkeys, *keys_and_args)

    async def script_load(self, source: str) -> Any:
        return await self.execute_command("SCRIPT", "LOAD", source)

    async def aclose(self) -> None:
        """Disconnect; commands still in flight fail with ``ConnectionError``."""
        channel, self._channel = self._channel, None
        if channel is not None:
            await channel.close()

    async def _open(self) -> _Channel:
        # A channel is published only after its connection's handshake, which reads the
        # same socket the channel's reader will.
        async with self._opening:
            if self._channel is None or self._channel.closed:
                connection = self._connection_class(**self._options)
                await connection.connect()  # type: ignore[no-untyped-call]
                self._channel = _Channel(connection, self._timeout)
            return self._channel


class _Channel:
    """One connection, the replies owed on it in order, and the task that reads them.

    A channel never reconnects: once it fails it is closed for good, and its reader can
    touch no other connection than its own.
    """

    def __init__(self, connection: AbstractConnection, timeout: float | None) -> None:
        self.connection = connection
        self.closed = False
        self._timeout = timeout
        self._waiting: collections.deque[asyncio.Future[Any]] = collections.deque()
        self._loop = asyncio.get_running_loop()
        self._progress = 0.0  # when the channel last sent to an idle server or read a reply
        self._watchdog: asyncio.TimerHandle | None = None
        # Reading even while idle notices at once a connection the server has closed.
        self._reader = self._loop.create_task(self._read_replies())

    async def call(self, packed: bytes) -> Any:
        reply = self._loop.create_future()
        if not self._waiting:
            self._progress = self._loop.time()
        self._waiting.append(reply)
        if self._watchdog is None and self._timeout is not None:
            self._watchdog = self._loop.call_at(self._progress + self._timeout, self._watch)
        try:
            # The bytes are written before this first yields, so writes and the queue of
            # owed replies keep the same order.
            await self.connection.send_packed_command(packed, check_health=False)
        except BaseException as error:
            self._fail(error)
            raise
        return await reply

    async def close(self) -> None:
        self._fail(exceptions.ConnectionError("the connection was closed"))
        await self.connection.disconnect()

    async def _read_replies(self) -> None:
        """Match each reply to the oldest caller owed one; a caller that gave up still
        has its reply read, so the order holds."""
        try:
            while True:
                try:
                    value: Any = await self.connection.read_response()
                except exceptions.ResponseError as error:
                    value = error
                reply = self._waiting.popleft()  # a reply nobody asked for: IndexError
                self._progress = self._loop.time()
                if reply.done():
                    continue
                if isinstance(value, exceptions.ResponseError):
                    reply.set_exception(value)
                else:
                    reply.set_result(value)
        except BaseException as error:
            self._fail(error)
            await self.connection.disconnect(nowait=True)  # read_response may not have
            if isinstance(error, (asyncio.CancelledError, KeyboardInterrupt, SystemExit)):
                raise

    def _watch(self) -> None:
        """Fail the channel if replies are owed and none came for the socket timeout.

        One timer per busy spell, not one per reply: replies only move ``_progress``.
        """
        assert self._timeout is not None
        self._watchdog = None
        if not self._waiting:
            return
        due = self._progress + self._timeout
        if self._loop.time() >= due:
            self._fail(exceptions.TimeoutError("Timeout reading from Redis"))
        else:
            self._watchdog = self._loop.call_at(due, self._watch)

    def _fail(self, error: BaseException) -> None:
        """Close for good: every owed reply fails, the reader stops (and its read,
        cancelled, disconnects the connection)."""
        if self.closed:
            return
        self.closed = True
        if self._watchdog is not None:
            self._watchdog.cancel()
        if self._reader is not asyncio.current_task():
            self._reader.cancel()
        failure = _as_redis_error(error)
        waiting, self._waiting = self._waiting, collections.deque()
        for reply in waiting:
            if not reply.done():
                reply.set_exception(failure)


def _as_redis_error(error: BaseException) -> BaseException:
    """The error a waiting caller sees: one of redis-py's, as its own client would raise."""
    if isinstance(error, exceptions.RedisError):
        return error
    if isinstance(error, asyncio.CancelledError):
        return exceptions.ConnectionError("the connection was dropped with commands in flight")
    return exceptions.ConnectionError(f"Error while talking to Redis: {error!r}")
