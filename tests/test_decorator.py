"""``@rq.job``: the wrapper calls the function, enqueues it with its defaults, and keeps its
types (checked by running mypy --strict on tests/typing_sample.py and on a wrong sample).
"""

from __future__ import annotations

import re
import subprocess
import textwrap
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import redis
from quart import Quart

from aiorq_flask import AsyncRQ, JobStatus, JobWrapper

from . import job_funcs
from .job_funcs import decorated_add, decorated_async_mul, decorated_shout

ROOT = Path(__file__).resolve().parents[1]
MYPY = str(ROOT / ".venv" / "bin" / "mypy")


@pytest.fixture
async def rq(make_quart_app: Callable[..., Quart]) -> AsyncIterator[AsyncRQ]:
    """``job_funcs.rq`` (the extension the decorated functions use) on an app of this test."""
    app = make_quart_app(RQ_QUEUES=["high", "default", "low"])
    job_funcs.rq.init_app(app)
    async with app.app_context():
        yield job_funcs.rq
        await job_funcs.rq.state().pools.aclose()


def run_mypy(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [MYPY, "--strict", "--no-error-summary", str(path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=50,
    )


def error_lines(output: str) -> set[int]:
    return {int(m) for m in re.findall(r"^[^\n:]+:(\d+): error:", output, re.MULTILINE)}


# -- calling -----------------------------------------------------------------------------


def test_bare_decorator_returns_a_job_wrapper() -> None:
    assert isinstance(decorated_add, JobWrapper)


def test_calling_a_bare_decorated_function_calls_it() -> None:
    assert decorated_add(2, 3) == 5


def test_calling_a_function_decorated_with_empty_parentheses_calls_it() -> None:
    assert decorated_shout("hi") == "HI"


async def test_calling_a_decorated_async_function_returns_its_coroutine() -> None:
    assert await decorated_async_mul(6, 7) == 42


def test_func_is_the_original_function() -> None:
    assert decorated_add.func.__qualname__ == "decorated_add"
    assert not isinstance(decorated_add.func, JobWrapper)
    assert decorated_add.func(1, 1) == 2


def test_wrapper_keeps_the_functions_name_and_module() -> None:
    assert (decorated_add.__name__, decorated_add.__module__) == (
        "decorated_add",
        "tests.job_funcs",
    )


# -- enqueueing --------------------------------------------------------------------------


async def test_enqueue_of_a_bare_decorated_function_uses_the_default_queue(
    rq: AsyncRQ, sync_redis: redis.Redis
) -> None:
    job = await decorated_add.enqueue(1, b=2)

    assert sync_redis.lrange("rq:queue:default", 0, -1) == [job.id.encode()]
    assert (job.func_name, job.args, job.kwargs) == ("tests.job_funcs.decorated_add", [1], {"b": 2})


async def test_enqueue_with_empty_parentheses_uses_the_default_queue(
    rq: AsyncRQ, sync_redis: redis.Redis
) -> None:
    job = await decorated_shout.enqueue("hi")

    assert sync_redis.lrange("rq:queue:default", 0, -1) == [job.id.encode()]


async def test_enqueue_uses_the_decorators_queue(rq: AsyncRQ, sync_redis: redis.Redis) -> None:
    job = await decorated_async_mul.enqueue(2, 3)

    assert sync_redis.lrange("rq:queue:low", 0, -1) == [job.id.encode()]
    assert job.origin == "low"


async def test_enqueue_applies_the_decorators_defaults(
    rq: AsyncRQ, sync_redis: redis.Redis
) -> None:
    job = await decorated_async_mul.enqueue(2, 3)

    assert sync_redis.hget(f"rq:job:{job.id}", "timeout") == b"60"


async def test_enqueue_options_override_the_decorators_defaults(
    rq: AsyncRQ, sync_redis: redis.Redis
) -> None:
    job = await decorated_async_mul.enqueue_call((2, 3), job_timeout=5)

    assert sync_redis.hget(f"rq:job:{job.id}", "timeout") == b"5"


async def test_enqueue_call_uses_the_decorators_queue_and_defaults(
    rq: AsyncRQ, sync_redis: redis.Redis
) -> None:
    job = await decorated_async_mul.enqueue_call(args=(4,), kwargs={"b": 5})

    assert (job.origin, job.args, job.kwargs, job.timeout) == ("low", [4], {"b": 5}, 60)


async def test_enqueue_at_schedules_on_the_decorators_queue_with_its_defaults(
    rq: AsyncRQ, sync_redis: redis.Redis
) -> None:
    when = datetime(2031, 1, 2, 3, 4, 5, tzinfo=timezone.utc)

    job = await decorated_async_mul.enqueue_at(when, 2, 3)

    assert sync_redis.zscore("rq:scheduled:low", job.id) == when.timestamp()
    mapping = sync_redis.hgetall(f"rq:job:{job.id}")
    assert (mapping[b"status"], mapping[b"timeout"]) == (b"scheduled", b"60")


@pytest.mark.parametrize("delay", [timedelta(minutes=5), 300])
async def test_enqueue_in_schedules_on_the_decorators_queue(
    rq: AsyncRQ, sync_redis: redis.Redis, delay: timedelta | int
) -> None:
    earliest = datetime.now(timezone.utc).timestamp() + 299

    job = await decorated_async_mul.enqueue_in(delay, 2, 3)

    score = sync_redis.zscore("rq:scheduled:low", job.id)
    assert score is not None and earliest <= score <= earliest + 3
    assert job.status is JobStatus.SCHEDULED


async def test_queue_enqueue_of_the_wrapper_enqueues_the_function(
    rq: AsyncRQ, sync_redis: redis.Redis
) -> None:
    job = await rq.get_queue("high").enqueue(decorated_add, 1, 2)

    assert job.func_name == "tests.job_funcs.decorated_add"
    assert sync_redis.lrange("rq:queue:high", 0, -1) == [job.id.encode()]


async def test_our_worker_runs_a_decorated_def_job(rq: AsyncRQ) -> None:
    job = await decorated_add.enqueue(20, 22)

    await rq.make_worker().work(burst=True)

    assert await job.return_value() == 42


async def test_our_worker_runs_a_decorated_async_def_job(rq: AsyncRQ) -> None:
    job = await decorated_async_mul.enqueue(6, 7)

    await rq.make_worker().work(burst=True)

    assert await job.return_value() == 42


# -- typing ------------------------------------------------------------------------------


def test_mypy_strict_accepts_the_correct_uses_in_typing_sample() -> None:
    checked = run_mypy(ROOT / "tests" / "typing_sample.py")

    assert checked.returncode == 0, checked.stdout + checked.stderr


WRONG_SAMPLE = """\
from datetime import datetime, timezone

from aiorq_flask import AsyncRQ

rq = AsyncRQ()


@rq.job
def add(a: int, b: int) -> int:
    return a + b


@rq.job(queue="low", job_timeout=60)
async def multiply(a: int, b: int) -> int:
    return a * b


async def use() -> None:
    add(1, 2)
    add("1", 2)  # wrong
    await add.enqueue(1, 2)
    await add.enqueue(1, "2")  # wrong
    await add.enqueue(1)  # wrong
    await multiply.enqueue(a=1, c=2)  # wrong
    await add.enqueue_at(datetime.now(timezone.utc), "1", 2)  # wrong
    await add.enqueue_in(5, 1, b="2")  # wrong
    text: str = add(1, 2)  # wrong
    print(text)
"""


def test_mypy_strict_reports_each_wrong_call_of_a_decorated_function(tmp_path: Path) -> None:
    sample = tmp_path / "wrong_sample.py"
    sample.write_text(WRONG_SAMPLE)
    wrong = {n for n, line in enumerate(WRONG_SAMPLE.splitlines(), 1) if line.endswith("# wrong")}

    checked = run_mypy(sample)

    assert checked.returncode == 1, checked.stdout + checked.stderr
    assert error_lines(checked.stdout) == wrong, checked.stdout


def test_mypy_strict_names_the_expected_type_of_a_wrong_argument(tmp_path: Path) -> None:
    sample = tmp_path / "wrong_enqueue.py"
    sample.write_text(
        textwrap.dedent(
            """\
            from aiorq_flask import AsyncRQ

            rq = AsyncRQ()


            @rq.job
            def add(a: int, b: int) -> int:
                return a + b


            async def use() -> None:
                await add.enqueue(1, "2")
            """
        )
    )

    checked = run_mypy(sample)

    assert 'incompatible type "str"; expected "int"' in checked.stdout, checked.stdout
