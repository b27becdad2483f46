"""The Quart example: enqueue jobs from ``async def`` views and read their results.

    POST /add          {"a": 2, "b": 3}     -> 202 {"job_id": "..."}  (optional "delay": s)
    POST /count-words  {"text": "a b c"}    -> 202 {"job_id": "..."}
    GET  /jobs/<id>[?wait=1]                -> {"id", "status", "result" or "error"}

Redis comes from ``$REDIS_URL`` (default ``redis://localhost:6379/0``).
"""

from __future__ import annotations

import os
from typing import Any

from quart import Quart, request

from aiorq_flask import InvalidJobError, Job, JobStatus, Result, ResultType

from .jobs import add, count_words, rq

WAIT_SECONDS = 10  # how long ``?wait=1`` waits for a result
MAX_DELAY = 60
ADD_USAGE = 'send JSON like {"a": 2, "b": 3}, optionally with "delay": seconds (up to 60)'

app = Quart(__name__)
app.config["RQ_CONNECTION"] = os.environ.get("REDIS_URL", "redis://localhost:6379/0")
# The worker runs only functions of these modules (and @rq.job ones), whatever Redis holds.
app.config["RQ_WORKER_ALLOWED_MODULES"] = ["examples.quart_app.jobs"]
rq.init_app(app)


@app.get("/")
async def index() -> dict[str, Any]:
    return {"routes": ["POST /add", "POST /count-words", "GET /jobs/<id>?wait=1"]}


@app.post("/add")
async def enqueue_add() -> tuple[dict[str, Any], int]:
    body = await request.get_json(silent=True) or {}
    try:
        a, b = int(body["a"]), int(body["b"])
        delay = float(body.get("delay", 0.005))  # how long the job takes, in seconds
        if not 0 <= delay <= MAX_DELAY:
            raise ValueError(delay)
    except (KeyError, TypeError, ValueError):
        return {"error": ADD_USAGE}, 400
    job = await add.enqueue(a, b, delay=delay)  # @rq.job: its queue, one Redis round trip
    return {"job_id": job.id}, 202


@app.post("/count-words")
async def enqueue_count_words() -> tuple[dict[str, Any], int]:
    body = await request.get_json(silent=True) or {}
    if not isinstance(body.get("text"), str):
        return {"error": 'send JSON like {"text": "some words"}'}, 400
    job = await rq.queue.enqueue(count_words, body["text"])  # any importable function
    return {"job_id": job.id}, 202


@app.get("/jobs/<job_id>")
async def job_status(job_id: str) -> tuple[dict[str, Any], int]:
    try:
        job = await rq.queue.fetch_job(job_id)
    except InvalidJobError:  # not even a well-formed id
        job = None
    if job is None:
        return {"error": f"no job {job_id!r}"}, 404
    wait = request.args.get("wait") == "1"
    result = await job.latest_result(timeout=WAIT_SECONDS if wait else 0)
    return describe(job, await job.get_status(), result), 200


def describe(job: Job, status: JobStatus | None, result: Result | None) -> dict[str, Any]:
    body: dict[str, Any] = {"id": job.id, "status": status.value if status else None}
    if result is not None and result.type is ResultType.SUCCESSFUL:
        body["result"] = result.return_value
    elif result is not None:
        body["error"] = result.exc_string
    return body
