"""``aiorq suspend``, ``resume``, ``requeue``, ``empty`` and ``cancel``: the operator's
levers, each through the same code an app uses (``Job``, ``Queue``, ``registries``), so
every step is atomic and keeps rq's bookkeeping.

A job id is looked up on every connection of the app; the job's ``origin`` must be one
of that connection's queues.
"""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio

from .. import keys
from .._state import AppState
from ..errors import NoSuchJobError
from ..job import Job
from ..queue import Queue
from ._app import app_state

T = TypeVar("T")


def add_resume_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--connection", help="only this connection (default: all)")


def _connections(state: AppState, chosen: str | None) -> list[str]:
    if chosen is None:
        return list(state.plan.connections)
    state.plan.queues_on(chosen)  # ConfigError naming the connections
    return [chosen]


def _run(state: AppState, step: Callable[[], Awaitable[T]]) -> T:
    """Run ``step`` on a new event loop, closing the app's pools on it after."""

    async def run() -> T:
        try:
            return await step()
        finally:
            await state.pools.aclose()

    return anyio.run(run)


# -- suspend / resume ----------------------------------------------------------------------


def add_suspend_arguments(parser: argparse.ArgumentParser) -> None:
    add_resume_arguments(parser)
    parser.add_argument(
        "--duration", type=int, metavar="S", help="resume by itself after S seconds"
    )


def suspend(app: Any, options: argparse.Namespace) -> None:
    """Set rq's ``rq:suspended``: our workers and stock rq workers finish what they run and
    claim nothing more until it is gone."""
    state = app_state(app)
    names = _connections(state, options.connection)
    if options.duration is not None and options.duration <= 0:
        raise ValueError(f"--duration must be at least 1 second, not {options.duration}")

    async def step() -> None:
        for name in names:
            await state.pools.client(name).set(keys.SUSPENDED, 1, ex=options.duration)

    _run(state, step)
    until = f" for {options.duration}s" if options.duration else ""
    print(f"suspended {_listed(names)}{until}: workers take no new jobs")


def resume(app: Any, options: argparse.Namespace) -> None:
    state = app_state(app)
    names = _connections(state, options.connection)

    async def step() -> None:
        for name in names:
            await state.pools.client(name).delete(keys.SUSPENDED)

    _run(state, step)
    print(f"resumed {_listed(names)}")


def _listed(names: list[str]) -> str:
    return "connection" + ("s " if len(names) > 1 else " ") + ", ".join(map(repr, names))


# -- requeue -----------------------------------------------------------------------------


def add_requeue_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("job_ids", nargs="*", metavar="JOB_ID", help="failed jobs to requeue")
    parser.add_argument("--all", action="store_true", help="every failed job")
    parser.add_argument(
        "--queue", action="append", default=[], metavar="QUEUE", help="only this queue (repeatable)"
    )
    parser.add_argument("--at-front", action="store_true", help="push them at the queue's front")


def requeue(app: Any, options: argparse.Namespace) -> None:
    """Put failed jobs back on their queues, each in one atomic step (``FailedJobRegistry.
    requeue``, as ``rq requeue`` does). Named ids are all checked before any is moved."""
    if bool(options.job_ids) == options.all:
        raise ValueError("pass failed job ids, or --all (with --queue to pick queues)")
    state = app_state(app)
    queues = [state.get_queue(name) for name in options.queue] or list(state.queues.values())

    async def step() -> int:
        if options.all:
            found = [(q, job_id) for q in queues for job_id in await q.failed.job_ids()]
        else:
            found = [await _failed_job(state, queues, job_id) for job_id in options.job_ids]
        for queue, job_id in found:
            await queue.failed.requeue(job_id, at_front=options.at_front)
        return len(found)

    print(f"requeued {_run(state, step)} failed job(s)")


async def _failed_job(state: AppState, queues: list[Queue], job_id: str) -> tuple[Queue, str]:
    queue = (await _find(state, job_id))[0]
    if queue not in queues:
        raise ValueError(f"job {job_id!r} is on queue {queue.name!r}, not one --queue names")
    if await queue.connection.zscore(queue.failed.key, job_id) is None:
        raise ValueError(f"job {job_id!r} is not in the failed registry of {queue.name!r}")
    return queue, job_id


async def _find(state: AppState, job_id: str) -> tuple[Queue, Job]:
    """The queue and job of ``job_id`` on whichever connection holds it."""
    for queue in state.queues.values():
        job = await queue.fetch_job(job_id)
        if job is not None:
            return queue, job
    raise NoSuchJobError(f"no job {job_id!r} on any queue of the app ({', '.join(state.queues)})")


# -- empty / cancel ----------------------------------------------------------------------


def add_empty_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("queues", nargs="+", metavar="QUEUE", help="the queues to empty")


def empty(app: Any, options: argparse.Namespace) -> None:
    """Delete every job waiting in each queue (ids and hashes), one atomic step a queue."""
    state = app_state(app)
    queues = [state.get_queue(name) for name in options.queues]

    async def step() -> list[int]:
        return [await queue.empty() for queue in queues]

    for queue, deleted in zip(queues, _run(state, step), strict=True):
        print(f"emptied queue {queue.name!r}: {deleted} waiting job(s) deleted")


def add_cancel_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("job_id", metavar="JOB_ID", help="the job to cancel")


def cancel(app: Any, options: argparse.Namespace) -> None:
    """Cancel a job (``Job.cancel``): out of its queue and registries, status canceled. A
    running job is not stopped, as in rq."""
    state = app_state(app)

    async def step() -> str:
        queue, job = await _find(state, options.job_id)
        await job.cancel()
        return queue.name

    print(f"canceled job {options.job_id!r} of queue {_run(state, step)!r}")
