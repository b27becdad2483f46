"""A job that knows itself: ``get_current_job()`` inside a job (``async def`` on the loop,
``def`` in a worker thread, and in eager mode), and progress a running job saves with
``await job.save_meta()``, seen from outside while it runs."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator

import httpx
import pytest
import redis
from quart import Quart
from rq.job import Job as RQJob

from aiorq_flask import AsyncRQ, MsgpackSerializer, get_current_job

from . import self_aware_jobs
from .apps.worker_support import all_have_status, async_wait_until, burst, latest_result, serving
from .test_http_apps import PLAIN_HTTP, HypercornThread


def test_get_current_job_is_none_outside_a_job() -> None:
    assert get_current_job() is None


async def test_get_current_job_is_distinct_in_50_concurrent_async_jobs(
    quart_rq: AsyncRQ, sync_redis: redis.Redis, redis_url: str
) -> None:
    jobs = [
        await quart_rq.queue.enqueue(
            self_aware_jobs.current_ids_across_a_rendezvous, redis_url, "arrived", 50
        )
        for _ in range(50)
    ]
    ids = [job.id for job in jobs]

    async with serving(quart_rq.make_worker(concurrency=50), sync_redis):
        await async_wait_until(lambda: all_have_status(sync_redis, ids, "finished"), timeout=30)

    seen = [latest_result(sync_redis, job_id).return_value for job_id in ids]  # type: ignore[union-attr]
    assert seen == [[job_id, job_id] for job_id in ids]
    assert int(sync_redis.get("arrived") or 0) == 50  # all were running at once


async def test_get_current_job_reaches_a_plain_function_in_its_thread(
    quart_rq: AsyncRQ, sync_redis: redis.Redis
) -> None:
    jobs = [await quart_rq.queue.enqueue(self_aware_jobs.current_id) for _ in range(5)]

    await burst(quart_rq.make_worker(concurrency=5))

    assert [latest_result(sync_redis, j.id).return_value for j in jobs] == [j.id for j in jobs]  # type: ignore[union-attr]


async def test_get_current_job_is_none_again_after_a_job(quart_rq: AsyncRQ) -> None:
    await quart_rq.queue.enqueue(self_aware_jobs.current_id)

    await burst(quart_rq.make_worker())

    assert get_current_job() is None


@pytest.mark.parametrize("function", [self_aware_jobs.current_id, self_aware_jobs.async_current_id])
async def test_get_current_job_in_eager_mode_is_the_jobs_handle(
    make_quart_app: Callable[..., Quart], function: Callable[[], str | None]
) -> None:
    app = make_quart_app(RQ_ASYNC=False)
    rq = AsyncRQ(app)
    async with app.app_context():
        job = await rq.queue.enqueue(function)

        assert await job.return_value() == job.id
        assert get_current_job() is None
        await rq.state().pools.aclose()


# -- progress seen while the job runs ------------------------------------------------------


def progress_app(redis_url: str) -> Quart:
    """An app whose view reads a job's ``meta`` (its progress)."""
    app = Quart("progress")
    app.config.update(RQ_CONNECTION=redis_url, RQ_ASYNC=True)
    rq = AsyncRQ(app)

    @app.get("/jobs/<job_id>")
    async def job_status(job_id: str) -> dict[str, object]:
        job = await rq.queue.fetch_job(job_id)
        assert job is not None
        return {"status": (await job.get_status()).value, "meta": job.meta}  # type: ignore[union-attr]

    @app.get("/ready")
    async def ready() -> str:
        return "ready"

    return app


@pytest.fixture
def progress_server(redis_url: str) -> Iterator[HypercornThread]:
    with HypercornThread.serving(progress_app(redis_url)) as server:
        yield server


@pytest.fixture
async def http(progress_server: HypercornThread) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        base_url=progress_server.base_url, **PLAIN_HTTP, timeout=10
    ) as client:
        yield client


async def test_progress_saved_inside_a_job_is_seen_from_a_quart_view_while_it_runs(
    quart_rq: AsyncRQ, sync_redis: redis.Redis, redis_url: str, http: httpx.AsyncClient
) -> None:
    job = await quart_rq.queue.enqueue(self_aware_jobs.report_progress, redis_url, "release")
    seen: list[object] = []

    async def progress_shown() -> bool:
        seen.append((await http.get(f"/jobs/{job.id}")).json())
        return seen[-1] == {"status": "started", "meta": {"progress": 50}}

    async with serving(quart_rq.make_worker(), sync_redis):
        deadline = asyncio.get_running_loop().time() + 10
        while not await progress_shown():
            assert asyncio.get_running_loop().time() < deadline, seen[-1]
            await asyncio.sleep(0.02)
        sync_redis.set("release", 1)
        await async_wait_until(lambda: all_have_status(sync_redis, [job.id], "finished"))

    assert latest_result(sync_redis, job.id).return_value == "done"  # type: ignore[union-attr]


async def test_a_plain_function_saves_progress_through_the_workers_loop(
    quart_rq: AsyncRQ, sync_redis: redis.Redis
) -> None:
    job = await quart_rq.queue.enqueue(self_aware_jobs.sync_save_progress)

    await burst(quart_rq.make_worker())

    assert latest_result(sync_redis, job.id).return_value == "saved"  # type: ignore[union-attr]
    assert RQJob.fetch(job.id, sync_redis, MsgpackSerializer).meta == {"progress": 100}


async def test_save_meta_writes_only_meta_which_stock_rq_reads(
    quart_rq: AsyncRQ, sync_redis: redis.Redis
) -> None:
    job = await quart_rq.queue.enqueue("tests.tasks.add", 1, 2, meta={"a": 1})
    before = sync_redis.hgetall(f"rq:job:{job.id}")
    job.meta["progress"] = 75

    await job.save_meta()

    after = sync_redis.hgetall(f"rq:job:{job.id}")
    assert {k for k in after if after[k] != before.get(k)} == {b"meta"}
    assert RQJob.fetch(job.id, sync_redis, MsgpackSerializer).meta == {"a": 1, "progress": 75}
