"""Enqueueing: the decorator, rq's options, many jobs at once, and reading results."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from aiorq_flask import AsyncRQ, Job, ResultType, Retry

rq = AsyncRQ()


@rq.job(queue="default", result_ttl=3600)
async def resize(image_id: int, width: int = 800) -> dict[str, int]:
    return {"image": image_id, "width": width}


def render(template: str, **context: str) -> str:
    return template.format(**context)


async def enqueue_examples() -> list[Job]:
    # The decorator's enqueue is typed as resize itself: (image_id: int, width: int = 800).
    first = await resize.enqueue(42, width=400)
    # Any module-level function, with rq's options taken out of the keyword arguments.
    second = await rq.queue.enqueue(
        render,
        "Hello {name}",
        name="Ada",
        job_id="greeting-ada",  # letters, digits, "_" and "-"
        job_timeout="1m",  # seconds, a timedelta, or "30s" / "10m" / "1h" / "2d"
        result_ttl=600,  # keep the result 10 minutes (0: not at all, -1: for good)
        ttl=timedelta(hours=1),  # discard it if no worker started it within an hour
        failure_ttl="7d",  # keep a failed job a week
        description="greet Ada",
        meta={"requested_by": "docs"},
        retry=Retry(3, [10, 60]),  # up to 3 more tries, 10 s then 60 s apart
    )
    # A dotted path works too; at_front jumps the line.
    urgent = await rq.queue.enqueue("jobs_enqueue.render", "Now, {name}!", name="Bo", at_front=True)
    # enqueue_call keeps arguments and options apart: here the job gets description=...
    call = await rq.queue.enqueue_call(
        render, args=["{description}"], kwargs={"description": "an argument"}, job_timeout=30
    )
    # Any number of jobs in one round trip, all or nothing.
    batch = await rq.queue.enqueue_many(
        [rq.queue.prepare_data(render, ["#{n}"], {"n": str(n)}) for n in range(3)]
    )
    return [first, second, urgent, call, *batch]


async def outcome(job: Job) -> dict[str, Any]:
    """What a job did, once a worker ran it."""
    result = await job.latest_result(timeout=10)  # XREAD BLOCK: no polling loop
    if result is None:
        return {"status": "not done yet"}
    if result.type is ResultType.SUCCESSFUL:
        return {"value": result.return_value, "at": result.created_at.isoformat()}
    return {"error": result.exc_string}
