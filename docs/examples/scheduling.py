"""Scheduled jobs, retries, dependencies, cancel and requeue."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from aiorq_flask import AsyncRQ, Job, Retry

rq = AsyncRQ()


@rq.job
async def remind(user_id: int) -> str:
    return f"reminded {user_id}"


def charge(order_id: int) -> str:
    return f"charged order {order_id}"


def ship(order_id: int) -> str:
    return f"shipped order {order_id}"


async def schedule_reminders() -> tuple[Job, Job]:
    # At a moment (a naive datetime is read as UTC) or after a delay.
    new_year = await remind.enqueue_at(datetime(2031, 1, 1, 9, 0, tzinfo=timezone.utc), 1)
    soon = await remind.enqueue_in(timedelta(minutes=10), 2)  # or a number of seconds
    return new_year, soon


async def order_pipeline(order_id: int) -> tuple[Job, Job]:
    # Retried up to 3 times on an exception, waiting 1, 5, then 30 s.
    charged = await rq.queue.enqueue(charge, order_id, retry=Retry(3, [1, 5, 30]))
    # Deferred until charge finished; with allow_dependency_failures=True (via
    # enqueue_call) it would also run after charge failed.
    shipped = await rq.queue.enqueue(ship, order_id, depends_on=charged)
    return charged, shipped


async def call_off(job: Job) -> None:
    await job.cancel()  # out of its queue and registries, status "canceled"
    await job.requeue()  # changed our mind: back on its queue, status "queued"
