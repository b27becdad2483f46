"""Big payloads, written and read over a blocking socket of their own in a thread.

A 50 MiB job argument handled on the event loop holds it for tens of milliseconds at
each step: packing the command, copying it into the transport's buffer, feeding the
reply to a parser and building the value. Every other job of that loop (a web app's
requests, a worker's running jobs) waits meanwhile. Here one exchange (a handshake,
the commands, their replies) runs in a worker thread on a socket opened for it, and the
loop just awaits the result.

Moving the work to a thread is not enough: a copy of 50 MiB holds the GIL all along,
and the loop with it. So a payload is sent straight from its buffers (a
``SplicedPayload``'s parts: the caller's own bytes objects), and a big field is read
with ``read_field``: its bytes go to a reader (``_call_reader``) as they arrive, and a
long run of them is one ``recv(MSG_WAITALL)`` into a new bytes object, which the kernel
fills with the GIL released. Over TLS, whose sockets take no flags, the field is read
in 1 MiB pieces and joined: one copy.

A connection per exchange costs well under a millisecond, nothing beside moving
megabytes, and keeps these transfers off the connections every small command shares.
"""

from __future__ import annotations

import socket
import ssl
import struct
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

import hiredis
from redis import exceptions

from ._call_reader import PEEK, PIECE, PiecesSource, Source
from ._redis_errors import error_from_reply
from .payload import SplicedPayload

Command = Sequence[Any]
T = TypeVar("T")
INLINE = 1 << 16  # arguments shorter than this are copied into one buffer, longer sent as is
PEEK_PAUSE = 0.0002  # a unix socket's MSG_PEEK does not wait for all: look again after this


def exchange(
    where: tuple[str, int] | str,
    tls: ssl.SSLContext | None,
    timeouts: tuple[float | None, float | None],
    handshake: Sequence[Command],
    commands: Sequence[Command],
) -> list[Any]:
    """Send ``handshake`` then ``commands`` on a new connection to ``where`` (an address,
    or a unix socket's path); return the commands' replies.

    Blocking: run it in a thread. An error reply to the handshake raises redis-py's class
    for it; the commands' error replies are returned as those exceptions, for the caller
    to judge. ``timeouts`` are (connect, per-read) seconds.
    """
    sock = _connect(where, tls, timeouts)
    try:
        _send(sock, [*handshake, *commands])
        replies = _receive(sock, len(handshake) + len(commands))
    finally:
        sock.close()
    for reply in replies[: len(handshake)]:
        if isinstance(reply, exceptions.RedisError):
            raise reply
    return replies[len(handshake) :]


def read_field(
    where: tuple[str, int] | str,
    tls: ssl.SSLContext | None,
    timeouts: tuple[float | None, float | None],
    handshake: Sequence[Command],
    command: Command,
    read: Callable[[Source], T],
) -> T | None:
    """``exchange`` for one ``command`` whose reply is a bulk string (an ``HGET``):
    ``read`` of its bytes, given as they arrive, or None for a nil reply. ``read`` must
    consume them all; what it raises, this raises."""
    sock = _connect(where, tls, timeouts)
    try:
        if handshake:
            _send(sock, handshake)
            for reply in _receive(sock, len(handshake)):
                if isinstance(reply, exceptions.RedisError):
                    raise reply
        _send(sock, [command])
        with _reading():
            size = _bulk_length(sock)
            if size is None:
                return None
            if tls is None:
                source: Source = _SocketSource(sock, size, timeouts[1])
            else:
                source = PiecesSource(_read_pieces(sock, size))
            value = read(source)
            if source.remaining or _read_exactly(sock, 2) != b"\r\n":
                raise exceptions.ConnectionError(
                    "Protocol error: the bulk reply was not read to its end"
                )
        return value
    finally:
        sock.close()


def _bulk_length(sock: socket.socket) -> int | None:
    """The length in the bulk reply's header line (read byte by byte: nothing after it is
    consumed), or None for nil; an error reply raises redis-py's class for it."""
    line = bytearray()
    while not line.endswith(b"\r\n"):
        line += _read_exactly(sock, 1)
    header = bytes(line[:-2])
    if header.startswith(b"-"):
        raise error_from_reply(header[1:].decode(errors="replace"))
    if not header.startswith(b"$"):
        raise exceptions.ConnectionError(f"Protocol error: expected a bulk reply: {header!r}")
    size = int(header[1:])
    return None if size < 0 else size


