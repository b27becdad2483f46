"""Job functions for the tests; importable by our worker and by stock rq workers."""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from typing import Any


def size(data: bytes) -> int:
    return len(data)


def add(a: int, b: int, c: int = 0) -> int:
    return a + b + c


async def async_add(a: int, b: int) -> int:
    await asyncio.sleep(0)
    return a + b


def fail(message: str = "boom") -> None:
    raise ValueError(message)


async def async_sleep(seconds: float) -> float:
    await asyncio.sleep(seconds)  # job body
    return seconds


def sync_sleep(seconds: float) -> str:
    time.sleep(seconds)  # job body
    return threading.current_thread().name


def echo(*args: Any, **kwargs: Any) -> list[Any]:
    return [list(args), kwargs]


def _app_name() -> str:
    for framework in ("quart", "flask"):
        module = sys.modules.get(framework)
        if module is not None and module.has_app_context():
            return str(module.current_app.name)
    raise RuntimeError("no app context in this job")


def app_name() -> str:
    return _app_name()


async def async_app_name() -> str:
    return _app_name()
