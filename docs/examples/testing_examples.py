"""Tests written with the fixtures of testing_conftest.py (collected as test_*.py)."""

from __future__ import annotations

from quart import Quart
from testing_app import rq
from testing_conftest import run_worker


async def test_signup_runs_the_job_at_once(eager_app: Quart) -> None:
    response = await eager_app.test_client().post("/greet/ada")
    job_id = (await response.get_json())["job"]
    async with eager_app.app_context():
        job = await rq.queue.fetch_job(job_id)
        assert job is not None and await job.return_value() == "hello ada"


async def test_jobs_wait_for_a_worker(queued_app: Quart) -> None:
    await queued_app.test_client().post("/greet/bo")
    async with queued_app.app_context():
        assert await rq.queue.count() == 1
    assert await run_worker(queued_app) == 1