class _SocketSource:
    """The body of a bulk reply on a blocking socket, read only as far as it is taken."""

    def __init__(self, sock: socket.socket, size: int, timeout: float | None) -> None:
        sock.settimeout(None)  # blocking, for MSG_WAITALL; the read timeout moves to the kernel
        seconds = int(timeout or 0)
        timeval = struct.pack("ll", seconds, int(((timeout or 0) - seconds) * 1e6))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeval)
        self._sock = sock
        self._left = size
        self._timeout = timeout
        self._spilled: PiecesSource | None = None

    @property
    def remaining(self) -> int:
        return self._left if self._spilled is None else self._spilled.remaining

    def peek(self, size: int) -> bytes | memoryview:
        if self._spilled is None and size > PEEK:
            self._spilled = PiecesSource(self.take_pieces(self._left))
        if self._spilled is not None:
            return self._spilled.peek(size)
        want = min(size, self._left)
        deadline = None if self._timeout is None else time.monotonic() + self._timeout
        while True:
            window = self._sock.recv(want, socket.MSG_PEEK | socket.MSG_WAITALL)
            if len(window) >= want:
                return window
            if not window:
                raise exceptions.ConnectionError("Connection closed by server.")
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError
            time.sleep(PEEK_PAUSE)

    def take(self, size: int) -> bytes:
        if self._spilled is not None:
            return self._spilled.take(size)
        self._consume(size)
        data = self._sock.recv(size, socket.MSG_WAITALL)
        if len(data) < size:  # a signal or the timeout cut it short: the rest, joined
            data += _read_exactly(self._sock, size - len(data))
        return data

    def take_str(self, size: int) -> str:
        return self.take(size).decode()

    def take_pieces(self, size: int) -> Sequence[bytes | memoryview]:
        if self._spilled is not None:
            return self._spilled.take_pieces(size)
        self._consume(size)
        return _read_pieces(self._sock, size)

    def _consume(self, size: int) -> None:
        """Count ``size`` more bytes of the reply as read: never past its end."""
        if size > self._left:
            raise exceptions.ConnectionError("Protocol error: read past a bulk reply")
        self._left -= size


def _read_pieces(sock: socket.socket, size: int) -> list[bytes]:
    """The next ``size`` bytes, as ``recv`` gives them (``PIECE`` at most each)."""
    pieces: list[bytes] = []
    while size:
        piece = sock.recv(min(size, PIECE))
        if not piece:
            raise exceptions.ConnectionError("Connection closed by server.")
        pieces.append(piece)
        size -= len(piece)
    return pieces


def _read_exactly(sock: socket.socket, size: int) -> bytes:
    return b"".join(_read_pieces(sock, size))


@contextmanager
def _reading() -> Iterator[None]:
    """Socket errors while reading, as redis-py's."""
    try:
        yield
    except (TimeoutError, BlockingIOError):  # BlockingIOError: SO_RCVTIMEO ran out
        raise exceptions.TimeoutError("Timeout reading from Redis") from None
    except OSError as error:
        raise exceptions.ConnectionError(f"Error while reading from Redis: {error}") from error


def _connect(
    where: tuple[str, int] | str,
    tls: ssl.SSLContext | None,
    timeouts: tuple[float | None, float | None],
) -> socket.socket:
    connect_timeout, timeout = timeouts
    try:
        if isinstance(where, str):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(connect_timeout)
            sock.connect(where)
        else:
            sock = socket.create_connection(where, connect_timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if tls is not None:
            host = where if isinstance(where, str) else where[0]
            sock = tls.wrap_socket(sock, server_hostname=host)
    except TimeoutError:
        raise exceptions.TimeoutError(f"Timeout connecting to {where}") from None
    except OSError as error:
        raise exceptions.ConnectionError(f"Error connecting to {where}: {error}") from error
    sock.settimeout(timeout)
    return sock


def _send(sock: socket.socket, commands: Sequence[Command]) -> None:
    """RESP-encode and send ``commands``: short parts gathered, long ones sent from their
    own buffer (a 50 MiB argument is never copied here)."""
    gathered = bytearray()
    try:
        for part in _resp(commands):
            if len(part) < INLINE:
                gathered += part
                continue
            sock.sendall(gathered)
            gathered.clear()
            sock.sendall(part)
        sock.sendall(gathered)
    except TimeoutError:
        raise exceptions.TimeoutError("Timeout writing to Redis") from None
    except OSError as error:
        raise exceptions.ConnectionError(f"Error while writing to Redis: {error}") from error


def _resp(commands: Sequence[Command]) -> Iterator[bytes | memoryview]:
    for command in commands:
        yield b"*%d\r\n" % len(command)
        for argument in command:
            if isinstance(argument, SplicedPayload):
                yield b"$%d\r\n" % argument.size
                yield from argument.parts
            else:
                value = _encoded(argument)
                yield b"$%d\r\n" % len(value)
                yield value
            yield b"\r\n"


def _encoded(argument: Any) -> bytes | memoryview:
    if isinstance(argument, (bytes, memoryview)):
        return argument
    if isinstance(argument, str):
        return argument.encode()
    if isinstance(argument, (int, float)) and not isinstance(argument, bool):
        return repr(argument).encode()
    raise exceptions.DataError(f"cannot send a {type(argument).__name__} to Redis")


def _receive(sock: socket.socket, count: int) -> list[Any]:
    reader = hiredis.Reader()
    replies: list[Any] = []
    with _reading():
        while len(replies) < count:
            value = reader.gets()
            if value is False:
                piece = sock.recv(PIECE)
                if not piece:
                    raise exceptions.ConnectionError("Connection closed by server.")
                reader.feed(piece)
            else:
                replies.append(_as_reply(value))
    return replies


def _as_reply(value: Any) -> Any:
    if isinstance(value, hiredis.ReplyError):
        return error_from_reply(str(value))
    if isinstance(value, list):
        return [_as_reply(item) for item in value]
    return value
