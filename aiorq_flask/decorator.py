"""``@rq.job``: a typed wrapper that keeps the function callable and adds ``.enqueue``.

The wrapper is generic over the function's ``ParamSpec`` and return type, so calling it
and enqueueing it are both checked against the function's own signature.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, MutableSet, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, Protocol, TypeVar

if TYPE_CHECKING:
    from .cron import CronJob
    from .job import Job
    from .queue import Queue

P = ParamSpec("P")
R = TypeVar("R")


class QueueSource(Protocol):
    """Where a wrapper finds its queue each time it enqueues (``AsyncRQ`` is one: its
    ``get_queue`` answers for the app whose context is current)."""

    def get_queue(self, name: str) -> Queue: ...

    def register_cron(self, func: Callable[..., Any], **options: Any) -> CronJob: ...


class JobWrapper(Generic[P, R]):
    """A function that can also be enqueued: ``await send_email.enqueue(user_id=1)``.

    ``enqueue`` takes rq's option names out of the keyword arguments, as
    ``Queue.enqueue`` does; ``enqueue_call`` passes options explicitly.
    """

    def __init__(
        self, func: Callable[P, R], queues: QueueSource, queue: str, defaults: Mapping[str, Any]
    ) -> None:
        self.func = func
        self.__aiorq_func__ = func
        self.path = f"{func.__module__}.{func.__qualname__}"  # what a worker imports
        self.queue_name = queue
        self._queues = queues
        self._defaults = dict(defaults)
        functools.update_wrapper(self, func)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.func(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<job {self.path} on {self.queue_name!r}>"

    def _queue(self) -> Queue:
        return self._queues.get_queue(self.queue_name)

    async def enqueue(self, *args: P.args, **kwargs: P.kwargs) -> Job:
        """Enqueue a call on this job's queue, with the decorator's defaults."""
        return await self._queue().enqueue(self.func, *args, **{**self._defaults, **kwargs})

    async def enqueue_call(
        self,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> Job:
        return await self._queue().enqueue_call(
            self.func, args, kwargs, **{**self._defaults, **options}
        )

    async def enqueue_at(self, when: datetime, *args: P.args, **kwargs: P.kwargs) -> Job:
        return await self._queue().enqueue_at(
            when, self.func, *args, **{**self._defaults, **kwargs}
        )

    async def enqueue_in(self, delay: timedelta | float, *args: P.args, **kwargs: P.kwargs) -> Job:
        return await self._queue().enqueue_in(
            delay, self.func, *args, **{**self._defaults, **kwargs}
        )

    def register_cron(self, **options: Any) -> CronJob:
        """Run this job periodically (``rq.register_cron``'s options: ``cron=`` or
        ``interval=``, ...), on its queue with the decorator's defaults unless given."""
        return self._queues.register_cron(
            self.func, **{"queue": self.queue_name, **self._defaults, **options}
        )


def make_job_decorator(
    queues: QueueSource, queue: str, defaults: Mapping[str, Any], decorated: MutableSet[str]
) -> Callable[[Callable[P, R]], JobWrapper[P, R]]:
    """``@rq.job``'s decorator; each function it wraps joins ``decorated`` (by path), the
    functions a worker of the extension's apps always lets run."""

    def decorate(func: Callable[P, R]) -> JobWrapper[P, R]:
        wrapper = JobWrapper(func, queues, queue, defaults)
        decorated.add(wrapper.path)
        return wrapper

    return decorate
