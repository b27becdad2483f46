"""One Redis connection shared by every caller on a loop, for the commands on a job's path.

Each job costs a few script calls (enqueue, claim, finish). Through redis-py 8 each call
pays a pool checkout under a condition variable, retry and observability hooks, a task
per write under a socket timeout, and a stream reader with its parser layers: about
70 µs of Python, more than the round trip itself on a local Redis. Here a caller packs
its command with hiredis and writes it to the socket at once; replies are parsed as they
arrive and handed to callers in the order they wrote. Concurrent callers (many requests
enqueueing at once) share the connection, so their commands reach Redis pipelined
instead of each waiting for a pooled connection.

The channel opens its own socket and speaks RESP2 on it whatever the client's
``protocol`` says: it never sends ``HELLO``, so no push frame (client-side caching
invalidations, maintenance notifications) can reach its parser, which only ever sees the
replies to its own commands. Where it connects, and how (TLS, credentials, database,
client name, timeouts), is what redis-py makes of the client's options: ``endpoint_of``
reads it off one unconnected redis-py connection, the channel's only use of redis-py's
connection layer.

Only commands that answer at once belong here: a blocking command (``BLMOVE``,
``XREAD BLOCK``) would hold every reply queued behind it.

Behind Sentinel a script call is not done until a replica has it. Replication is
asynchronous, so a failover can roll back a write its old primary acknowledged: an
enqueue the caller was told about, or a claim, after which the job would run again. So
each turn of the loop that wrote scripts on a Sentinel connection ends with one
``WAIT 1 <ms>``, which answers every script call of that turn (group commit: one WAIT
however many callers). A write no replica confirmed in time raises ``ConnectionError``
(it may be gone after a failover: the caller tries again, as after any lost reply) and
the channel reconnects through Sentinel; then, for a while, writes go unconfirmed, so a
primary left without replicas costs one failed turn per pause, not a wait per call.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import functools
import logging
import socket
import ssl
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

import anyio
import hiredis
import redis
from redis import exceptions
from redis.asyncio import Redis
from redis.asyncio.connection import ConnectionPool, SSLConnection, UnixDomainSocketConnection
from redis.asyncio.sentinel import SentinelConnectionPool

from . import _bulk
from ._call_reader import Source
from ._redis_errors import error_from_reply

Locate = Callable[[], Awaitable[tuple[str, int]]]
"""Where the primary is now (Sentinel): asked at every connect."""

REPLICA_WAIT_MS = 1000
"""How long a script call behind Sentinel waits for a replica to have its write. A
healthy replica answers in well under a millisecond on a LAN; this only runs out when
none is there, or one is far behind, and the call then fails."""
UNREPLICATED_PAUSE = 30.0
"""After a WAIT no replica answered, seconds to write without waiting before trying again."""
UNCONFIRMED = (
    f"no replica confirmed the write within {REPLICA_WAIT_MS} ms, so a failover may undo it; "
    f"writes go on unconfirmed for {UNREPLICATED_PAUSE:g} s"
)
CUT_OFF = "the connection was lost before a replica confirmed the write, so a failover may undo it"

log = logging.getLogger("aiorq_flask.replication")
T = TypeVar("T")

_WAIT_COMMAND: tuple[Any, ...] = ("WAIT", 1, REPLICA_WAIT_MS)
_MULTI, _EXEC = hiredis.pack_command(("MULTI",)), hiredis.pack_command(("EXEC",))
_WAIT = hiredis.pack_command(_WAIT_COMMAND)


def confirm(replicas: Any) -> None:
    """Raise unless ``replicas``, a ``WAIT``'s answer, says a replica has the write.

    A ``WAIT`` that never answered (the primary died right after the write) confirms
    nothing: a failover may undo the write, so it fails as a lost reply does, and the
    caller's rule for one applies (a claim's jobs are put back, a finish is sent again).
    Taken as done, a claim the failover undid ran its job twice. A refused ``WAIT`` (an
    ACL without it) is no failure: waiting is turned off then.
    """
    if isinstance(replicas, exceptions.ResponseError):
        return
    if isinstance(replicas, BaseException):
        raise exceptions.ConnectionError(CUT_OFF) from replicas
    if replicas < 1:
        raise exceptions.ConnectionError(UNCONFIRMED)


@dataclasses.dataclass(frozen=True)
class Endpoint:
    """Where the channel connects and the handshake it sends: one of redis-py's
    connections' settings, defaults resolved (see ``endpoint_of``)."""

    host: str
    port: int
    path: str | None  # a unix socket, instead of host and port
    tls: ssl.SSLContext | None
    username: str | None
    password: str | None = dataclasses.field(repr=False)
    credential_provider: Any  # redis-py's CredentialProvider, asked at every connect
    db: int
    client_name: str | None
    connect_timeout: float | None
    timeout: float | None  # owed replies and none for this long: the connection is dead
    keepalive: Mapping[int, Any] | None  # TCP keepalive options; None: no keepalive


