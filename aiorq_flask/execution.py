"""Running one job and encoding its outcome the way rq records it.

Shared by the worker and by eager mode (``RQ_ASYNC = False``), so a job run either way
leaves the same state in Redis.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import importlib
import inspect
import json
import traceback
import zlib
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

import anyio

from .errors import InvalidJobError, JobTimeoutError, SerializationError
from .job import Retry
from .serializer import MsgpackSerializer

UNSERIALIZABLE = "Unserializable return value"


@functools.lru_cache(maxsize=1024)
def import_function(func_name: str) -> Callable[..., Any]:
    """Import ``module.attr[.attr...]`` as rq does: the longest importable module prefix,
    then attributes; a name without a dot is a builtin. Raises ``InvalidJobError``."""
    module_name, _, rest = func_name.rpartition(".")
    attributes = [rest]
    obj: Any = None
    while module_name:
        try:
            obj = importlib.import_module(module_name)
            break
        except ModuleNotFoundError as error:
            if error.name is None or not module_name.startswith(error.name):
                raise InvalidJobError(
                    f"cannot import job function {func_name!r}: {error}"
                ) from None
            module_name, _, attribute = module_name.rpartition(".")
            attributes.insert(0, attribute)
        except (Exception, SystemExit) as error:  # the module itself fails as it loads
            raise InvalidJobError(
                f"cannot import job function {func_name!r}: importing module "
                f"{module_name!r} raised {error!r}"
            ) from error
    if obj is None:
        obj = importlib.import_module("builtins")
    try:
        for attribute in attributes:
            obj = getattr(obj, attribute)
    except AttributeError as error:
        raise InvalidJobError(f"cannot import job function {func_name!r}: {error}") from None
    obj = getattr(obj, "__aiorq_func__", obj)
    if not callable(obj):
        raise InvalidJobError(f"job function {func_name!r} is not callable: {obj!r}")
    return obj  # type: ignore[no-any-return]


async def call(
    func: Callable[..., Any],
    args: Sequence[Any],
    kwargs: Mapping[str, Any],
    limiter: anyio.CapacityLimiter | None = None,
) -> Any:
    """Await an ``async def`` job on this loop; run a plain function in a worker thread.

    A thread cannot be killed: if the caller is cancelled (timeout, stop), the thread is
    abandoned and runs to its end, its result discarded.
    """
    if inspect.iscoroutinefunction(func):
        return await func(*args, **kwargs)
    result = await anyio.to_thread.run_sync(
        functools.partial(func, *args, **kwargs), limiter=limiter, abandon_on_cancel=True
    )
    if inspect.isawaitable(result):
        result = await result
    return result


class Deadline:
    """A job's timeout, for the task that enters it: one timer, no task of its own (a
    worker runs thousands of jobs a second), shared by the worker and eager mode.

    When the time is up the task is cancelled and ``JobTimeoutError`` leaves the block; a
    ``TimeoutError`` the job raises itself stays what it is. ``seconds <= 0``: no limit.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.expired = False
        self._timer: asyncio.TimerHandle | None = None

    def __enter__(self) -> Deadline:
        if self.seconds > 0:
            task = asyncio.current_task()
            assert task is not None, "a Deadline is entered by a task"
            self._timer = asyncio.get_running_loop().call_later(self.seconds, self._expire, task)
        return self

    def _expire(self, task: asyncio.Task[Any]) -> None:
        self.expired = True
        task.cancel()

    def __exit__(self, kind: type[BaseException] | None, *rest: object) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self.expired and kind is not None and issubclass(kind, asyncio.CancelledError):
            task = asyncio.current_task()
            if task is not None and hasattr(task, "uncancel"):  # Python 3.11+
                task.uncancel()
            raise JobTimeoutError(f"job exceeded its timeout of {self.seconds:g} seconds")


async def run_callback(func: Callable[..., Any], callback_timeout: float, *args: Any) -> Any:
    """Run an ``on_success``/``on_failure``/``on_stopped`` callback (imported by the
    caller), as rq calls them: ``(job, connection, ...)``; ``async def`` ones are awaited."""
    with Deadline(callback_timeout):
        return await call(func, args, {})


@asynccontextmanager
async def app_context(app: Any) -> AsyncIterator[None]:
    """The app context of a Quart (async) or Flask (sync) app, so jobs see ``current_app``."""
    if app is None:
        yield
        return
    context = app.app_context()
    if hasattr(context, "__aenter__"):
        async with context:
            yield
    else:
        with context:
            yield


def encode_return_value(value: Any) -> str:
    """Base64 of the msgpack'd value; ``""`` for None (rq omits the field)."""
    if value is None:
        return ""
    try:
        packed = MsgpackSerializer.dumps(value)
    except SerializationError:
        packed = MsgpackSerializer.dumps(UNSERIALIZABLE)
    return base64.b64encode(packed).decode()


def is_retry(value: Any) -> bool:
    """Whether a job returned a ``Retry``: ours, or rq's (``rq.Retry``)."""
    kind = type(value)
    return isinstance(value, Retry) or (
        kind.__name__ == "Retry" and kind.__module__.split(".")[0] == "rq"
    )


def encode_retry(value: Any, most: int | None = None) -> str:
    """A returned ``Retry`` as ``finish.lua``'s ``OUTCOME.RETRY`` takes it: JSON of its
    ``max`` (or ``most``), intervals, ``enqueue_at_front`` and the result's return value
    (msgpack cannot encode a Retry: rq records the same placeholder)."""
    spec = {
        "max": int(value.max) if most is None else most,
        "intervals": [float(i) for i in value.intervals],
        "at_front": bool(getattr(value, "enqueue_at_front", False)),
        "value": encode_return_value(value),
    }
    return json.dumps(spec)


def encode_exc_string(text: str) -> str:
    """rq's ``exc_string``: base64 of zlib of the traceback text."""
    return base64.b64encode(zlib.compress(text.encode("utf-8"))).decode()


def format_exception(error: BaseException) -> str:
    return "".join(traceback.format_exception(type(error), error, error.__traceback__))
