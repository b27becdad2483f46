"""Recipe: a long job reports its progress in ``meta``; a page polls a view for it."""

from __future__ import annotations

import asyncio
from typing import Any

from aiorq_flask import AsyncRQ, get_current_job

rq = AsyncRQ()


@rq.job(job_timeout="1h")
async def import_rows(rows: list[str]) -> int:
    """Process ``rows``, saving how far it got after each one."""
    job = get_current_job()  # the job's own handle
    assert job is not None
    for done, row in enumerate(rows, start=1):
        await asyncio.sleep(0)  # stands in for the real work on ``row``
        job.meta["progress"] = {"done": done, "total": len(rows), "last": row}
        await job.save_meta()  # writes the meta field only
    return len(rows)


async def start_import(rows: list[str]) -> str:
    """Called from a view: the page keeps the id to poll with."""
    job = await import_rows.enqueue(rows)
    return job.id


async def progress(job_id: str) -> dict[str, Any]:
    """What the progress view returns; the page polls it every second or so."""
    job = await rq.queue.fetch_job(job_id)
    if job is None:
        return {"state": "unknown"}
    status = await job.get_status()
    return {"state": status.value if status else None, **job.meta.get("progress", {})}
