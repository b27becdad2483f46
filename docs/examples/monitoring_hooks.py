"""Lifecycle hooks and job signals: a client per worker, a log line per job, a count."""

from __future__ import annotations

import logging
import time
from collections import Counter
from typing import Any

import httpx
from quart import current_app, g

from aiorq_flask import AsyncRQ, Job
from aiorq_flask.outcomes import Ended
from aiorq_flask.signals import job_enqueued, job_failed
from aiorq_flask.worker import Worker

rq = AsyncRQ()
log = logging.getLogger("myapp.jobs")


@rq.worker_startup
async def open_client(worker: Worker) -> None:
    # Once per worker process, in the app context, before it takes a job.
    current_app.extensions["http"] = httpx.AsyncClient(
        limits=httpx.Limits(max_connections=worker.concurrency)
    )


@rq.worker_shutdown
async def close_client(worker: Worker) -> None:
    # Once the last job ended; shutdown hooks run in reverse order.
    await current_app.extensions.pop("http").aclose()


@rq.before_job
def start_clock(job: Job) -> None:
    g.started = time.perf_counter()  # g is the job's own: it runs in this app context


@rq.after_job
def log_job(job: Job, outcome: Ended) -> None:
    took = time.perf_counter() - g.started
    log.info("job %s (%s): %s in %.3fs", job.id, job.func_name, outcome.status.value, took)


@rq.job
async def fetch_status(url: str) -> int:
    response = await current_app.extensions["http"].get(url)
    return response.status_code


failures: Counter[str] = Counter()  # failed jobs by queue
enqueued: Counter[str] = Counter()  # enqueued jobs by queue


@job_failed.connect
def count_failure(app: Any, job: Job | None, outcome: Ended, **extra: Any) -> None:
    failures[outcome.origin.decode()] += 1  # job is None when the worker could not read it


@job_enqueued.connect
def count_enqueue(app: Any, job: Job, **extra: Any) -> None:
    enqueued[job.origin] += 1
