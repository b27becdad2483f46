"""Job functions for rq, in a module its worker imports by dotted path (``rq_tasks.noop``)."""

import asyncio


def noop() -> None:
    """rq runs plain functions natively; a sync no-op is its fair fast path."""


async def sleep_50ms() -> None:
    """rq runs a coroutine function through ``asyncio.run``, one job at a time."""
    await asyncio.sleep(0.05)
