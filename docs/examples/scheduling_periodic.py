"""Periodic jobs, concurrency limits and repeats."""

from __future__ import annotations

from aiorq_flask import AsyncRQ, Job, RateLimit, Repeat

rq = AsyncRQ()


@rq.job
async def purge_sessions() -> str:
    return "sessions purged"


@rq.job(queue="email", job_timeout=600)
async def send_digest(team: str) -> str:
    return f"digest sent to {team}"


# Every 10 minutes (on multiples of 600 s since the epoch), on the default queue.
rq.register_cron(purge_sessions, interval=600)
# At 9:00 on weekdays in Paris, on the decorator's queue with its defaults.
send_digest.register_cron(cron="0 9 * * 1-5", timezone="Europe/Paris", args=("ops",))


@rq.job
async def call_partner_api(order_id: int) -> str:
    return f"order {order_id} sent"


async def send_orders(order_ids: list[int]) -> list[Job]:
    # The partner allows 3 calls at once: the other jobs wait for a slot.
    return [
        await call_partner_api.enqueue(order_id, rate_limit=RateLimit("partner-api", 3))
        for order_id in order_ids
    ]


@rq.job
async def poll_feed(url: str) -> str:
    return f"polled {url}"


async def watch_feed(url: str) -> Job:
    # Run once now, then 3 more times, a minute after each success.
    return await poll_feed.enqueue(url, repeat=Repeat(3, interval=60))
