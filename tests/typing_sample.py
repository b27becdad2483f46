"""Correct uses of ``@rq.job`` for ``mypy --strict`` (tests/test_decorator.py runs it).

Never imported or collected by pytest: the checks are static, with ``assert_type``.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from datetime import datetime, timedelta, timezone
from typing import Any

from typing_extensions import assert_type

from aiorq_flask import AsyncRQ, Job, JobWrapper

rq = AsyncRQ()


@rq.job
def add(a: int, b: int = 0) -> int:
    return a + b


@rq.job()
def shout(text: str, *, times: int = 1) -> str:
    return text.upper() * times


@rq.job(queue="low", job_timeout=60)
async def multiply(a: int, b: int) -> int:
    return a * b


def original(a: int, b: int = 0) -> int:
    return a + b


add_wrapper: JobWrapper[[int, int], int] = add
multiply_wrapper: JobWrapper[[int, int], Coroutine[Any, Any, int]] = multiply
assert_type(add(1, 2), int)
assert_type(add(1), int)
assert_type(shout("hi", times=2), str)
add_func: Callable[[int, int], int] = add.func
wrapped: JobWrapper[[int, int], int] = rq.job(original)


async def use() -> None:
    assert_type(await multiply(2, 3), int)
    assert_type(await add.enqueue(1, 2), Job)
    assert_type(await add.enqueue(1, b=2), Job)
    assert_type(await shout.enqueue("hi", times=3), Job)
    assert_type(await multiply.enqueue(2, 3), Job)
    assert_type(await add.enqueue_at(datetime.now(timezone.utc), 1, 2), Job)
    assert_type(await add.enqueue_in(timedelta(seconds=5), 1, 2), Job)
    assert_type(await add.enqueue_in(5, 1, 2), Job)
    assert_type(await add.enqueue_call((1, 2), {}, job_timeout=30), Job)
    assert_type(await rq.queue.enqueue(add, 1, 2), Job)
