"""Job functions for the Jobs tests (enqueue, job handle, decorator, eager, rq interop).

Importable as ``tests.job_funcs.*`` by our worker and by stock rq workers started with
cwd=/work/main. ``rq`` is an extension with no app: the decorator tests register it on
an app of their own, so the decorated functions here are plain module attributes.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from aiorq_flask import AsyncRQ

rq = AsyncRQ()


@rq.job
def decorated_add(a: int, b: int) -> int:
    return a + b


@rq.job()
def decorated_shout(text: str) -> str:
    return text.upper()


@rq.job(queue="low", job_timeout=60)
async def decorated_async_mul(a: int, b: int) -> int:
    await asyncio.sleep(0)
    return a * b


async def running_loop_id() -> int:
    """The ``id`` of the event loop the job runs on."""
    return id(asyncio.get_running_loop())


def thread_ident() -> int:
    """The ident of the thread the job runs in."""
    return threading.get_ident()


async def async_fail(message: str = "async boom") -> None:
    await asyncio.sleep(0)
    raise RuntimeError(message)


def on_success(job: Any, connection: Any, result: Any) -> None:
    """A success callback (rq's signature); a stock worker passes a sync client."""
    connection.set(f"test:callback:{job.id}", f"success {result!r}")


def on_failure(job: Any, connection: Any, *exc_info: Any) -> None:
    """A failure callback (rq's signature); a stock worker passes a sync client."""
    connection.set(f"test:callback:{job.id}", f"failure {exc_info[1]!r}")


def on_stopped(job: Any, connection: Any) -> None:
    """A stopped callback (rq's signature)."""


async def own_timeout() -> None:
    """Fails with a TimeoutError of its own (a call it made timed out), not the job's."""
    raise TimeoutError("the upstream API did not answer")
