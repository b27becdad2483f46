"""The execution allowlist: a worker runs only the app's jobs, whatever Redis holds.

``RQ_WORKER_ALLOWED_MODULES`` (and the worker's ``--allow-module``) lists module prefixes.
A prefix allows a dotted path that is the prefix or continues it after a dot
(``aiorq_flask.allowlist.within``). A job whose function or callback lies outside is
failed, never retried, its ``exc_string`` naming the function and the rule, and nothing is
imported for it. ``@rq.job`` functions always run. Without the setting every importable
function runs, and the worker says so once at start.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import redis
from quart import Quart

from aiorq_flask import AsyncRQ, ConfigError, Retry
from aiorq_flask.allowlist import Allowlist, within

from . import job_funcs
from .apps.worker_support import (
    APP,
    Process,
    burst,
    enqueue_jobs,
    latest_result,
    status,
    unique_name,
    worker_env,
)

OUTSIDE = "tests.outside_allowlist"  # a module no test imports


# -- the rule ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "allowed"),
    [
        ("myapp.tasks", True),
        ("myapp.tasks.send", True),
        ("myapp.tasks.sub.f", True),
        ("myapp.tasks.Mailer.send", True),
        ("myapp.tasks_evil.f", False),
        ("myapp.task", False),
        ("myapp", False),
        ("myapp.other.f", False),
        ("os.system", False),
    ],
)
def test_a_prefix_allows_itself_and_what_lies_below_it_after_a_dot(
    path: str, allowed: bool
) -> None:
    assert within(path, "myapp.tasks") is allowed


def test_decorated_functions_are_allowed_by_their_exact_path() -> None:
    allowlist = Allowlist((), {"myapp.jobs.send"})

    assert allowlist.allows("myapp.jobs.send")
    assert not allowlist.allows("myapp.jobs.send_all")
    assert not allowlist.allows("myapp.jobs.other")


def test_without_prefixes_everything_is_allowed() -> None:
    assert Allowlist(None).allows("os.system")


# -- the config key ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    ["myapp.tasks", ("myapp.*",), ["myapp.tasks."], [""], ["my app"], [3], {"myapp": True}],
    ids=repr,
)
def test_allowed_modules_that_are_not_a_list_of_dotted_names_fail_at_init_app(
    make_quart_app: Callable[..., Quart], value: Any
) -> None:
    with pytest.raises(ConfigError, match="RQ_WORKER_ALLOWED_MODULES") as caught:
        AsyncRQ(make_quart_app(RQ_WORKER_ALLOWED_MODULES=value))

    assert repr(value) in str(caught.value)


def test_allowed_modules_are_kept_in_the_plan(make_quart_app: Callable[..., Quart]) -> None:
    app = make_quart_app(RQ_WORKER_ALLOWED_MODULES=["myapp.tasks", "myapp.mail"])

    assert AsyncRQ(app).state(app).plan.allowed_modules == ("myapp.tasks", "myapp.mail")


def test_unset_allowed_modules_allow_everything(make_quart_app: Callable[..., Quart]) -> None:
    app = make_quart_app()

    assert AsyncRQ(app).state(app).plan.allowed_modules is None


def test_an_app_remembers_its_extensions_decorated_functions_also_those_decorated_later(
    make_quart_app: Callable[..., Quart],
) -> None:
    rq, other = AsyncRQ(), AsyncRQ()
    app = make_quart_app()
    rq.init_app(app)

    @rq.job
    def late() -> None: ...

    @other.job
    def elsewhere() -> None: ...

    functions = rq.state(app).job_functions
    assert f"{__name__}.{late.__qualname__}" in functions
    assert f"{__name__}.{elsewhere.__qualname__}" not in functions


# -- a worker with an allowlist ------------------------------------------------------------------


@pytest.fixture
async def make_rq(
    make_quart_app: Callable[..., Quart],
) -> AsyncIterator[Callable[..., tuple[Quart, AsyncRQ]]]:
    """Apps with an AsyncRQ each (``extension``: an existing one), app contexts pushed."""
    made: list[tuple[Quart, AsyncRQ]] = []

    def make(extension: AsyncRQ | None = None, **config: Any) -> tuple[Quart, AsyncRQ]:
        app = make_quart_app(**config)
        rq = extension or AsyncRQ()
        rq.init_app(app)
        made.append((app, rq))
        return app, rq

    yield make
    for app, rq in made:
        await rq.state(app).pools.aclose()


def refusal(client: redis.Redis, job_id: str) -> str:
    """The ``exc_string`` of the job's one result, which must be a failure."""
    result = latest_result(client, job_id)
    assert result is not None and result.type == 2, result
    assert result.exc_string is not None
    return result.exc_string


