"""The quick start's Quart app: enqueue from async views, read the result back."""

from __future__ import annotations

import os
from typing import Any

from quart import Quart, request
from quickstart_tasks import count_words, rq, send_welcome

app = Quart(__name__)
app.config["RQ_CONNECTION"] = os.environ.get("REDIS_URL", "redis://localhost:6379/0")
app.config["RQ_QUEUES"] = ["email", "default"]  # priority order: email first
app.config["RQ_WORKER_ALLOWED_MODULES"] = ["quickstart_tasks"]  # what a worker may run
rq.init_app(app)


@app.post("/signup/<int:user_id>")
async def signup(user_id: int) -> dict[str, str]:
    job = await send_welcome.enqueue(user_id)  # one Redis round trip
    return {"job": job.id}


@app.post("/count")
async def count() -> dict[str, str]:
    job = await rq.queue.enqueue(count_words, await request.get_data(as_text=True))
    return {"job": job.id}


@app.get("/jobs/<job_id>")
async def job_result(job_id: str) -> tuple[dict[str, Any], int]:
    job = await rq.queues["email"].fetch_job(job_id) or await rq.queue.fetch_job(job_id)
    if job is None:
        return {"error": f"no job {job_id}"}, 404
    result = await job.latest_result(timeout=5)  # waits up to 5 s for the outcome
    status = await job.get_status()
    return {
        "status": status.value if status else None,
        "result": result.return_value if result else None,
    }, 200
