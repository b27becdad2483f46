"""The Quart app that worker subprocesses load (``--app tests.apps.worker_app:app``), and
that hypercorn serves for the tests that enqueue over HTTP.

Its config comes from the environment, so each test points it at the test server:

- ``WORKER_APP_REDIS_URL``: ``RQ_CONNECTION`` (the ``default`` connection); a value that
  starts with ``{`` is JSON for the dict form.
- ``WORKER_APP_QUEUES``: comma-separated ``RQ_QUEUES`` (default: ``default``).
- ``WORKER_APP_EMAIL_URL``: when set, queues ``email`` and ``email-priority`` use this
  second connection (named ``email``), as in the Flask-RQ example.
- ``WORKER_APP_ALLOWED_MODULES``: comma-separated ``RQ_WORKER_ALLOWED_MODULES`` (default:
  ``tests``, where every test job lives; empty: unset, any function may run).

Served, it has two routes:

    POST /jobs  {"func": path, "args": [...], "depends_on": id, "delay": s} -> 202 {"job_id"}
    GET  /jobs/<id>[?wait=1]  -> {"status", "type", "return_value" or "exc_string"}
"""

from __future__ import annotations

import os
from typing import Any

from quart import Quart, request

from aiorq_flask import AsyncRQ, Job

WAIT_SECONDS = 10

app = Quart(__name__)
app.config.from_object("tests.apps.worker_settings")
allowed = os.environ.get("WORKER_APP_ALLOWED_MODULES", "tests")
if allowed:
    app.config["RQ_WORKER_ALLOWED_MODULES"] = allowed.split(",")
if os.environ.get("WORKER_APP_EMAIL_URL"):
    app.config["RQ_QUEUE_CONNECTIONS"] = {
        "email": os.environ["WORKER_APP_EMAIL_URL"],
        "email-priority": "email",
    }
rq = AsyncRQ(app)


@app.post("/jobs")
async def enqueue() -> tuple[dict[str, Any], int]:
    body = await request.get_json()
    func, args = body["func"], body.get("args", [])
    if "delay" in body:
        job = await rq.queue.enqueue_in(body["delay"], func, *args)
    else:
        job = await rq.queue.enqueue_call(func, args, depends_on=body.get("depends_on"))
    return {"job_id": job.id}, 202


@app.get("/jobs/<job_id>")
async def job_status(job_id: str) -> dict[str, Any]:
    job = await Job.fetch(job_id, rq.queue.connection)
    wait = WAIT_SECONDS if request.args.get("wait") == "1" else 0
    result = await job.latest_result(timeout=wait)
    status = await job.get_status()
    return {
        "status": status.value if status else None,
        "type": result.type.value if result else None,
        "return_value": result.return_value if result else None,
        "exc_string": result.exc_string if result else None,
    }
