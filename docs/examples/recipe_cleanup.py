"""Recipe: a periodic cleanup, declared once; the workers run it every hour."""

from __future__ import annotations

import time

from aiorq_flask import AsyncRQ

rq = AsyncRQ()
SESSIONS = "myapp:sessions"  # a sorted set of session ids, scored by expiry time


@rq.job
async def purge_sessions() -> int:
    """Delete expired sessions; safe to run twice (at least once delivery)."""
    removed = await rq.queue.connection.zremrangebyscore(SESSIONS, "-inf", time.time())
    return int(removed)


# On the hour, every hour: each worker serving the default queue's connection computes
# the same ticks, and each tick is enqueued once however many workers run.
purge_sessions.register_cron(interval=3600)