def endpoint_of(pool: ConnectionPool) -> Endpoint:
    """The channel's endpoint for connections like ``pool``'s.

    redis-py decides what the options mean (defaults that change between versions, TLS
    settings, URL query values): this builds one connection of the pool's class from the
    pool's options, never connected, and reads the settings it resolved. Raises
    ``RuntimeError`` naming the setting if a redis-py release no longer has one.
    """
    connection: Any = pool.connection_class(**pool.connection_kwargs)
    try:
        unix = isinstance(connection, UnixDomainSocketConnection)
        keepalive = not unix and connection.socket_keepalive
        return Endpoint(
            host="" if unix else connection.host,
            port=0 if unix else int(connection.port),
            path=connection.path if unix else None,
            tls=connection.ssl_context.get() if isinstance(connection, SSLConnection) else None,
            username=connection.username,
            password=connection.password,
            credential_provider=connection.credential_provider,
            db=int(connection.db or 0),
            client_name=connection.client_name,
            connect_timeout=connection.socket_connect_timeout,
            timeout=connection.socket_timeout,
            keepalive=dict(connection.socket_keepalive_options or {}) if keepalive else None,
        )
    except AttributeError as error:
        raise RuntimeError(
            f"aiorq_flask cannot read {error.name!r} from a {type(connection).__name__} "
            f"(redis-py {redis.__version__} changed its connection settings): please report it"
        ) from error


def locator_of(pool: ConnectionPool) -> Locate | None:
    """How a Sentinel-managed pool finds its primary (None for a fixed address).

    Asking through the pool also makes it drop idle connections to a former primary.
    """
    if isinstance(pool, SentinelConnectionPool):
        locate: Locate = pool.get_master_address
        return locate
    return None


