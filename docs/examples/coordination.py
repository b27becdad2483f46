"""Unique jobs, backoff, a job that asks to run again, rq's Dependency and Callback, stop."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from rq import Callback
from rq.job import Dependency

from aiorq_flask import AsyncRQ, DuplicateJobError, Job, Retry

rq = AsyncRQ()


@rq.job
async def rebuild_index() -> str:
    return "index rebuilt"


async def request_rebuild() -> Job | None:
    """However often a view asks, one rebuild waits or runs at a time."""
    try:
        return await rebuild_index.enqueue(job_id="rebuild-index", unique=True)
    except DuplicateJobError:
        return None  # a job with that id exists: nothing was written


@rq.job
def call_partner_api(order_id: int) -> str:
    if order_id < 0:
        raise ValueError(f"the partner refuses order {order_id}")
    return f"order {order_id} sent"


async def send_order(order_id: int) -> Job:
    # Up to 5 retries on an exception, waiting about 2, 4, 8, 16 and 32 s (jittered).
    return await call_partner_api.enqueue(order_id, retry=Retry.backoff(5, base=2))


@rq.job
async def publish_report(report_id: int) -> str | Retry:
    """Not an error, just too early: ask to run again in a minute, up to 10 times."""
    if not await rq.queue.connection.sismember("reports:ready", report_id):
        return Retry(max=10, interval=60)
    return f"report {report_id} published"


@rq.job
async def export_everything() -> None:
    await asyncio.sleep(3600)  # stands in for a long export


async def stop_export(job: Job) -> bool:
    """Ask the worker running it to stop it: it ends ``stopped``. False when no worker
    runs it (still queued, already ended, or its worker is gone)."""
    return await job.stop()


def summarize(count: int) -> str:
    return f"{count} orders summarized"


def notify_ops(job: Job, connection: Any, result: Any, *args: Any, **kwargs: Any) -> None:
    """A success callback, called as rq calls one: the job, a connection, its result."""
    logging.getLogger("ops").info("job %s: %s", job.id, result)


async def summary_after(orders: list[Job]) -> Job:
    # rq's own objects: run once every order ended, even if one failed, at the front of
    # the queue; then call notify_ops, with a 30 s timeout. (rq's Dependency takes ids, or
    # rq's own Job objects.)
    ids = [order.id for order in orders]
    return await rq.queue.enqueue(
        summarize,
        len(orders),
        depends_on=Dependency(jobs=ids, allow_failure=True, enqueue_at_front=True),
        on_success=Callback(notify_ops, timeout=30),
    )
