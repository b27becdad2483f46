"""Recipe: a periodic cleanup, each run scheduling the next one.

To be replaced by the planned cron support; until then this chain runs on any worker.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone

from aiorq_flask import AsyncRQ, Job

rq = AsyncRQ()
EVERY = 3600  # seconds between runs
SESSIONS = "myapp:sessions"  # a sorted set of session ids, scored by expiry time


async def schedule_next(now: float | None = None) -> Job | None:
    """Schedule the run of the next period, unless it is scheduled already.

    The id names the period, so a second call (another app process, a rerun of the
    job) finds the job there and adds nothing. Call it once when the app starts too.
    """
    slot = int((time.time() if now is None else now) // EVERY) + 1
    job_id = f"purge-sessions-{slot}"
    if await rq.queue.fetch_job(job_id) is not None:
        return None
    when = datetime.fromtimestamp(slot * EVERY, tz=timezone.utc)
    return await purge_sessions.enqueue_at(when, job_id=job_id)


@rq.job
async def purge_sessions() -> int:
    """Delete expired sessions; safe to run twice (at least once delivery)."""
    removed = await rq.queue.connection.zremrangebyscore(SESSIONS, "-inf", time.time())
    await schedule_next()
    return int(removed)
