"""Which redis-py exception an error reply is, and which errors are worth waiting out.

redis-py's own parser maps an error reply to a class by its first word; the multiplexed
connection parses replies itself, so it maps them here, the same way. The worker waits out
the transient classes (Redis loading its data, a read-only replica, memory full, a lost
connection) and carries on; anything else is a failure of the step that met it.
"""

from __future__ import annotations

from redis import exceptions


class UnblockedError(exceptions.ConnectionError):
    """``UNBLOCKED``: Redis ended a blocking command because the server changed role (a
    primary turned replica). The command did nothing; try again, after reconnecting."""


class NoReplicasError(exceptions.ReadOnlyError):
    """``NOREPLICAS``: a primary with fewer replicas than its ``min-replicas-to-write``
    refuses writes. Like ``READONLY``, it may mean the primary was failed over (its replica
    was promoted and left it): wait, reconnect, and ask Sentinel again."""


_BY_PREFIX: dict[str, type[exceptions.RedisError]] = {
    "LOADING": exceptions.BusyLoadingError,
    "READONLY": exceptions.ReadOnlyError,
    "NOREPLICAS": NoReplicasError,
    "UNBLOCKED": UnblockedError,
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
    exceptions.ReadOnlyError,  # NoReplicasError is one
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
    """Whether waiting and trying again may succeed where this error failed.

    redis-py maps fewer reply codes than ``error_from_reply`` does (``NOREPLICAS``,
    ``UNBLOCKED``): a plain ``ResponseError`` from its pools is judged by its code too.
    """
    if type(error) is exceptions.ResponseError:
        error = error_from_reply(str(error))
    return isinstance(error, TRANSIENT_ERRORS)
