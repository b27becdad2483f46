"""rq's job registries of a queue: where a job is when it is not waiting in the queue.

Each registry is a sorted set named from the queue (spec §2, §2.1):

============  =====================  ==================  ==================================
registry      key                    member              score
============  =====================  ==================  ==================================
started       ``rq:wip:<queue>``     ``<id>:<exec id>``  expiry, pushed on by heartbeats
finished      ``rq:finished:<q>``    ``<id>``            expiry: ``now + result_ttl``
failed        ``rq:failed:<q>``      ``<id>``            expiry: ``now + failure_ttl``
deferred      ``rq:deferred:<q>``    ``<id>``            when it was deferred
scheduled     ``rq:scheduled:<q>``   ``<id>``            when it is due
canceled      ``rq:canceled:<q>``    ``<id>``            when it was canceled
============  =====================  ==================  ==================================

The scripts add jobs as they move; this module reads the registries and takes jobs out.
An app reaches them through its queue: ``await queue.failed.job_ids()``,
``await queue.failed.requeue(job_id)``. ``Job.delete``, ``Job.cancel`` and ``Job.requeue`` take
a job out of every registry in ``REGISTRIES`` with ``take_out``, inside one atomic step
(``atomically``).
"""

from __future__ import annotations

import abc
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import ClassVar, Protocol, TypeVar

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.exceptions import WatchError

from . import keys
from .errors import InvalidJobOperation, NoSuchJobError

T = TypeVar("T")


# A registry reaches its queue and jobs through these, never by importing ``queue`` or
# ``job``: both of those import this module.


class Requeueable(Protocol):
    async def requeue(self, at_front: bool = False) -> None: ...


class RegistryQueue(Protocol):
    """What a registry needs of its queue (``Queue`` is one)."""

    @property
    def name(self) -> str: ...

    @property
    def connection(self) -> Redis: ...

    async def fetch_job(self, job_id: str) -> Requeueable | None: ...


def _now() -> int:
    return int(time.time())  # rq's current_timestamp: whole seconds, by the client's clock


def split_member(member: str) -> tuple[str, str]:
    """The job id and execution id of a started registry member ``<id>:<exec id>``; the
    job id is the text before the last colon."""
    job_id, _, execution_id = member.rpartition(":")
    return job_id, execution_id


class JobRegistry(abc.ABC):
    """One registry of one queue: a sorted set of job ids (rq's ``BaseRegistry``).

    Coroutines use the queue's connection for the running loop; ``count`` and
    ``job_ids`` are one round trip each.
    """

    # Scores are expiry times: an entry past its score is gone, and is dropped before a
    # count or a listing, as rq's own ``count`` and ``get_job_ids`` drop it.
    expiring: ClassVar[bool] = False

    def __init__(self, queue: RegistryQueue) -> None:
        self.queue = queue
        self.key = self.key_of(queue.name)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} of {self.queue.name!r} ({self.key})>"

    @staticmethod
    @abc.abstractmethod
    def key_of(queue_name: str) -> str:
        """The registry's key for the queue ``queue_name`` (from ``keys``)."""

    @property
    def connection(self) -> Redis:
        return self.queue.connection

    async def count(self) -> int:
        """How many entries the registry holds."""
        async with self.connection.pipeline(transaction=True) as pipe:
            self._drop_expired_in(pipe)
            pipe.zcard(self.key)
            replies = await pipe.execute()
        return int(replies[-1])

    async def job_ids(self, offset: int = 0, length: int = -1) -> list[str]:
        """The job ids, lowest score first (``length`` of them from ``offset``; -1: all)."""
        end = -1 if length < 0 else offset + length - 1
        async with self.connection.pipeline(transaction=True) as pipe:
            self._drop_expired_in(pipe)
            pipe.zrange(self.key, offset, end)
            replies = await pipe.execute()
        return [self._job_id(member.decode()) for member in replies[-1]]

    async def remove(self, job_id: str) -> bool:
        """Take ``job_id`` out of this registry only; False if it was not there."""
        return bool(await self.connection.zrem(self.key, job_id))

    def _drop_expired_in(self, pipe: Pipeline) -> None:
        if self.expiring:
            pipe.zremrangebyscore(self.key, 0, _now())

    def _job_id(self, member: str) -> str:
        return member


