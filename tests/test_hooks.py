"""Lifecycle hooks: ``@rq.worker_startup``, ``@rq.worker_shutdown``, ``@rq.before_job`` and
``@rq.after_job``, run by a real worker (in-process, or a subprocess for the command line)
against a real redis-server.

The worker runs outside any app context the test pushed, so a hook that sees the app
was given its context by the worker.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
import redis
from quart import Quart

from aiorq_flask import AsyncRQ, Job
from aiorq_flask.errors import WorkerStartupError
from aiorq_flask.outcomes import Ended, Outcome
from aiorq_flask.worker import Worker
from aiorq_flask.worker._worker import WorkerState

from .apps.worker_support import Process, burst, is_registered, latest_result, worker_env
from .hook_jobs import EVENTS, app_name
from .test_decorator import ROOT, error_lines, run_mypy


@pytest.fixture
async def rq(make_quart_app: Callable[..., Quart]) -> AsyncIterator[AsyncRQ]:
    """An AsyncRQ on a Quart app, with no app context pushed."""
    app = make_quart_app()
    extension = AsyncRQ(app)
    EVENTS.clear()
    yield extension
    await extension.state(app).pools.aclose()


def app_of(rq: AsyncRQ) -> Quart:
    [state] = rq._states.values()
    app: Quart = state.app
    return app


async def enqueue(rq: AsyncRQ, func: str, *args: object) -> Job:
    return await rq.state(app_of(rq)).queues["default"].enqueue(func, *args)


def worker_of(rq: AsyncRQ) -> Worker:
    return rq.make_worker(app=app_of(rq))


def note(what: str) -> None:
    EVENTS.append((what, app_name()))


async def test_hooks_run_in_order_around_each_job_inside_the_app_context(rq: AsyncRQ) -> None:
    @rq.worker_startup
    def first_startup(worker: Worker) -> None:
        note("startup 1")

    @rq.worker_startup
    async def second_startup(worker: Worker) -> None:
        note("startup 2")

    @rq.worker_shutdown
    async def first_shutdown(worker: Worker) -> None:
        note("shutdown 1")

    @rq.worker_shutdown
    def second_shutdown(worker: Worker) -> None:
        note("shutdown 2")

    @rq.before_job
    def first_before(job: Job) -> None:
        note(f"before 1 {job.args[0]}")

    @rq.before_job
    async def second_before(job: Job) -> None:
        note(f"before 2 {job.args[0]}")

    @rq.after_job
    async def first_after(job: Job, outcome: Ended) -> None:
        note(f"after 1 {job.args[0]} {outcome.status.value}")

    @rq.after_job
    def second_after(job: Job, outcome: Ended) -> None:
        note(f"after 2 {job.args[0]} {outcome.status.value}")

    await enqueue(rq, "tests.hook_jobs.noted", "job")
    await burst(worker_of(rq))

    name = app_of(rq).name
    assert app_name() == "no app context"  # the test's own task has none
    assert [
        ("startup 1", name),
        ("startup 2", name),
        ("before 1 job", name),
        ("before 2 job", name),
        ("job", name),
        ("after 2 job finished", name),
        ("after 1 job finished", name),
        ("shutdown 2", name),
        ("shutdown 1", name),
    ] == EVENTS


async def test_job_hooks_share_the_jobs_app_context(rq: AsyncRQ, sync_redis: redis.Redis) -> None:
    @rq.before_job
    def open_session(job: Job) -> None:
        from quart import g

        g.session = f"session for {job.id}"

    job = await enqueue(rq, "tests.hook_jobs.read_g", "session")
    await burst(worker_of(rq))

    result = latest_result(sync_redis, job.id)
    assert result is not None and result.return_value == f"session for {job.id}"


async def test_startup_hooks_get_the_worker_and_shutdown_hooks_run_after_its_last_job(
    rq: AsyncRQ, sync_redis: redis.Redis
) -> None:
    seen: list[object] = []

    @rq.worker_startup
    def startup(worker: Worker) -> None:
        seen.append(worker)

    @rq.worker_shutdown
    def shutdown(worker: Worker) -> None:
        seen.append((worker, is_registered(sync_redis, worker.name), list(EVENTS)))

    worker = worker_of(rq)
    await enqueue(rq, "tests.hook_jobs.noted", "job")
    await burst(worker)

    assert seen == [worker, (worker, False, [("job", app_of(rq).name)])]


async def test_after_job_hooks_get_the_outcome_of_each_job(rq: AsyncRQ) -> None:
    outcomes: dict[str, Ended] = {}

    @rq.after_job
    def keep(job: Job, outcome: Ended) -> None:
        outcomes[job.id] = outcome

    done = await enqueue(rq, "tests.tasks.add", 1, 2)
    failed = await enqueue(rq, "tests.tasks.fail", "on purpose")
    await burst(worker_of(rq))

    assert outcomes[done.id].status is Outcome.FINISHED
    assert outcomes[failed.id].status is Outcome.FAILED
    assert [outcomes[j.id].raw_id for j in (done, failed)] == [done.id.encode(), failed.id.encode()]
    assert {o.origin for o in outcomes.values()} == {b"default"}


# -- failing hooks ------------------------------------------------------------------------


async def test_a_failing_startup_hook_stops_the_worker_before_it_takes_a_job(
    rq: AsyncRQ, sync_redis: redis.Redis
) -> None:
    @rq.worker_startup
    def open_database(worker: Worker) -> None:
        raise ConnectionRefusedError("the database is down")

    @rq.worker_startup
    def never_run(worker: Worker) -> None:
        note("second startup hook")

    @rq.worker_shutdown
    def never_run_either(worker: Worker) -> None:
        note("shutdown hook")

    job = await enqueue(rq, "tests.hook_jobs.noted", "job")
    worker = worker_of(rq)
    with pytest.raises(WorkerStartupError) as raised:
        await worker.work(burst=True)

    assert str(raised.value) == (
        f"worker_startup hook {__name__}.test_a_failing_startup_hook_stops_the_worker_before_"
        "it_takes_a_job.<locals>.open_database failed: "
        "ConnectionRefusedError('the database is down')"
    )
    assert EVENTS == []
    assert worker.state is WorkerState.STOPPED
    assert not is_registered(sync_redis, worker.name)
    assert sync_redis.lrange("rq:queue:default", 0, -1) == [job.id.encode()]


async def test_a_failing_job_hook_is_logged_with_its_traceback_and_the_job_still_succeeds(
    rq: AsyncRQ, sync_redis: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    @rq.before_job
    def broken_before(job: Job) -> None:
        raise KeyError("before")

    @rq.after_job
    async def broken_after(job: Job, outcome: Ended) -> None:
        raise KeyError("after")

    job = await enqueue(rq, "tests.tasks.add", 2, 3)
    with caplog.at_level(logging.ERROR, logger="aiorq_flask.worker"):
        await burst(worker_of(rq))

    result = latest_result(sync_redis, job.id)
    assert result is not None and result.return_value == 5
    assert sync_redis.hget(f"rq:job:{job.id}", "status") == b"finished"
    failures = [r for r in caplog.records if "hook" in r.getMessage()]
    assert [r.getMessage().split(" failed")[0].split(" ")[0] for r in failures] == [
        "before_job",
        "after_job",
    ]
    assert all(r.exc_info and r.exc_info[0] is KeyError for r in failures)
    assert all(job.id in r.getMessage() for r in failures)


async def test_a_failing_shutdown_hook_is_logged_and_the_others_still_run(
    rq: AsyncRQ, caplog: pytest.LogCaptureFixture
) -> None:
    @rq.worker_shutdown
    def runs_last(worker: Worker) -> None:
        note("still ran")

    @rq.worker_shutdown
    def broken(worker: Worker) -> None:
        raise RuntimeError("cannot close")

    with caplog.at_level(logging.ERROR, logger="aiorq_flask.worker"):
        await burst(worker_of(rq))

    assert [("still ran", app_of(rq).name)] == EVENTS
    [record] = [r for r in caplog.records if "worker_shutdown hook" in r.getMessage()]
    assert record.exc_info is not None and record.exc_info[0] is RuntimeError


def test_the_worker_command_prints_one_line_when_a_startup_hook_fails(
    redis_url: str, tmp_path: Path
) -> None:
    env = worker_env(redis_url)
    env["HOOKS_APP_FAIL_STARTUP"] = "1"
    argv = [sys.executable, "-m", "aiorq_flask.worker", "--app", "tests.apps.hooks_app:app"]
    with Process(argv, env, tmp_path / "worker.log") as worker:
        status = worker.wait(30)
        output = worker.output()

    assert status == 2
    assert "Traceback" not in output
    assert output.strip().splitlines()[-1] == (
        "error: worker_startup hook tests.apps.hooks_app.open_pool failed: "
        "ConnectionRefusedError('the database is down')"
    )


# -- registration ---------------------------------------------------------------------------


def test_hooks_reach_apps_registered_before_and_after_and_an_apps_own_stay_its_own(
    make_quart_app: Callable[..., Quart],
) -> None:
    extension = AsyncRQ()
    before, after = make_quart_app(), make_quart_app()
    extension.init_app(before)

    @extension.before_job
    def shared(job: Job) -> None: ...

    extension.init_app(after)

    def own(job: Job) -> None: ...

    extension.state(before).hooks.before_job.append(own)

    assert extension.state(before).hooks.before_job == [shared, own]
    assert extension.state(after).hooks.before_job == [shared]


WRONG_HOOKS = """\
from aiorq_flask import AsyncRQ, Job

