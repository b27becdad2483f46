"""The job running in this context, for code inside a job (``get_current_job()``).

A context variable, set by the worker around each job's call and by eager mode: each
asyncio task has its own copy, so concurrent ``async def`` jobs each see their own, and a
plain function sees its job in the worker thread it runs in (anyio copies the context
there). rq's own ``rq.get_current_job()`` reads rq's variable, which this package never
sets: use this one.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .job import Job

_current: ContextVar[Job | None] = ContextVar("aiorq_flask_current_job", default=None)


def get_current_job() -> Job | None:
    """The handle of the job running in this context (``await job.save_meta()`` from
    inside it shows progress), or None outside a job."""
    return _current.get()


@contextmanager
def running(job: Job | None) -> Iterator[None]:
    """Make ``job`` the current job for the block."""
    token = _current.set(job)
    try:
        yield
    finally:
        _current.reset(token)
