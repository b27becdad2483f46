"""A job that knows itself: ``get_current_job()``, and progress saved in its ``meta``."""

from __future__ import annotations

import hashlib

import anyio.from_thread

from aiorq_flask import AsyncRQ, get_current_job

rq = AsyncRQ()


async def render_thumbnail(path: str) -> None:
    """Stands in for the real work."""


@rq.job
async def thumbnails(paths: list[str]) -> int:
    job = get_current_job()  # this job's handle; None outside a job
    assert job is not None
    for done, path in enumerate(paths, start=1):
        await render_thumbnail(path)
        job.meta["progress"] = {"done": done, "total": len(paths)}
        await job.save_meta()  # readers see it while the job runs
    return len(paths)


@rq.job
def checksum(data: bytes) -> str:
    # A plain function runs in a worker thread: save through the worker's event loop.
    job = get_current_job()
    assert job is not None
    job.meta["size"] = len(data)
    anyio.from_thread.run(job.save_meta)
    return hashlib.sha256(data).hexdigest()