async def test_a_job_outside_the_allowlist_fails_naming_it_and_nothing_is_imported(
    make_rq: Callable[..., tuple[Quart, AsyncRQ]], sync_redis: redis.Redis
) -> None:
    assert OUTSIDE not in sys.modules
    app, rq = make_rq(RQ_WORKER_ALLOWED_MODULES=["tests.tasks"])
    refused = await rq.state(app).queues["default"].enqueue(f"{OUTSIDE}.run", retry=Retry(3))

    await burst(rq.make_worker(app=app))

    assert status(sync_redis, refused.id) == "failed"  # at once: never retried
    text = refusal(sync_redis, refused.id)
    assert f"'{OUTSIDE}.run' is not allowed" in text
    assert "RQ_WORKER_ALLOWED_MODULES" in text and "'tests.tasks'" in text
    assert OUTSIDE not in sys.modules


async def test_a_prefix_ends_at_a_dot_so_a_lookalike_module_is_refused(
    make_rq: Callable[..., tuple[Quart, AsyncRQ]], sync_redis: redis.Redis
) -> None:
    app, rq = make_rq(RQ_WORKER_ALLOWED_MODULES=["tests.tasks"])
    queue = rq.state(app).queues["default"]
    inside = await queue.enqueue("tests.tasks.add", 1, 2)
    lookalike = await queue.enqueue("tests.tasks_evil.run")

    await burst(rq.make_worker(app=app))

    assert latest_result(sync_redis, inside.id).return_value == 3
    assert "'tests.tasks_evil.run' is not allowed" in refusal(sync_redis, lookalike.id)


async def test_a_path_within_a_prefix_that_resolves_to_a_function_outside_it_is_refused(
    make_rq: Callable[..., tuple[Quart, AsyncRQ]], sync_redis: redis.Redis
) -> None:
    """``tests.tasks`` imports ``asyncio``: ``tests.tasks.asyncio.sleep`` is ``asyncio.sleep``."""
    app, rq = make_rq(RQ_WORKER_ALLOWED_MODULES=["tests.tasks"])
    job = await rq.state(app).queues["default"].enqueue("tests.tasks.asyncio.sleep", 0)

    await burst(rq.make_worker(app=app))

    text = refusal(sync_redis, job.id)
    assert "'tests.tasks.asyncio.sleep' resolves to asyncio" in text
    assert "not allowed" in text


@pytest.mark.parametrize("kind", ["on_success", "on_failure", "on_stopped"])
async def test_a_job_whose_callback_lies_outside_the_allowlist_fails_unrun(
    make_rq: Callable[..., tuple[Quart, AsyncRQ]],
    sync_redis: redis.Redis,
    redis_url: str,
    kind: str,
) -> None:
    app, rq = make_rq(RQ_WORKER_ALLOWED_MODULES=["tests.worker_jobs"])
    trace = unique_name("trace")
    job = (
        await rq.state(app)
        .queues["default"]
        .enqueue("tests.worker_jobs.record", redis_url, trace, "ran", **{kind: f"{OUTSIDE}.run"})
    )

    await burst(rq.make_worker(app=app))

    assert sync_redis.lrange(trace, 0, -1) == []
    callback = kind.removeprefix("on_")
    assert f"{callback} callback '{OUTSIDE}.run' is not allowed" in refusal(sync_redis, job.id)
    assert OUTSIDE not in sys.modules


