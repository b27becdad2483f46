"""``depends_on``: enqueue now if every parent is done, else park the job as deferred.

Follows rq's writer sequence (spec §5.3): ``WATCH`` the parents, read their statuses
(one round trip however many parents), then one MULTI; a parent changing meanwhile makes
Redis refuse the MULTI and we look again. The worker releases deferred jobs when a parent
finishes (``scripts/finish.lua``). A parent whose hash is gone counts as done: it
finished and its result expired."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.exceptions import WatchError

from . import _scripts, keys
from .job import JobStatus

if TYPE_CHECKING:
    from .queue import EnqueueData, Queue


def _parent_done(status: bytes | None, allow_failures: bool) -> bool:
    if status is None:
        return True
    return status == b"finished" or (allow_failures and status == b"failed")


async def enqueue_dependent(queue: Queue, data: EnqueueData) -> JobStatus:
    """Write ``data`` as queued, or as deferred; return the status written."""
    connection = queue.connection
    parent_keys = [keys.job(parent) for parent in data.depends_on]
    async with connection.pipeline(transaction=True) as pipe:
        while True:
            try:
                await pipe.watch(*parent_keys)
                statuses = await _statuses(connection, parent_keys)
                ready = all(_parent_done(s, data.allow_dependency_failures) for s in statuses)
                status = JobStatus.QUEUED if ready else JobStatus.DEFERRED
                pipe.multi()  # type: ignore[no-untyped-call]
                _scripts.ENQUEUE.load_in(pipe)
                _scripts.ENQUEUE.call_in(pipe, *queue.write_args(data, status))
                if not ready:
                    _defer(pipe, queue, data)
                await pipe.execute()
                return status
            except WatchError:
                continue


async def _statuses(connection: Redis, job_keys: list[str]) -> list[bytes | None]:
    """Every parent's status in one round trip. Read on another connection than the
    WATCH: what the WATCH guards is the MULTI, which fails if a parent changed since."""
    async with connection.pipeline(transaction=False) as reads:
        for key in job_keys:
            reads.hget(key, "status")
        statuses: list[bytes | None] = await reads.execute()
    return statuses


def _defer(pipe: Pipeline, queue: Queue, data: EnqueueData) -> None:
    """Book a deferred job where the worker that finishes its parents will look."""
    pipe.zadd(keys.deferred(queue.name), {data.job_id: int(time.time())})
    for parent in data.depends_on:
        pipe.sadd(keys.dependents(parent), data.job_id)
        pipe.sadd(keys.dependencies(data.job_id), parent)
