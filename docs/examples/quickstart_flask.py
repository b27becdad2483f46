"""The quick start as an async Flask app: the same jobs, enqueued from ``async def`` views."""

from __future__ import annotations

import os
from typing import Any

from flask import Flask, request
from quickstart_tasks import count_words, rq, send_welcome

app = Flask(__name__)
app.config["RQ_CONNECTION"] = os.environ.get("REDIS_URL", "redis://localhost:6379/0")
app.config["RQ_QUEUES"] = ["email", "default"]
app.config["RQ_WORKER_ALLOWED_MODULES"] = ["quickstart_tasks"]
rq.init_app(app)  # one AsyncRQ object serves any number of apps


@app.post("/signup/<int:user_id>")
async def signup(user_id: int) -> dict[str, str]:
    job = await send_welcome.enqueue(user_id)
    return {"job": job.id}


@app.post("/count")
async def count() -> dict[str, str]:
    job = await rq.queue.enqueue(count_words, request.get_data(as_text=True))
    return {"job": job.id}


@app.get("/jobs/<job_id>")
async def job_result(job_id: str) -> tuple[dict[str, Any], int]:
    job = await rq.queues["email"].fetch_job(job_id) or await rq.queue.fetch_job(job_id)
    if job is None:
        return {"error": f"no job {job_id}"}, 404
    result = await job.latest_result(timeout=5)
    status = await job.get_status()
    return {
        "status": status.value if status else None,
        "result": result.return_value if result else None,
    }, 200