async def test_decorated_functions_run_even_when_no_module_is_allowed(
    make_rq: Callable[..., tuple[Quart, AsyncRQ]], sync_redis: redis.Redis
) -> None:
    app, rq = make_rq(job_funcs.rq, RQ_WORKER_ALLOWED_MODULES=[])
    queue = rq.state(app).queues["default"]
    decorated = await queue.enqueue(job_funcs.decorated_add, 2, 3)
    plain = await queue.enqueue(job_funcs.thread_ident)

    await burst(rq.make_worker(app=app))

    assert latest_result(sync_redis, decorated.id).return_value == 5
    assert "'tests.job_funcs.thread_ident' is not allowed" in refusal(sync_redis, plain.id)


async def test_a_worker_without_an_allowlist_warns_once_at_start_naming_the_setting(
    make_rq: Callable[..., tuple[Quart, AsyncRQ]], caplog: pytest.LogCaptureFixture
) -> None:
    app, rq = make_rq()
    await rq.state(app).queues["default"].enqueue("tests.tasks.add", 1, 2)

    await burst(rq.make_worker(app=app))

    warnings = [r for r in caplog.records if "RQ_WORKER_ALLOWED_MODULES" in r.getMessage()]
    assert [r.levelno for r in warnings] == [logging.WARNING]
    assert "--allow-module" in warnings[0].getMessage()


async def test_a_worker_with_an_allowlist_does_not_warn(
    make_rq: Callable[..., tuple[Quart, AsyncRQ]], caplog: pytest.LogCaptureFixture
) -> None:
    app, rq = make_rq()

    await burst(rq.make_worker(app=app, allow_modules=["tests.tasks"]))

    assert "RQ_WORKER_ALLOWED_MODULES" not in caplog.text


# -- the worker command ----------------------------------------------------------------------------


def test_allow_module_adds_to_the_configs_list(
    tmp_path: Path, redis_url: str, sync_redis: redis.Redis
) -> None:
    [config_only] = enqueue_jobs(redis_url, "tests.tasks.add", (1, 2))
    [option_only] = enqueue_jobs(redis_url, "tests.job_funcs.running_loop_id")
    [neither] = enqueue_jobs(redis_url, f"{OUTSIDE}.run")
    env = {**worker_env(redis_url), "WORKER_APP_ALLOWED_MODULES": "tests.tasks"}
    argv = [sys.executable, "-m", "aiorq_flask.worker", "--app", APP, "--burst"]
    argv += ["--allow-module", "tests.job_funcs", "--allow-module", "tests.worker_jobs"]

    with Process(argv, env, tmp_path / "worker.log") as worker:
        assert worker.wait(30) == 0, worker.output()

    assert [status(sync_redis, job_id) for job_id in (config_only, option_only, neither)] == [
        "finished",
        "finished",
        "failed",
    ]
    text = refusal(sync_redis, neither)
    assert "'tests.tasks', 'tests.job_funcs', 'tests.worker_jobs'" in text


@pytest.mark.parametrize("prefix", ["tests.*", "", "tests..tasks"])
def test_a_bad_allow_module_stops_the_worker_command_with_one_line(
    tmp_path: Path, redis_url: str, prefix: str
) -> None:
    argv = [sys.executable, "-m", "aiorq_flask.worker", "--app", APP, "--allow-module", prefix]

    with Process(argv, worker_env(redis_url), tmp_path / "worker.log") as worker:
        assert worker.wait(30) == 2

    assert worker.output().startswith("error: --allow-module")
    assert len(worker.output().splitlines()) == 1