class StartedJobRegistry(JobRegistry):
    """Jobs running now, one entry per execution (``rq:wip:<queue>``).

    An entry past its score belongs to a worker that stopped heartbeating; it stays, and
    is counted, until a worker's sweep fails or retries its job (spec §5.9).
    """

    @staticmethod
    def key_of(queue_name: str) -> str:
        return keys.wip(queue_name)

    async def remove(self, job_id: str) -> bool:
        """Take every execution of ``job_id`` out; False if it had none here."""
        members = await running_members(self.connection, self.queue.name, job_id)
        return bool(members) and bool(await self.connection.zrem(self.key, *members))

    def _job_id(self, member: str) -> str:
        return split_member(member)[0]


class FinishedJobRegistry(JobRegistry):
    """Jobs that succeeded, until their ``result_ttl`` runs out."""

    expiring = True

    @staticmethod
    def key_of(queue_name: str) -> str:
        return keys.finished(queue_name)


class FailedJobRegistry(JobRegistry):
    """Jobs that failed or were stopped, until their ``failure_ttl`` runs out."""

    expiring = True

    @staticmethod
    def key_of(queue_name: str) -> str:
        return keys.failed(queue_name)

    async def requeue(self, job_id: str, at_front: bool = False) -> None:
        """Put a failed or stopped job back on its queue, as ``rq requeue`` does: status
        ``queued``, out of this registry, pushed at the back (front with ``at_front``),
        its hash kept with no expiry (see ``Job.requeue``).

        Raises ``NoSuchJobError`` if the queue has no such job, and ``InvalidJobOperation``
        if the job is not in this registry.
        """
        job = await self.queue.fetch_job(job_id)
        if job is None:
            raise NoSuchJobError(f"queue {self.queue.name!r} has no job {job_id!r}")
        if await self.connection.zscore(self.key, job_id) is None:
            raise InvalidJobOperation(f"job {job_id!r} is not in the failed registry {self.key}")
        await job.requeue(at_front=at_front)


class DeferredJobRegistry(JobRegistry):
    """Jobs waiting for the jobs they depend on."""

    @staticmethod
    def key_of(queue_name: str) -> str:
        return keys.deferred(queue_name)


class ScheduledJobRegistry(JobRegistry):
    """Jobs to be put on the queue at a time (``enqueue_at``, ``enqueue_in``, retries)."""

    @staticmethod
    def key_of(queue_name: str) -> str:
        return keys.scheduled(queue_name)


class CanceledJobRegistry(JobRegistry):
    """Jobs canceled before they ran (``Job.cancel``)."""

    @staticmethod
    def key_of(queue_name: str) -> str:
        return keys.canceled(queue_name)


# Every registry a job of a queue can be in: the one list of them.
REGISTRIES: tuple[type[JobRegistry], ...] = (
    StartedJobRegistry,
    FinishedJobRegistry,
    FailedJobRegistry,
    DeferredJobRegistry,
    ScheduledJobRegistry,
    CanceledJobRegistry,
)


async def running_members(client: Redis | Pipeline, queue_name: str, job_id: str) -> list[str]:
    """The started registry members of ``job_id``'s executions (``<id>:<exec id>``).

    ``client`` may be a pipeline watching keys (immediate mode) inside ``atomically``.
    """
    key = StartedJobRegistry.key_of(queue_name)
    members: list[bytes] = await client.zrange(key, 0, -1)  # type: ignore[assignment]
    texts = (member.decode() for member in members)
    return [member for member in texts if split_member(member)[0] == job_id]


def take_out(pipe: Pipeline, queue_name: str, job_id: str, running: Sequence[str]) -> None:
    """Queue in ``pipe``'s MULTI the removal of ``job_id`` from every registry of
    ``queue_name``; ``running`` are its started registry members (``running_members``)."""
    for registry in REGISTRIES:
        members = running if registry is StartedJobRegistry else [job_id]
        if members:
            pipe.zrem(registry.key_of(queue_name), *members)


async def atomically(
    connection: Redis,
    key: str,
    read: Callable[[Pipeline], Awaitable[T]],
    write: Callable[[Pipeline, T], None],
) -> None:
    """``read``, then the writes ``write`` queues given what it read, as one atomic step on
    one pooled connection.

    ``key`` (a job's hash) is WATCHed before ``read``, which sends its commands at once;
    ``write``'s go in one MULTI. If ``key`` changed in between (a worker claimed the job,
    say), nothing is written and both run again on fresh reads. An exception from
    ``read`` ends it with nothing written.
    """
    async with connection.pipeline(transaction=True) as pipe:
        while True:
            await pipe.watch(key)
            found = await read(pipe)
            pipe.multi()  # type: ignore[no-untyped-call]
            write(pipe, found)
            try:
                await pipe.execute()
                return
            except WatchError:
                continue
