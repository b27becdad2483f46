"""What the deployment tests run: a round trip through an app and a worker, and a job that
counts its runs outside Redis (a failover may lose writes; this file does not)."""

from __future__ import annotations

import os
from typing import Any

from quart import Quart

from aiorq_flask import AsyncRQ

from ..apps.worker_support import burst

BIG = 2 << 20  # above payload.BIG_DATA


def record_run(path: str, token: str) -> str:
    """Append ``token`` to the file at ``path``: one line per run of the job."""
    with open(path, "a") as runs:
        runs.write(f"{token}\n")
    return token


async def run_a_job(connection: str | dict[str, Any], wait: float = 5) -> tuple[str, Any]:
    """Enqueue ``add(2, 3)`` through an app on ``connection``, run it with a burst worker
    on the same connection, and read back its status and result through the app (waiting
    for the result up to ``wait`` seconds, or not at all with 0).

    A job with a 2 MiB argument goes through too: a big payload is written and read on
    connections of its own (``_bulk``), which must connect as the others do."""
    app = Quart(__name__)
    app.config.update(RQ_CONNECTION=connection, RQ_ASYNC=True)
    rq = AsyncRQ(app)
    async with app.app_context():
        try:
            job = await rq.queue.enqueue("tests.tasks.add", 2, 3)
            big = await rq.queue.enqueue("tests.tasks.size", os.urandom(BIG))
            await burst(rq.make_worker())
            result = await job.latest_result(timeout=wait)
            status = await job.get_status()
            big_result = await big.latest_result(timeout=wait)
        finally:
            await rq.state().pools.aclose()
    assert result is not None
    assert big_result is not None and big_result.return_value == BIG
    return status.value, result.return_value
