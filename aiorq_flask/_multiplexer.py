"""One Redis connection shared by every caller on a loop, for the commands on a job's path.

Each job costs a few script calls (enqueue, claim, finish). Through redis-py 8 each call
pays a pool checkout under a condition variable, retry and observability hooks, a task
per write under a socket timeout, and a stream reader with its parser layers: about
70 µs of Python, more than the round trip itself on a local Redis. Here a caller packs
its command with hiredis and writes it to the socket at once; replies are parsed as they
arrive and handed to callers in the order they wrote. Concurrent callers (many requests
enqueueing at once) share the connection, so their commands reach Redis pipelined
instead of each waiting for a pooled connection.

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

from ._redis_errors import error_from_reply


class Multiplexer:
    """Commands of any number of tasks over one connection built like ``client``'s own.

    ``execute_command`` raises what redis-py raises: a ``ResponseError`` for an error reply
    (the subclass redis-py maps it to: ``NoScriptError``, ``ReadOnlyError``, ...), which
    leaves the connection usable;
    ``ConnectionError`` or ``TimeoutError`` when the connection is lost or a reply takes
    longer than the client's socket timeout, which fails every command then in flight.
    The next command opens a new connection.
    """

    def __init__(self, client: Redis) -> None:
        pool = client.connection_pool
        self._connection_class = pool.connection_class
        self._options = dict(pool.connection_kwargs)
        self._timeout: float | None = self._options.get("socket_timeout")
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
        async with self._opening:
            if self._channel is None or self._channel.closed:
                if self._channel is not None:
                    await self._channel.close()  # a failed one: let redis-py's side go
                # redis-py connects and runs the handshake (auth, database, client name,
                # TLS: whatever the client's options say); the channel then takes over.
                connection = self._connection_class(**self._options)
                await connection.connect()  # type: ignore[no-untyped-call]
                self._channel = _Channel(connection, self._timeout)
            return self._channel


class _Channel(asyncio.Protocol):
    """One connection's socket, the replies owed on it in order, and their parser.

    The channel becomes the protocol of the socket's transport, so a reply is parsed in
    ``data_received`` and handed to its caller there: no reader task, no stream between
    the socket and the caller. A channel never reconnects: once it fails it is closed
    for good, and the multiplexer opens a new one.
    """

    def __init__(self, connection: AbstractConnection, timeout: float | None) -> None:
        self._connection = connection  # kept: its stream writer must not close the socket
        self.closed = False
        self._timeout = timeout
        self._waiting: collections.deque[asyncio.Future[Any]] = collections.deque()
        self._loop = asyncio.get_running_loop()
        self._progress = 0.0  # when the channel last sent to an idle server or read a reply
        self._watchdog: asyncio.TimerHandle | None = None
        self._writable: asyncio.Future[None] | None = None  # pending while the socket is full
        self._lost: asyncio.Future[None] = self._loop.create_future()
        self._parser = hiredis.Reader(replyError=_ErrorReply)
        self._transport = _transport_of(connection)
        self._transport.set_protocol(self)
        if self._transport.is_closing():  # the server hung up before the takeover
            self._fail(exceptions.ConnectionError("Connection closed by server."))
            self._lost.set_result(None)

    async def call(self, packed: bytes) -> Any:
        if self._writable is not None:
            await asyncio.shield(self._writable)
        if self.closed:
            raise exceptions.ConnectionError("the connection was lost")
        reply = self._loop.create_future()
        if not self._waiting:
            self._progress = self._loop.time()
        self._waiting.append(reply)
        if self._watchdog is None and self._timeout is not None:
            self._watchdog = self._loop.call_at(self._progress + self._timeout, self._watch)
        self._transport.write(packed)
        return await reply

    async def close(self) -> None:
        """Close (if not failed already), then wait until the socket is closed."""
        self._fail(exceptions.ConnectionError("the connection was closed"))
        await self._lost
        await self._connection.disconnect(nowait=True)  # so redis-py forgets the socket

    # -- asyncio.Protocol -------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        """Answer the oldest owed callers; a caller that gave up still has its reply
        taken off the queue, so the order holds."""
        self._parser.feed(data)
        try:
            while (value := self._parser.gets()) is not False:
                reply = self._waiting.popleft()  # a reply nobody asked for: IndexError
                self._progress = self._loop.time()
                if reply.done():
                    continue
                if isinstance(value, _ErrorReply):
                    reply.set_exception(error_from_reply(str(value)))
                else:
                    reply.set_result(value)
        except Exception as error:  # a protocol error: nothing after it can be trusted
            self._fail(error)

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(exc or exceptions.ConnectionError("Connection closed by server."))
        if not self._lost.done():
            self._lost.set_result(None)

    def pause_writing(self) -> None:
        self._writable = self._loop.create_future()

    def resume_writing(self) -> None:
        writable, self._writable = self._writable, None
        if writable is not None and not writable.done():
            writable.set_result(None)

    # -- failing ------------------------------------------------------------------------

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
        """Close for good: the socket closes, every owed reply and blocked writer fails."""
        if self.closed:
            return
        self.closed = True
        if self._watchdog is not None:
            self._watchdog.cancel()
        self._transport.abort()
        self.resume_writing()
        failure = _as_redis_error(error)
        waiting, self._waiting = self._waiting, collections.deque()
        for reply in waiting:
            if not reply.done():
                reply.set_exception(failure)


class _ErrorReply(Exception):
    """What the parser makes of an error reply; ``error_from_reply`` gives redis-py's."""


def _transport_of(connection: AbstractConnection) -> asyncio.Transport:
    """The transport under a connected redis-py connection.

    redis-py has no public accessor; its asyncio connections have kept their stream
    writer as ``_writer`` since redis-py 4.2. Fail loudly, at the first command, should
    that ever change.
    """
    transport = getattr(getattr(connection, "_writer", None), "transport", None)
    if not isinstance(transport, asyncio.Transport):
        raise RuntimeError(
            f"aiorq_flask cannot reach the socket of a {type(connection).__name__} "
            "(redis-py's connection layout changed): please report it"
        )
    return transport


def _as_redis_error(error: BaseException) -> BaseException:
    """The error a waiting caller sees: one of redis-py's, as its own client would raise."""
    if isinstance(error, exceptions.RedisError):
        return error
    return exceptions.ConnectionError(f"Error while talking to Redis: {error!r}")
