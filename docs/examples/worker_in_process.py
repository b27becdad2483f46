"""A worker started from code rather than the command line (tests, embedded runners)."""

from __future__ import annotations

from typing import Any

from aiorq_flask import AsyncRQ


async def drain(rq: AsyncRQ, app: Any, connection: str = "default") -> int:
    """Run every waiting job of ``connection``'s queues, then return how many ran."""
    worker = rq.make_worker(connection, app=app, concurrency=20, prefetch=0)
    await worker.work(burst=True)  # burst: return once the queues are empty
    return worker.processed
