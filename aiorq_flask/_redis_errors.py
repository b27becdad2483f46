"""Which redis-py exception an error reply is, and which errors are worth waiting out.

redis-py's own parser maps an error reply to a class by its first word; the multiplexed
connection parses replies itself, so it maps them here, the same way. The worker waits out
the transient classes (Redis loading its data, a read-only replica, memory full, a lost
connection) and carries on; anything else is a failure of the step that met it.
"""

from __future__ import annotations

from redis import exceptions

_BY_PREFIX: dict[str, type[exceptions.RedisError]] = {
    "LOADING": exceptions.BusyLoadingError,
    "READONLY": exceptions.ReadOnlyError,
    "NOSCRIPT": exceptions.NoScriptError,
    "NOPERM": exceptions.NoPermissionError,
    "OOM": exceptions.OutOfMemoryError,
    "EXECABORT": exceptions.ExecAbortError,
    "WRONGPASS": exceptions.AuthenticationError,
    "NOAUTH": exceptions.AuthenticationError,
    "TRYAGAIN": exceptions.TryAgainError,
    "CLUSTERDOWN": exceptions.ClusterDownError,
    "MASTERDOWN": exceptions.MasterDownError,
}

TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    exceptions.ConnectionError,  # BusyLoadingError is one
    exceptions.TimeoutError,
    exceptions.ReadOnlyError,
    exceptions.OutOfMemoryError,
    exceptions.TryAgainError,
    exceptions.ClusterDownError,  # MasterDownError is one
    OSError,
)


def error_from_reply(message: str) -> exceptions.RedisError:
    """The exception redis-py raises for the error reply ``message``.

    A script whose ``redis.call`` met an error reply fails with that reply's code first
    (Redis 7) or inside an ``ERR Error running script`` text (Redis 6.2): both map to the
    inner code's class, so a script refused for memory counts as ``OutOfMemoryError``.
    """
    code = message.split(" ", 1)[0]
    if code == "ERR" and "-" in message:
        inner = message.rsplit(": -", 1)[-1].split(" ", 1)[0]
        if inner in _BY_PREFIX:
            code = inner
    return _BY_PREFIX.get(code, exceptions.ResponseError)(message)


def is_transient(error: BaseException) -> bool:
    """Whether waiting and trying again may succeed where this error failed."""
    return isinstance(error, TRANSIENT_ERRORS)