class Multiplexer:
    """Commands of any number of tasks over one connection to ``endpoint``.

    ``execute_command`` raises what redis-py raises: a ``ResponseError`` for an error reply
    (the subclass redis-py maps it to: ``NoScriptError``, ``ReadOnlyError``, ...), which
    leaves the connection usable;
    ``ConnectionError`` or ``TimeoutError`` when the connection is lost or a reply takes
    longer than the client's socket timeout, which fails every command then in flight.
    The next command opens a new connection. A ``READONLY`` or ``NOREPLICAS`` reply (the
    primary was demoted, or failed over and left without its replica) makes the next
    command open a new connection too, through ``locate`` when the primary's address comes
    from Sentinel.
    """

    def __init__(self, endpoint: Endpoint, locate: Locate | None = None) -> None:
        self._endpoint = endpoint
        self._locate = locate
        self._channel: _Channel | None = None
        self._retired: list[_Channel] = []  # still owed replies after a READONLY
        self._opening = asyncio.Lock()
        self._replicated = locate is not None  # whether script calls wait for a replica
        self._unreplicated_until = 0.0  # loop time: no WAIT before then (no replica answered)

    @classmethod
    def for_client(cls, client: Redis) -> Multiplexer:
        """A multiplexer that connects as ``client``'s own connections do."""
        pool = client.connection_pool
        return cls(endpoint_of(pool), locator_of(pool))

    async def execute_command(self, *args: Any) -> Any:
        """Send one command and await its reply."""
        packed = hiredis.pack_command(args)
        channel = await self._ready()
        return await channel.call(packed)

    async def transaction(self, commands: Sequence[Sequence[Any]]) -> list[Any]:
        """Run ``commands`` in one ``MULTI``/``EXEC`` and return ``EXEC``'s replies.

        The whole transaction is packed once and written at once, so no other caller's
        command comes between its parts; behind Sentinel a ``WAIT`` follows it in the same
        write, and a write no replica confirmed raises ``ConnectionError`` as a script call
        does. Raises the first error reply among them (a command Redis refused to queue,
        or one that failed inside ``EXEC``); the commands before a failed one inside
        ``EXEC`` have run, as in any MULTI.
        """
        parts = [_MULTI, *(hiredis.pack_command(tuple(command)) for command in commands), _EXEC]
        if self._waits():
            parts.append(_WAIT)
        channel = await self._ready()
        replies = await channel.call_many(b"".join(parts), len(parts))
        for reply in replies[: len(commands) + 2]:
            if isinstance(reply, BaseException):
                raise reply
        executed: list[Any] = replies[len(commands) + 1]
        for value in executed:
            if isinstance(value, _ErrorReply):
                raise error_from_reply(str(value))
        if len(replies) > len(commands) + 2:
            self._note(replies[-1])
            confirm(replies[-1])
        return executed

    async def evalsha(self, sha: str, numkeys: int, *keys_and_args: Any) -> Any:
        """Run a script; behind Sentinel, return once a replica has its writes too."""
        if not self._waits():
            return await self.execute_command("EVALSHA", sha, numkeys, *keys_and_args)
        packed = hiredis.pack_command(("EVALSHA", sha, numkeys, *keys_and_args))
        channel = await self._ready()
        value, replicas = await channel.call_replicated(
            packed, REPLICA_WAIT_MS, self._note_replicas
        )
        confirm(replicas)
        return value

    def _waits(self) -> bool:
        """Whether a write waits for a replica now: behind Sentinel, unless ``WAIT`` was
        refused, or no replica answered one a moment ago (``UNREPLICATED_PAUSE``)."""
        return self._replicated and asyncio.get_running_loop().time() >= self._unreplicated_until

    def _note_replicas(self, acked: asyncio.Future[Any]) -> None:
        """``_note`` of a turn's shared ``WAIT``, once however many callers it answers."""
        if not acked.cancelled():
            self._note(acked.exception() or acked.result())

    def _note(self, replicas: Any) -> None:
        """Log a change between writes that replicas confirm and writes none confirms."""
        unreplicated = self._unreplicated_until > 0.0
        if isinstance(replicas, exceptions.ResponseError):  # WAIT refused: an ACL without it
            self._replicated = False
            log.warning("not waiting for replicas: WAIT was refused (%s); add +wait", replicas)
        elif isinstance(replicas, BaseException):
            return  # the connection failed: the next call reconnects and tries again
        elif replicas < 1:
            self._unreplicated_until = asyncio.get_running_loop().time() + UNREPLICATED_PAUSE
            if not unreplicated:
                log.warning("%s", UNCONFIRMED)
        elif unreplicated:
            self._unreplicated_until = 0.0
            log.warning("a replica confirms writes again")

    async def transfer(self, commands: Sequence[Sequence[Any]], *, write: bool) -> list[Any]:
        """Run ``commands`` on a connection of their own, in a thread: for big payloads,
        which would hold the loop (``_bulk``). Raises the first error reply among theirs.
        A write behind Sentinel returns once a replica has it, as a script call does."""
        wait = [_WAIT_COMMAND] if write and self._waits() else []
        exchange = functools.partial(_bulk.exchange, *await self._bulk_endpoint())
        replies = await anyio.to_thread.run_sync(exchange, [*commands, *wait])
        for reply in replies[: len(commands)]:
            if isinstance(reply, exceptions.RedisError):
                raise reply
        if wait:
            self._note(replies[-1])
            confirm(replies[-1])
        return replies[: len(commands)]

    async def read_field(self, command: Sequence[Any], read: Callable[[Source], T]) -> T | None:
        """``read`` of the bulk string ``command`` replies with (a big field's ``HGET``),
        as ``transfer`` runs commands: ``_bulk.read_field``. None for a nil reply."""
        exchange = functools.partial(_bulk.read_field, *await self._bulk_endpoint())
        return await anyio.to_thread.run_sync(exchange, command, read)

    async def _bulk_endpoint(self) -> tuple[Any, ...]:
        """Where ``_bulk`` connects and how: address, TLS, timeouts, handshake."""
        endpoint = self._endpoint
        if self._locate is not None:
            where: tuple[str, int] | str = await self._locate()
        else:
            where = endpoint.path or (endpoint.host, endpoint.port)
        timeouts = (endpoint.connect_timeout, endpoint.timeout)
        return where, endpoint.tls, timeouts, await _handshake_commands(endpoint)

    async def script_load(self, source: str) -> Any:
        return await self.execute_command("SCRIPT", "LOAD", source)

    async def aclose(self) -> None:
        """Disconnect; commands still in flight fail with ``ConnectionError``."""
        channels = [*self._retired, self._channel]
        self._channel, self._retired = None, []
        for channel in channels:
            if channel is not None:
                await channel.close()

    async def _ready(self) -> _Channel:
        """The channel to send on: the open one, or a new one if it failed or retired."""
        channel = self._channel
        if channel is None or not channel.accepting:
            channel = await self._open()
        return channel

    async def _open(self) -> _Channel:
        async with self._opening:
            channel = self._channel
            if channel is None or not channel.accepting:
                if channel is not None and not channel.closed:
                    self._retired.append(channel)  # it closes once its replies are in
                self._retired = [old for old in self._retired if not old.closed]
                self._channel = None
                self._channel = channel = await _connect(self._endpoint, self._locate)
            return channel


