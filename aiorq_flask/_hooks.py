"""Lifecycle hooks, and the signals a worker sends at each point of a job's life.

``@rq.worker_startup`` and the others register here (``Hooks``, held by each app's
state); the worker calls ``startup``, ``around_job``, ``recorded``, ``abandoned`` and
``shutdown`` at the right points and this module does the rest, so the worker's own code
stays one call per point.

Hooks may be plain functions or ``async def``; a plain one runs on the worker's loop (as
Quart's and Flask's own hooks do in a request), so it should be quick: a blocking one
holds every running job. Whatever a hook returns is awaited if it is awaitable.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from .errors import WorkerStartupError
from .execution import app_context
from .job import Job, JobStatus
from .outcomes import Ended
from .signals import (
    job_abandoned,
    job_failed,
    job_finished,
    job_retried,
    job_started,
    send,
)

log = logging.getLogger("aiorq_flask.worker")

# The worker is passed as ``Any`` here: typing it would import the worker package, which
# imports the app state, which holds these hooks (an import cycle). ``AsyncRQ``'s
# decorators type it as ``Worker``.
WorkerHook = Callable[[Any], Awaitable[None] | None]
JobHook = Callable[[Job], Awaitable[None] | None]
AfterJobHook = Callable[[Job, Ended], Awaitable[None] | None]

# What finish.lua wrote for an outcome -> the signal that tells it; others send nothing
# (a put-back at shutdown, a released second claim, an outcome recorded before).
_RECORDED = {
    JobStatus.FINISHED.value.encode(): job_finished,
    JobStatus.FAILED.value.encode(): job_failed,
    JobStatus.STOPPED.value.encode(): job_failed,
    b"retried": job_retried,  # record_retried's reply for a retry queued at once
    JobStatus.SCHEDULED.value.encode(): job_retried,  # ... and for one after a delay
}


@dataclass
class Hooks:
    """The hooks registered for an app, in registration order."""

    worker_startup: list[WorkerHook] = field(default_factory=list)
    worker_shutdown: list[WorkerHook] = field(default_factory=list)
    before_job: list[JobHook] = field(default_factory=list)
    after_job: list[AfterJobHook] = field(default_factory=list)

    def copy(self) -> Hooks:
        """The same hooks in lists of their own: what one app adds stays that app's."""
        return Hooks(
            list(self.worker_startup),
            list(self.worker_shutdown),
            list(self.before_job),
            list(self.after_job),
        )


def describe(hook: Callable[..., Any]) -> str:
    """``module.qualname`` of a hook, for logs and errors."""
    name = getattr(hook, "__qualname__", None) or repr(hook)
    module = getattr(hook, "__module__", None)
    return f"{module}.{name}" if module else name


async def _call(hook: Callable[..., Any], *args: Any) -> None:
    result = hook(*args)
    if inspect.isawaitable(result):
        await result


async def startup(hooks: Hooks, app: Any, worker: Any) -> None:
    """Run the ``worker_startup`` hooks in registration order, in one app context.

    Raises ``WorkerStartupError`` naming the first hook that fails (the later ones do not
    run; its traceback is logged at DEBUG level).
    """
    if not hooks.worker_startup:
        return
    async with app_context(app):
        for hook in list(hooks.worker_startup):
            try:
                await _call(hook, worker)
            except Exception as error:
                log.debug("worker_startup hook %s failed", describe(hook), exc_info=True)
                raise WorkerStartupError(
                    f"worker_startup hook {describe(hook)} failed: {error!r}"
                ) from error


async def shutdown(hooks: Hooks, app: Any, worker: Any) -> None:
    """Run the ``worker_shutdown`` hooks in reverse registration order (what started last
    stops first), in one app context; one that fails is logged and the others still run."""
    if not hooks.worker_shutdown:
        return
    async with app_context(app):
        for hook in reversed(hooks.worker_shutdown):
            try:
                await _call(hook, worker)
            except Exception:
                log.exception("worker_shutdown hook %s failed", describe(hook))


async def _job_hook(kind: str, hook: Callable[..., Any], job: Job, *args: Any) -> None:
    try:
        await _call(hook, job, *args)
    except Exception:
        log.exception("%s hook %s failed for job %s", kind, describe(hook), job.id)


def around_jobs(hooks: Hooks) -> bool:
    """Whether ``around_job`` has anything to do: a job hook, or a ``job_started``
    receiver. Without either the worker calls the job directly (no cost per job)."""
    return bool(hooks.before_job or hooks.after_job or job_started.receivers)


async def around_job(
    hooks: Hooks,
    app: Any,
    job: Job,
    attempt: Callable[[], Awaitable[Ended]],
    cancelled: Callable[[], Awaitable[Ended]],
) -> Ended:
    """Send ``job_started``, run the ``before_job`` hooks, ``attempt`` the job, then run the
    ``after_job`` hooks with its outcome (in reverse order, so hooks nest) and return it.

    Called in the job's task and app context, so a hook's context variables (a tracing
    span's) reach the job and the ``after_job`` hooks. A hook that fails is logged and the
    job goes on. Cancelled during ``before_job`` (a stop or shutdown), the job does not
    run and ``cancelled`` tells its outcome; cancelled during ``after_job``, the remaining
    hooks are skipped and the job's outcome stands.
    """
    if job_started.receivers:
        send(job_started, app, job=job)
    try:
        for hook in list(hooks.before_job):
            await _job_hook("before_job", hook, job)
    except asyncio.CancelledError:
        return await cancelled()
    outcome = await attempt()
    try:
        for after in reversed(hooks.after_job):
            await _job_hook("after_job", after, job, outcome)
    except asyncio.CancelledError:
        log.warning("the after_job hooks of job %s were cancelled", job.id)
    return outcome


def recorded(app: Any, outcome: Ended, written: bytes, job: Job | None) -> None:
    """Send ``job_finished``, ``job_failed`` or ``job_retried`` once ``finish.lua`` wrote
    ``outcome`` (``written`` is its reply for it)."""
    signal = _RECORDED.get(written)
    if signal is not None and signal.receivers:
        send(signal, app, job=job, outcome=outcome)


def abandoned(app: Any, rescued: list[Any]) -> None:
    """Send ``job_abandoned`` for each job a sweep rescued (``sweep.lua``'s flat
    ``id, queue, requeued`` triples)."""
    if not job_abandoned.receivers:
        return
    for raw_id, queue, requeued in zip(rescued[::3], rescued[1::3], rescued[2::3], strict=True):
        send(
            job_abandoned,
            app,
            job_id=raw_id.decode("utf-8", "backslashreplace"),
            queue=queue.decode("utf-8", "backslashreplace"),
            requeued=bool(requeued),
        )
