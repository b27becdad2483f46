"""Job functions for aiorq_flask's worker, imported by dotted path (``benchmarks.tasks.noop``).

Stdlib only: the worker imports this module, so it must stay cheap to import.
"""

import asyncio


async def noop() -> None:
    """The no-op coroutine: an asyncio worker's native fast path."""


async def sleep_50ms() -> None:
    await asyncio.sleep(0.05)


def noop_sync() -> None:
    """A plain-function no-op, for comparing how the worker runs sync functions."""


async def size(data: bytes | str) -> int:
    """The length of its argument: the job that carries a big payload."""
    return len(data)
