"""Recipe: send a welcome email after signup, through a mail provider's HTTP API."""

from __future__ import annotations

import contextlib
from typing import Any

import httpx
from quart import Quart, current_app

from aiorq_flask import AsyncRQ, DuplicateJobError, Retry

rq = AsyncRQ()


# Retried on any exception (the provider down, a 5xx): 10 s, 1 min, then 10 min later.
@rq.job(queue="email", retry=Retry(3, [10, 60, 600]), job_timeout=30)
async def send_welcome_email(user_id: int, address: str) -> int:
    """POST the mail to the provider; return its HTTP status."""
    message = {"to": address, "template": "welcome", "user": user_id}
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.post(current_app.config["MAIL_API_URL"], json=message)
    response.raise_for_status()  # raising is what makes the job retry
    return response.status_code


def create_app(**config: Any) -> Quart:
    app = Quart(__name__)
    app.config.update(RQ_QUEUES=["email", "default"], **config)
    rq.init_app(app)

    @app.post("/signup/<int:user_id>")
    async def signup(user_id: int) -> dict[str, str]:
        address = f"user{user_id}@example.com"  # in a real app: from the form, saved first
        # One mail per user: a second request (a double-submitted form) writes nothing.
        job_id = f"welcome-{user_id}"
        # DuplicateJobError: queued, sent or failing already; the first request's job stands.
        with contextlib.suppress(DuplicateJobError):
            await send_welcome_email.enqueue(user_id, address, job_id=job_id, unique=True)
        return {"job": job_id}

    return app
