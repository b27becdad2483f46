"""How the worker's loops survive Redis trouble: log, wait a little longer each time, go on."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import anyio
import redis

log = logging.getLogger("aiorq_flask.worker")

REDIS_ERRORS = (redis.ConnectionError, redis.TimeoutError, OSError)


class Backoff:
    """Exponential wait between reconnection attempts: 0.1 s doubling up to 5 s."""

    def __init__(self) -> None:
        self.delay = 0.1

    def reset(self) -> None:
        self.delay = 0.1

    async def wait(self, reason: str) -> None:
        log.warning("%s; retrying in %.1fs", reason, self.delay)
        await anyio.sleep(self.delay)
        self.delay = min(self.delay * 2, 5.0)


async def every(interval: float, step: Callable[[], Awaitable[None]]) -> None:
    """Run ``step`` now and then every ``interval`` seconds; log failures and carry on."""
    while True:
        try:
            await step()
        except REDIS_ERRORS as error:
            log.warning("%s failed: %r", step.__name__, error)
        except Exception:
            log.exception("%s failed", step.__name__)
        await anyio.sleep(interval)