rq = AsyncRQ()


@rq.worker_startup
async def no_worker() -> None: ...  # wrong


@rq.before_job
def takes_an_int(job: int) -> None: ...  # wrong


@rq.after_job
def no_outcome(job: Job) -> None: ...  # wrong
"""


def test_mypy_strict_accepts_typed_hooks_and_reports_wrong_ones(tmp_path: Path) -> None:
    checked = run_mypy(ROOT / "tests" / "typing_hooks_sample.py")
    assert checked.returncode == 0, checked.stdout + checked.stderr

    sample = tmp_path / "wrong_hooks.py"
    sample.write_text(WRONG_HOOKS)
    wrong = {n for n, line in enumerate(WRONG_HOOKS.splitlines(), 1) if "# wrong" in line}
    checked = run_mypy(sample)
    # mypy reports a wrong decorated function on the decorator's line, just above it
    assert {n + 1 for n in error_lines(checked.stdout)} == wrong, checked.stdout


async def test_hooks_run_inside_a_flask_apps_context_too(redis_url: str) -> None:
    from flask import Flask

    app = Flask("flask_hooks")
    app.config.update(RQ_CONNECTION=redis_url, RQ_ASYNC=True)
    extension = AsyncRQ(app)
    EVENTS.clear()

    @extension.worker_startup
    async def startup(worker: Worker) -> None:
        note("startup")

    @extension.after_job
    def after(job: Job, outcome: Ended) -> None:
        note(f"after {outcome.status.value}")

    try:
        await extension.state(app).queues["default"].enqueue("tests.hook_jobs.noted", "job")
        await burst(extension.make_worker(app=app))
    finally:
        await extension.state(app).pools.aclose()

    assert EVENTS == [
        ("startup", "flask_hooks"),
        ("job", "flask_hooks"),
        ("after finished", "flask_hooks"),
    ]
