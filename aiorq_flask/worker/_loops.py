"""How the worker's loops survive trouble: wait a little longer each time, go on.

Redis trouble (a lost connection, ``LOADING`` after a restart, a read-only replica,
``OOM``) is waited out, and logged once when it starts and once when it ends, however many
retries it takes. Any other error is a bug or bad data: logged with its traceback each
time, then waited out the same way. Nothing here ever ends a loop.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Awaitable, Callable

import anyio
from redis import exceptions

from .._redis_errors import NoReplicasError, UnblockedError, error_from_reply, is_transient

log = logging.getLogger("aiorq_flask.worker")

_STATES: tuple[tuple[type[BaseException], str], ...] = (
    (exceptions.BusyLoadingError, "is loading its dataset (LOADING)"),
    (NoReplicasError, "is a primary without its replicas (NOREPLICAS)"),
    (UnblockedError, "changed role and unblocked its clients (UNBLOCKED)"),
    (exceptions.ReadOnlyError, "is a read-only replica (READONLY)"),
    (exceptions.OutOfMemoryError, "is out of memory (OOM)"),
    (exceptions.TimeoutError, "does not answer in time"),
)


def _state_of(error: BaseException) -> str:
    if type(error) is exceptions.ResponseError:  # a code redis-py's pools do not map
        error = error_from_reply(str(error))
    for kind, state in _STATES:
        if isinstance(error, kind):
            return state
    return "cannot be reached"


class RedisHealth:
    """Whether Redis answers the worker: one log line per change of state.

    Loops report every error; the heartbeat reports success (it writes, so it proves what
    every step needs). ``settled_for`` tells the sweep whether other workers have had time
    to re-register since the last outage.
    """

    def __init__(self) -> None:
        self.trouble: str | None = None
        self._since = 0.0
        self._recovered_at = -math.inf

    def failed(self, error: BaseException, what: str) -> None:
        if not is_transient(error):
            log.error("%s failed; retrying", what, exc_info=error)
            return
        state = _state_of(error)
        if state != self.trouble:
            if self.trouble is None:
                self._since = time.monotonic()
            log.warning(
                "Redis %s (%s: %s: %s); waiting and retrying",
                state,
                what,
                type(error).__name__,
                error,
            )
            self.trouble = state

    def answered(self) -> None:
        if self.trouble is not None:
            log.warning("Redis answers again after %.1fs", time.monotonic() - self._since)
            self.trouble = None
            self._recovered_at = time.monotonic()

    def settled_for(self, seconds: float) -> bool:
        return self.trouble is None and time.monotonic() - self._recovered_at >= seconds


class Backoff:
    """Exponential wait between attempts: 0.1 s doubling up to 5 s."""

    FIRST = 0.1
    LONGEST = 5.0

    def __init__(self, health: RedisHealth) -> None:
        self.health = health
        self.delay = self.FIRST

    def reset(self) -> None:
        self.delay = self.FIRST

    async def wait(self, error: BaseException, what: str) -> None:
        self.health.failed(error, what)
        await anyio.sleep(self.delay)
        self.delay = min(self.delay * 2, self.LONGEST)


async def every(interval: float, step: Callable[[], Awaitable[None]], health: RedisHealth) -> None:
    """Run ``step`` now and then every ``interval`` seconds; after a failure, try again
    with backoff (sooner than ``interval``) until it succeeds."""
    backoff = Backoff(health)
    while True:
        try:
            await step()
        except Exception as error:
            await backoff.wait(error, step.__name__.strip("_").replace("_", " "))
            continue
        backoff.reset()
        await anyio.sleep(interval)
