"""Correct uses of the lifecycle hooks for ``mypy --strict`` (tests/test_hooks.py runs it).

Never imported or collected by pytest: the checks are static, with ``assert_type``.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from typing_extensions import assert_type

from aiorq_flask import AsyncRQ, Job
from aiorq_flask.outcomes import Ended, Outcome
from aiorq_flask.worker import Worker

rq = AsyncRQ()


@rq.worker_startup
async def open_pool(worker: Worker) -> None: ...


@rq.worker_shutdown
def close_pool(worker: Worker) -> None: ...


@rq.before_job
def start_timer(job: Job) -> None: ...


@rq.after_job
async def stop_timer(job: Job, outcome: Ended) -> None:
    assert_type(outcome.status, Outcome)


# The decorators hand back each function with its own type.
startup: Callable[[Worker], Coroutine[Any, Any, None]] = open_pool
shutdown: Callable[[Worker], None] = close_pool
before: Callable[[Job], None] = start_timer
after: Callable[[Job, Ended], Coroutine[Any, Any, None]] = stop_timer
