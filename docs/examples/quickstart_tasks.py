"""The quick start's jobs. The app enqueues them; the worker imports them by name."""

from __future__ import annotations

import asyncio

from aiorq_flask import AsyncRQ

# No app yet: quickstart_quart.py binds it with rq.init_app(app).
rq = AsyncRQ()


@rq.job(queue="email", job_timeout=30)
async def send_welcome(user_id: int) -> str:
    """An ``async def`` job: the worker awaits it on its event loop, many at once."""
    await asyncio.sleep(0.01)  # stands in for a call to your mail service
    return f"welcome mail sent to user {user_id}"


def count_words(text: str) -> int:
    """A plain function: the worker runs it in a thread, so it may block."""
    return len(text.split())
