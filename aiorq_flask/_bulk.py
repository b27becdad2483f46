"""Big payloads, written and read over a blocking socket of their own in a thread.

A 50 MiB job argument handled on the event loop holds it for tens of milliseconds at
each step: packing the command, copying it into the transport's buffer, feeding the
reply to a parser and building the value. Every other job of that loop (a web app's
requests, a worker's running jobs) waits meanwhile. Here one exchange (a handshake,
the commands, their replies) runs in a worker thread on a socket opened for it: the
payload is sent straight from its buffer, the reply read in 1 MiB pieces, and the GIL
is held only for copies of a piece at a time. The loop just awaits the result.

A connection per exchange costs well under a millisecond, nothing beside moving
megabytes, and keeps these transfers off the connections every small command shares.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator, Sequence
from typing import Any

import hiredis
from redis import exceptions

from ._redis_errors import error_from_reply

Command = Sequence[Any]
PIECE = 1 << 20  # bytes read per recv
INLINE = 1 << 16  # arguments shorter than this are copied into one buffer, longer sent as is


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
    try:
        while len(replies) < count:
            value = reader.gets()
            if value is False:
                piece = sock.recv(PIECE)
                if not piece:
                    raise exceptions.ConnectionError("Connection closed by server.")
                reader.feed(piece)
            else:
                replies.append(_as_reply(value))
    except TimeoutError:
        raise exceptions.TimeoutError("Timeout reading from Redis") from None
    except OSError as error:
        raise exceptions.ConnectionError(f"Error while reading from Redis: {error}") from error
    return replies


def _as_reply(value: Any) -> Any:
    if isinstance(value, hiredis.ReplyError):
        return error_from_reply(str(value))
    if isinstance(value, list):
        return [_as_reply(item) for item in value]
    return value