async def _connect(endpoint: Endpoint, locate: Locate | None) -> _Channel:
    """Open a socket to ``endpoint`` and send the handshake, all of it in one write."""
    host, port = await locate() if locate is not None else (endpoint.host, endpoint.port)
    where = endpoint.path or f"{host}:{port}"
    loop = asyncio.get_running_loop()
    try:
        if endpoint.path is not None:
            opening = loop.create_unix_connection(
                lambda: _Channel(endpoint.timeout), endpoint.path, ssl=endpoint.tls
            )
        else:
            opening = loop.create_connection(
                lambda: _Channel(endpoint.timeout), host, port, ssl=endpoint.tls
            )
        transport, channel = await asyncio.wait_for(opening, endpoint.connect_timeout)
        _tune(transport, endpoint.keepalive)
    except asyncio.TimeoutError:
        raise exceptions.TimeoutError(f"Timeout connecting to {where}") from None
    except OSError as error:
        raise exceptions.ConnectionError(f"Error connecting to {where}: {error}") from error
    try:
        await channel.handshake(await _handshake_commands(endpoint))
    except BaseException as error:
        await channel.close()
        if isinstance(error, exceptions.ResponseError):
            raise type(error)(f"{where}: {error}") from None
        raise
    return channel


async def _handshake_commands(endpoint: Endpoint) -> list[tuple[Any, ...]]:
    """``AUTH``, ``CLIENT SETNAME``, ``SELECT``: what redis-py would send, in RESP2."""
    commands: list[tuple[Any, ...]] = []
    credentials: Sequence[Any] = ()
    if endpoint.credential_provider is not None:
        provider = endpoint.credential_provider
        if hasattr(type(provider), "get_credentials_async"):
            credentials = await provider.get_credentials_async()
        else:
            credentials = provider.get_credentials()
    elif endpoint.password:
        credentials = (
            (endpoint.username, endpoint.password) if endpoint.username else (endpoint.password,)
        )
    if credentials:
        commands.append(("AUTH", *credentials))
    if endpoint.client_name:
        commands.append(("CLIENT", "SETNAME", endpoint.client_name))
    if endpoint.db:
        commands.append(("SELECT", endpoint.db))
    return commands


def _tune(transport: asyncio.Transport, keepalive: Mapping[int, Any] | None) -> None:
    """What redis-py sets on its TCP sockets: no Nagle delay, keepalive as configured."""
    sock = transport.get_extra_info("socket")
    if sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if keepalive is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            for option, value in keepalive.items():
                sock.setsockopt(socket.IPPROTO_TCP, option, value)
    except OSError:
        transport.abort()
        raise


