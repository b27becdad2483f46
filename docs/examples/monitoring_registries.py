"""How many jobs sit where, per queue, and putting failed jobs back."""

from __future__ import annotations

from aiorq_flask import AsyncRQ, Queue


async def queue_report(rq: AsyncRQ) -> dict[str, dict[str, int]]:
    report = {}
    for name, queue in rq.queues.items():
        report[name] = {
            "queued": await queue.count(),
            "started": await queue.started.count(),
            "scheduled": await queue.scheduled.count(),
            "deferred": await queue.deferred.count(),
            "finished": await queue.finished.count(),
            "failed": await queue.failed.count(),
            "canceled": await queue.canceled.count(),
        }
    return report


async def requeue_failed(queue: Queue) -> int:
    """Put every failed job of ``queue`` back, as ``rq requeue --all`` does."""
    job_ids = await queue.failed.job_ids()
    for job_id in job_ids:
        await queue.failed.requeue(job_id)
    return len(job_ids)
