"""rq 3.0's concurrency limit, ``rate_limit=RateLimit("api", 3)``, in rq's own keys.

At most ``concurrency`` jobs with one key are queued or running at once; the rest wait in
``rq:rl:<key>:rate_limited`` with status ``rate_limited``, oldest first. A job holds its
slot (``rq:rl:<key>:allowed``) while it is queued or started; the step that ends it
(finish, failure, stop, a retry that waits, a dead worker's sweep) frees the slot and lets
the next ones through in the same script call (``scripts/lib/rate_limit.lua``). Stock rq
3.0 workers read and write the same keys the same way, so a mixed fleet honours one limit.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from redis.asyncio.client import Pipeline

from . import keys
from .errors import InvalidJobError


@dataclass(frozen=True)
class RateLimit:
    """At most ``concurrency`` jobs with ``key`` queued or running at once (rq 3.0's)."""

    key: str
    concurrency: int

    def __post_init__(self) -> None:
        if not isinstance(self.key, str) or not self.key:
            raise InvalidJobError(f"RateLimit(key={self.key!r}): key must be a non-empty str")
        if (
            not isinstance(self.concurrency, int)
            or isinstance(self.concurrency, bool)
            or self.concurrency < 1
        ):
            raise InvalidJobError(
                f"RateLimit(concurrency={self.concurrency!r}): concurrency must be an int of "
                "at least 1"
            )


def rate_limit_of(value: Any) -> RateLimit:
    """The ``rate_limit`` option as a ``RateLimit``: ours, or rq's (same attributes)."""
    if isinstance(value, RateLimit):
        return value
    if hasattr(value, "key") and hasattr(value, "concurrency"):
        return RateLimit(value.key, value.concurrency)
    raise InvalidJobError(f"rate_limit={value!r} is not a RateLimit(key, concurrency)")


def wait_in(pipe: Pipeline, job_id: str, key: str, concurrency: int) -> None:
    """Queue in a MULTI the writes that put a job (its hash written ``rate_limited``) in
    line for a slot of ``key``. Nothing lets it through at once: the next step that fills
    the key's slots does (a job of the key ending, or a worker's sweep)."""
    pipe.sadd(keys.rl_keys(), key)
    pipe.hset(keys.rate_limit(key), "concurrency", concurrency)
    pipe.zadd(keys.rl_waiting(key), {job_id: time.time()})
