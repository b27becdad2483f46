"""Recipe: a long job reports its progress in ``meta``; a page polls a view for it."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from aiorq_flask import AsyncRQ

rq = AsyncRQ()


@rq.job(job_timeout="1h")
async def import_rows(job_id: str, rows: list[str]) -> int:
    """Process ``rows``, saving how far it got after each one."""
    job = await rq.queue.fetch_job(job_id)  # the job's own handle, by the id it was given
    assert job is not None
    for done, row in enumerate(rows, start=1):
        await asyncio.sleep(0)  # stands in for the real work on ``row``
        job.meta["progress"] = {"done": done, "total": len(rows), "last": row}
        await job.save_meta()
    return len(rows)


async def start_import(rows: list[str]) -> str:
    """Called from a view: choose the id first, so the job can find itself."""
    job_id = uuid.uuid4().hex
    await import_rows.enqueue(job_id, rows, job_id=job_id)
    return job_id


async def progress(job_id: str) -> dict[str, Any]:
    """What the progress view returns; the page polls it every second or so."""
    job = await rq.queue.fetch_job(job_id)
    if job is None:
        return {"state": "unknown"}
    status = await job.get_status()
    return {"state": status.value if status else None, **job.meta.get("progress", {})}
