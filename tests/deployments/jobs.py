"""What the deployment tests run: a round trip through an app and a worker, and a job that
counts its runs outside Redis (a failover may lose writes; this file does not)."""

from __future__ import annotations

from typing import Any

from quart import Quart

from aiorq_flask import AsyncRQ

from ..apps.worker_support import burst


def record_run(path: str, token: str) -> str:
    """Append ``token`` to the file at ``path``: one line per run of the job."""
    with open(path, "a") as runs:
        runs.write(f"{token}\n")
    return token


async def run_a_job(connection: str | dict[str, Any], wait: float = 5) -> tuple[str, Any]:
    """Enqueue ``add(2, 3)`` through an app on ``connection``, run it with a burst worker
    on the same connection, and read back its status and result through the app (waiting
    for the result up to ``wait`` seconds, or not at all with 0)."""
    app = Quart(__name__)
    app.config.update(RQ_CONNECTION=connection, RQ_ASYNC=True)
    rq = AsyncRQ(app)
    async with app.app_context():
        try:
            job = await rq.queue.enqueue("tests.tasks.add", 2, 3)
            await burst(rq.make_worker())
            result = await job.latest_result(timeout=wait)
            status = await job.get_status()
        finally:
            await rq.state().pools.aclose()
    assert result is not None
    return status.value, result.return_value
