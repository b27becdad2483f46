"""Job functions that use ``get_current_job()``, save progress or return ``Retry``: for
the tests of a job that knows itself and of retries (tests/test_current_job.py,
tests/test_retries.py). Importable by our worker and by stock rq workers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio.from_thread
import redis.asyncio

from aiorq_flask import Retry, get_current_job

from .worker_jobs import _client


async def _until(check: Callable[[], Awaitable[Any]], seconds: float = 20) -> None:
    """Poll ``check`` (a job's body waiting on something outside) up to ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.01)


async def _count_reached(client: redis.asyncio.Redis, key: str, count: int) -> bool:
    return int(await client.get(key) or 0) >= count


def current_id() -> str | None:
    """The current job's id as a plain function sees it, in its worker thread."""
    job = get_current_job()
    return None if job is None else job.id


async def async_current_id() -> str | None:
    job = get_current_job()
    return None if job is None else job.id


async def current_ids_across_a_rendezvous(url: str, key: str, parties: int) -> list[str]:
    """The current job's id before and after every one of ``parties`` jobs has arrived
    (so they all run at once in between): a job that sees another's id shows it."""
    job = get_current_job()
    before = job.id if job else ""
    client = redis.asyncio.Redis.from_url(url)
    try:
        await client.incr(key)
        await _until(lambda: _count_reached(client, key, parties))
    finally:
        await client.aclose()
    job = get_current_job()
    return [before, job.id if job else ""]


async def report_progress(url: str, release_key: str) -> str:
    """Save ``meta["progress"] = 50`` from inside the job, then run on until
    ``release_key`` is set: the progress is visible while the job runs."""
    job = get_current_job()
    assert job is not None, "get_current_job() is None inside a job"
    job.meta["progress"] = 50
    await job.save_meta()
    client = redis.asyncio.Redis.from_url(url)
    try:
        await _until(lambda: client.exists(release_key))  # the rest of its work
    finally:
        await client.aclose()
    return "done"


def sync_save_progress() -> str:
    """A plain function (in a worker thread) saves progress through the worker's loop."""
    job = get_current_job()
    assert job is not None, "get_current_job() is None inside a job"
    job.meta["progress"] = 100
    anyio.from_thread.run(job.save_meta)
    return "saved"


def count_and_retry(url: str, key: str, **retry: Any) -> Retry:
    """INCR ``key`` (how many times it ran), then ask to run again: ``Retry(**retry)``."""
    _client(url).incr(key)
    return Retry(**retry)


def count_and_return_rq_retry(url: str, key: str, max: int) -> Any:
    """The same with rq's own ``rq.Retry``."""
    from rq import Retry as RQRetry

    _client(url).incr(key)
    return RQRetry(max=max)


def record_attempt(url: str, key: str) -> None:
    """RPUSH the time of this attempt to ``key``, then fail."""
    _client(url).rpush(key, repr(time.time()))
    raise ValueError("failing on purpose, to be retried")