class _Channel(asyncio.Protocol):
    """One socket, the replies owed on it in order, and their parser.

    A reply is parsed in ``data_received`` and handed to its caller there: no reader
    task, no stream between the socket and the caller. A channel never reconnects: once
    it fails it is closed for good, and the multiplexer opens a new one. After a
    ``READONLY`` (or ``NOREPLICAS``) reply it takes no new command, and closes once its
    owed replies are in.
    """

    def __init__(self, timeout: float | None) -> None:
        self.closed = False
        self.accepting = True  # whether a new command may go out on this channel
        self._retiring = False
        self._timeout = timeout
        self._waiting: collections.deque[asyncio.Future[Any]] = collections.deque()
        self._loop = asyncio.get_running_loop()
        self._progress = 0.0  # when the channel last sent to an idle server or read a reply
        self._watchdog: asyncio.TimerHandle | None = None
        self._writable: asyncio.Future[None] | None = None  # pending while the socket is full
        self._lost: asyncio.Future[None] = self._loop.create_future()
        self._parser = hiredis.Reader(replyError=_ErrorReply)
        self._transport: asyncio.Transport
        self._wait: asyncio.Future[Any] | None = None  # this turn's WAIT, not sent yet

    async def call(self, packed: bytes) -> Any:
        return await (await self._send(packed))

    async def call_replicated(
        self, packed: bytes, wait_ms: int, noted: Callable[[asyncio.Future[Any]], None]
    ) -> tuple[Any, Any]:
        """Send a write; its reply, and how many replicas had it (or the WAIT's error).

        The WAIT that follows goes out at the end of this loop turn, so every write sent
        in the turn shares it; ``noted`` sees its answer once. No replica had it: the
        channel takes no new command (the primary may be on its way out).
        """
        reply = await self._send(packed)
        if self._wait is None:
            self._wait = self._loop.create_future()
            self._wait.add_done_callback(noted)
            self._loop.call_soon(self._send_wait, self._wait, wait_ms)
        acked = self._wait
        value = await reply
        try:
            replicas = await asyncio.shield(acked)  # shared: one caller's cancel is its own
        except exceptions.RedisError as error:
            return value, error
        if replicas < 1:
            self._retire()
        return value, replicas

    async def _send(self, packed: bytes) -> asyncio.Future[Any]:
        if self._writable is not None:
            await asyncio.shield(self._writable)
        if not self.accepting:
            raise exceptions.ConnectionError("the connection was lost")
        reply = self._owe()
        self._transport.write(packed)
        return reply

    def _send_wait(self, acked: asyncio.Future[Any], wait_ms: int) -> None:
        if self._wait is acked:
            self._wait = None
        if not self.closed:  # else ``_fail`` failed it
            wait: tuple[Any, ...] = ("WAIT", 1, wait_ms)
            self._owe(acked)
            self._transport.write(hiredis.pack_command(wait))

    async def call_many(self, packed: bytes, count: int) -> list[Any]:
        """Send ``count`` commands packed in one write; return their replies in order, an
        error reply (or the connection's failure) as its exception."""
        if self._writable is not None:
            await asyncio.shield(self._writable)
        if not self.accepting:
            raise exceptions.ConnectionError("the connection was lost")
        replies = [self._owe() for _ in range(count)]
        self._transport.write(packed)
        try:
            await asyncio.wait((replies[-1],))  # replies come in order: the last comes last
        except BaseException:
            for reply in replies:
                reply.cancel()  # a cancelled caller's replies are taken off and dropped
            raise
        return [reply.exception() or reply.result() for reply in replies]

    async def handshake(self, commands: Sequence[tuple[Any, ...]]) -> None:
        """Send ``commands`` in one write; raise the first error reply among theirs."""
        replies = [self._owe() for _ in commands]
        self._transport.write(b"".join(hiredis.pack_command(command) for command in commands))
        for outcome in await asyncio.gather(*replies, return_exceptions=True):
            if isinstance(outcome, BaseException):
                raise outcome

    async def close(self) -> None:
        """Close (if not failed already), then wait until the socket is closed."""
        self._fail(exceptions.ConnectionError("the connection was closed"))
        await asyncio.shield(self._lost)  # shared by every closer

    def _owe(self, reply: asyncio.Future[Any] | None = None) -> asyncio.Future[Any]:
        reply = reply or self._loop.create_future()
        if not self._waiting:
            self._progress = self._loop.time()
        self._waiting.append(reply)
        if self._watchdog is None and self._timeout is not None:
            self._watchdog = self._loop.call_at(self._progress + self._timeout, self._watch)
        return reply

    # -- asyncio.Protocol -------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        """Answer the oldest owed callers; a caller that gave up still has its reply
        taken off the queue, so the order holds."""
        self._parser.feed(data)
        try:
            while (value := self._parser.gets()) is not False:
                reply = self._waiting.popleft()  # a reply nobody asked for: IndexError
                self._progress = self._loop.time()
                if isinstance(value, _ErrorReply):
                    error = error_from_reply(str(value))
                    if isinstance(error, exceptions.ReadOnlyError):
                        self._retire()
                    if not reply.done():
                        reply.set_exception(error)
                elif not reply.done():
                    reply.set_result(value)
        except Exception as error:  # a protocol error: nothing after it can be trusted
            self._fail(error)
        if self._retiring and not self._waiting:
            self._fail(exceptions.ConnectionError("the channel was retired"))

    def _retire(self) -> None:
        """Take no new command; close once the owed replies are in (``data_received``)."""
        self._retiring, self.accepting = True, False

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
        self.closed, self.accepting = True, False
        if self._watchdog is not None:
            self._watchdog.cancel()
        self._transport.abort()
        self.resume_writing()
        failure = _as_redis_error(error)
        waiting, self._waiting = self._waiting, collections.deque()
        if self._wait is not None:
            waiting.append(self._wait)
            self._wait = None
        for reply in waiting:
            if not reply.done():
                reply.set_exception(failure)


class _ErrorReply(Exception):
    """What the parser makes of an error reply; ``error_from_reply`` gives redis-py's."""


def _as_redis_error(error: BaseException) -> BaseException:
    """The error a waiting caller sees: one of redis-py's, as its own client would raise."""
    if isinstance(error, exceptions.RedisError):
        return error
    return exceptions.ConnectionError(f"Error while talking to Redis: {error!r}")
