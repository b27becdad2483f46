"""Eager mode: with RQ_ASYNC = False (or a testing app), enqueue runs the job at once."""

from __future__ import annotations

from quart import Quart

from aiorq_flask import AsyncRQ, JobStatus

rq = AsyncRQ()


@rq.job
async def double(n: int) -> int:
    return 2 * n


def create_app(redis_url: str) -> Quart:
    app = Quart(__name__)
    app.config.update(RQ_CONNECTION=redis_url, RQ_ASYNC=False)
    rq.init_app(app)
    return app


async def eager_example() -> int:
    job = await double.enqueue(21)  # ran before enqueue returned
    assert job.status is JobStatus.FINISHED
    return await job.return_value()  # 42, recorded in Redis as a worker would
