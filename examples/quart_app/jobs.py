"""The example's jobs. The worker imports them by name (``examples.quart_app.jobs.add``).

``add`` is an ``async def``: the worker awaits it on its event loop, many at once.
``count_words`` is a plain function: the worker runs it in a thread.
"""

from __future__ import annotations

import asyncio

from aiorq_flask import AsyncRQ

# Bound to the app in app.py (``rq.init_app(app)``); ``@rq.job`` needs no app yet.
rq = AsyncRQ()


@rq.job
async def add(a: int, b: int, delay: float = 0.005) -> int:
    """Wait ``delay`` seconds (standing in for a network call), then return ``a + b``."""
    await asyncio.sleep(delay)
    return a + b


def count_words(text: str) -> int:
    """Blocking, CPU-bound work belongs in a plain function."""
    return len(text.split())
