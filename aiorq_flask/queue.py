"""``Queue``: enqueue jobs in RQ's format, one round trip per call.

Stock rq sends two round trips per enqueue (spec §8.3); here ``scripts/enqueue.lua``
writes the hash, ``SADD rq:queues`` and the push in one atomic call, and ``enqueue_many``
puts any number of those calls in one MULTI, packed once and written at once. The hash is
always written in the same atomic step as the push, so a worker can never pop an id whose
hash is not there yet (spec §7).
"""

from __future__ import annotations

import functools
import time
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

import anyio
from redis.asyncio import Redis
from redis.typing import EncodableT

from . import _scripts, keys
from ._config import DEFAULT_MAX_JOB_BYTES
from ._multiplexer import Multiplexer
from .eager import as_started, run_eagerly
from .errors import DuplicateJobError, InvalidJobError, NoSuchJobError
from .job import Job, JobStatus, epoch_ts
from .payload import BIG_DATA, SplicedPayload, looks_big
from .prepare import ENQUEUE_OPTIONS, EnqueueData, prepare_job
from .registries import (
    CanceledJobRegistry,
    DeferredJobRegistry,
    FailedJobRegistry,
    FinishedJobRegistry,
    ScheduledJobRegistry,
    StartedJobRegistry,
)
from .signals import job_enqueued, send

if TYPE_CHECKING:
    from ._connections import ConnectionPools

Command = tuple[EncodableT | SplicedPayload, ...]  # a big payload's HSET sends it as its parts


class Queue:
    """A named RQ queue on one resolved connection. Coroutines reach Redis."""

    def __init__(
        self,
        name: str,
        connection_name: str,
        pools: ConnectionPools,
        *,
        eager: bool | Callable[[], bool] = False,
        max_job_bytes: int = DEFAULT_MAX_JOB_BYTES,
        app: Any = None,
    ) -> None:
        self.name = name
        self.key = keys.queue(name)
        self.connection_name = connection_name
        self._eager = eager
        self.max_job_bytes = max_job_bytes  # RQ_MAX_JOB_BYTES
        self._pools = pools
        # The app whose queue this is: the sender of its job_enqueued signals.
        self._app = weakref.ref(app) if app is not None else None

    def __repr__(self) -> str:
        return f"<Queue {self.name!r} on connection {self.connection_name!r}>"

    @property
    def eager(self) -> bool:
        """Whether an enqueue runs the job at once, asked at each call: given as a function
        (``RQ_ASYNC`` unset: the app's ``testing``, read when the job is enqueued)."""
        eager = self._eager
        return eager() if callable(eager) else eager

    @eager.setter
    def eager(self, eager: bool | Callable[[], bool]) -> None:
        self._eager = eager

    @property
    def connection(self) -> Redis:
        """The ``redis.asyncio`` client of this queue's connection for the running loop."""
        return self._pools.client(self.connection_name)

    @property
    def multiplexer(self) -> Multiplexer:
        """The running loop's shared connection that carries this queue's script calls."""
        return self._pools.multiplexer(self.connection_name)

    # -- building jobs -------------------------------------------------------------

    prepare_data = staticmethod(prepare_job)

    def _job(self, data: EnqueueData, connection: Redis, status: JobStatus) -> Job:
        """The handle of a job just written, built from what we wrote (no read back)."""
        job = Job(
            id=data.job_id,
            connection=connection,
            data=data.payload,
            origin=self.name,
            description=data.description,
            status=status,
            timeout=data.timeout,
            created_at=data.created_at,
            enqueued_at=data.created_at if status is JobStatus.QUEUED else None,
            result_ttl=data.result_ttl,
            failure_ttl=data.failure_ttl,
            ttl=data.ttl,
            retries_left=data.retry.max if data.retry else None,
            retry_intervals=data.retry.intervals if data.retry else [],
            meta=dict(data.meta),
            dependency_ids=list(data.depends_on),
            allow_dependency_failures=data.allow_dependency_failures,
        )
        job._call = (data.func_name, list(data.args), data.kwargs)
        return job

    def _check_size(self, data: EnqueueData) -> None:
        """Refuse a payload above ``RQ_MAX_JOB_BYTES`` before anything is written (a worker
        would fail it unread)."""
        if len(data.payload) > self.max_job_bytes:
            raise InvalidJobError(
                f"job {data.job_id} ({data.func_name}): its payload is {len(data.payload):,} "
                f"bytes, above RQ_MAX_JOB_BYTES = {self.max_job_bytes:,}; nothing was written "
                "(pass big data by reference, e.g. a key or a path, or raise the limit)"
            )

    # -- writing jobs --------------------------------------------------------------

    def write_args(
        self, data: EnqueueData, status: JobStatus = JobStatus.QUEUED, where: str | None = None
    ) -> tuple[list[str], list[EncodableT]]:
        """Keys and arguments of ``enqueue.lua`` for ``data``; a queued job is pushed at
        the back (at the front with ``at_front``) unless ``where`` says otherwise."""
        if where is None:
            where = ("L" if data.at_front else "R") if status is JobStatus.QUEUED else ""
        if data.unique:  # the script writes nothing if this key exists
            return [self.key, keys.job(data.job_id)], data.script_args(self.name, status, where)
        return [self.key], data.script_args(self.name, status, where)

    async def _write(
        self, data: EnqueueData, status: JobStatus = JobStatus.QUEUED, where: str | None = None
    ) -> JobStatus:
        """Write one job; return the status written (``deferred`` if a parent waits).
        Raises ``DuplicateJobError`` when ``data.unique`` and its id exists.

        One script call over the shared multiplexed connection, unless the job is big or
        rate-limited: then one MULTI, as ``enqueue_many`` writes (``_write_batch``).
        """
        if data.rate_limit is None and len(data.payload) <= BIG_DATA:
            written = await _scripts.ENQUEUE(
                self.multiplexer, *self.write_args(data, status, where)
            )
        else:
            (written,) = await self._write_batch([data], status, where)
        return _status_written(data, written)

    async def _prepare(
        self,
        func: Callable[..., Any] | str,
        args: Sequence[Any],
        kwargs: Mapping[str, Any],
        options: Mapping[str, Any],
    ) -> EnqueueData:
        """``prepare_data``, in a thread when the arguments alone are big: packing and
        compressing them would hold the caller's event loop for many milliseconds. Raises
        ``InvalidJobError`` for a payload above ``RQ_MAX_JOB_BYTES``."""
        if looks_big(args, kwargs):
            build = functools.partial(self.prepare_data, func, args, kwargs, **options)
            data = await anyio.to_thread.run_sync(build)
        else:
            data = self.prepare_data(func, args, kwargs, **options)
        self._check_size(data)
        return data

    async def enqueue_many(self, jobs: Iterable[EnqueueData]) -> list[Job]:
        """Write any number of prepared jobs in one MULTI (one round trip, all or nothing).

        A job with ``depends_on`` is written ``deferred`` when a parent is not done yet
        (parents earlier in the same call count as they are at that point). A payload
        above ``RQ_MAX_JOB_BYTES`` raises ``InvalidJobError``, and none is written.
        """
        jobs = list(jobs)
        for data in jobs:
            self._check_size(data)
            if data.unique:
                raise InvalidJobError(
                    f"job {data.job_id!r}: unique=True is for enqueue, enqueue_call, "
                    "enqueue_at and enqueue_in, not enqueue_many; nothing was written"
                )
        if self.eager:
            return [await self._run_eagerly(data) for data in jobs]
        written = await self._write_batch(jobs)
        connection = self.connection
        enqueued = [
            self._job(data, connection, _status_written(data, status))
            for data, status in zip(jobs, written, strict=True)
        ]
        if job_enqueued.receivers:
            self._announce(enqueued)
        return enqueued

    async def _write_batch(
        self,
        jobs: list[EnqueueData],
        status: JobStatus = JobStatus.QUEUED,
        where: str | None = None,
    ) -> list[bytes | None]:
        """Each job's written status, from one MULTI packed once and written at once on the
        shared connection (redis-py's pipeline would pack each command in Python, most of a
        bulk enqueue's cost); with a big payload, on a connection of its own from a thread
        (``_bulk``), so neither this loop nor other callers wait behind it."""
        commands: list[Command] = []
        status_at: list[int] = []  # where each job's status is among the replies
        for data in jobs:
            commands += self._commands(data, status, where)
            status_at.append(len(commands) - 1)
        loads = [("SCRIPT", "LOAD", script.source) for script in _scripts_of(jobs)]
        if not any(data.data_beside for data in jobs):
            replies = (await self.multiplexer.transaction([*loads, *commands]))[len(loads) :]
        else:
            *_, replies = await self.multiplexer.transfer(
                [*loads, ("MULTI",), *commands, ("EXEC",)], write=True
            )
            for reply in replies:
                if isinstance(reply, Exception):
                    raise reply
        return [replies[at] for at in status_at]

    def _commands(self, data: EnqueueData, status: JobStatus, where: str | None) -> list[Command]:
        """One job's write, as commands of a MULTI: a big payload's plain ``HSET`` (see
        ``EnqueueData.data_beside``), then ``enqueue.lua``; a rate-limited job is written
        ``rate_limited`` and ``rate_limit.lua`` lets it through or leaves it waiting for a
        slot (``aiorq_flask.rate_limit``), whose reply is then its status."""
        commands: list[Command] = []
        if data.data_beside:
            commands.append(("HSET", keys.job(data.job_id), "data", data.payload))
        if data.rate_limit is None or status is not JobStatus.QUEUED:
            return [*commands, _scripts.ENQUEUE.command(*self.write_args(data, status, where))]
        job_keys, args = self.write_args(data, JobStatus.RATE_LIMITED, "")
        now = time.time()
        return [
            *commands,
            _scripts.ENQUEUE.command(job_keys, args),
            _scripts.RATE_LIMIT.command([], [args[0], repr(now), epoch_ts(now)]),
        ]

    async def enqueue_call(
        self,
        func: Callable[..., Any] | str,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> Job:
        """Enqueue ``func(*args, **kwargs)`` with rq's options (``job_id``, ``job_timeout``,
        ``result_ttl``, ``ttl``, ``failure_ttl``, ``description``, ``meta``, ``at_front``,
        ``depends_on``, ``retry``, ``on_success``, ``on_failure``, ``on_stopped``, and
        ``unique``: with a ``job_id``, raise ``DuplicateJobError`` and write nothing if a
        job with that id exists, checked in the same atomic step as the write)."""
        unknown = set(options) - ENQUEUE_OPTIONS - {"allow_dependency_failures"}
        if unknown:
            raise TypeError(f"unknown enqueue option(s): {', '.join(sorted(unknown))}")
        data = await self._prepare(func, args or (), kwargs or {}, options)
        if self.eager:
            return await self._run_eagerly(data)
        job = self._job(data, self.connection, await self._write(data))
        if job_enqueued.receivers:
            self._announce([job])
        return job

    async def enqueue(self, f: Callable[..., Any] | str, *args: Any, **kwargs: Any) -> Job:
        """Enqueue ``f(*args, **kwargs)``; rq's option names are taken out of ``kwargs``
        (use ``enqueue_call`` to pass an argument with such a name to ``f``)."""
        options = {k: kwargs.pop(k) for k in ENQUEUE_OPTIONS.intersection(kwargs)}
        return await self.enqueue_call(f, args, kwargs, **options)

    async def enqueue_at(
        self, when: datetime, f: Callable[..., Any] | str, *args: Any, **kwargs: Any
    ) -> Job:
        """Schedule ``f(*args, **kwargs)`` for ``when``; a naive ``when`` is read as UTC.

        A worker's scheduler moves it onto the queue when it is due.
        """
        options = {k: kwargs.pop(k) for k in ENQUEUE_OPTIONS.intersection(kwargs)}
        if options.get("depends_on") is not None:
            raise InvalidJobError("a scheduled job cannot also have depends_on")
        data = await self._prepare(f, args, kwargs, options)
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        due = str(int(when.timestamp()))
        await self._write(data, JobStatus.SCHEDULED, due)
        job = self._job(data, self.connection, JobStatus.SCHEDULED)
        if job_enqueued.receivers:
            self._announce([job])
        return job

    def _announce(self, jobs: list[Job]) -> None:
        """Send ``job_enqueued`` for each job written (callers check for receivers first,
        so an app that connects none pays nothing)."""
        app = self._app() if self._app is not None else None
        for job in jobs:
            send(job_enqueued, app, job=job)

    async def enqueue_in(
        self, delay: timedelta | float, f: Callable[..., Any] | str, *args: Any, **kwargs: Any
    ) -> Job:
        """Schedule ``f(*args, **kwargs)`` to run after ``delay`` (a timedelta or seconds)."""
        seconds = delay.total_seconds() if isinstance(delay, timedelta) else float(delay)
        when = datetime.now(timezone.utc) + timedelta(seconds=seconds)
        return await self.enqueue_at(when, f, *args, **kwargs)

    async def _run_eagerly(self, data: EnqueueData) -> Job:
        data = as_started(data)
        await self._write(data, JobStatus.STARTED)
        job = self._job(data, self.connection, JobStatus.STARTED)
        status = await run_eagerly(data, self.multiplexer, job)
        try:
            return await Job.fetch(data.job_id, self.connection)
        except NoSuchJobError:  # result_ttl=0: the finished job was deleted, as a worker does
            return self._job(data, self.connection, JobStatus(status))

    # -- reading ---------------------------------------------------------------------

    async def count(self) -> int:
        """How many job ids wait in the queue."""
        return int(await self.connection.llen(self.key))

    async def job_ids(self, offset: int = 0, length: int = -1) -> list[str]:
        end = -1 if length < 0 else offset + length - 1
        ids: list[bytes] = await self.connection.lrange(self.key, offset, end)  # type: ignore[assignment]
        return [job_id.decode() for job_id in ids]

    async def fetch_job(self, job_id: str) -> Job | None:
        """The job if it exists and belongs to this queue, else None (as rq does)."""
        try:
            job = await Job.fetch(job_id, self.connection)
        except NoSuchJobError:
            return None
        return job if job.origin == self.name else None

    async def empty(self) -> int:
        """Delete every waiting job of this queue (ids and hashes) in one atomic step;
        return how many."""
        return int(await _scripts.EMPTY(self.multiplexer, [self.key], []))

    # -- registries ------------------------------------------------------------------

    @property
    def started(self) -> StartedJobRegistry:
        """The jobs of this queue running now, one entry per execution (``rq:wip:<q>``)."""
        return StartedJobRegistry(self)

    @property
    def finished(self) -> FinishedJobRegistry:
        """The jobs that succeeded, until their ``result_ttl`` runs out."""
        return FinishedJobRegistry(self)

    @property
    def failed(self) -> FailedJobRegistry:
        """The jobs that failed or were stopped; ``await queue.failed.requeue(job_id)``."""
        return FailedJobRegistry(self)

    @property
    def deferred(self) -> DeferredJobRegistry:
        """The jobs waiting for the jobs they depend on."""
        return DeferredJobRegistry(self)

    @property
    def scheduled(self) -> ScheduledJobRegistry:
        """The jobs to be put on this queue at a time."""
        return ScheduledJobRegistry(self)

    @property
    def canceled(self) -> CanceledJobRegistry:
        """The jobs canceled before they ran."""
        return CanceledJobRegistry(self)


def _status_written(data: EnqueueData, written: bytes | None) -> JobStatus:
    """The status ``enqueue.lua`` wrote for ``data``; its nil reply means a unique job's id
    exists and nothing was written."""
    if written is None:
        raise DuplicateJobError(
            f"job {data.job_id!r} exists already (unique=True): nothing was written"
        )
    return JobStatus(written.decode())


def _scripts_of(jobs: Sequence[EnqueueData]) -> list[_scripts.Script]:
    """The scripts a batch calls, to load inside its MULTI (no call in it meets NOSCRIPT)."""
    if any(data.rate_limit is not None for data in jobs):
        return [_scripts.ENQUEUE, _scripts.RATE_LIMIT]
    return [_scripts.ENQUEUE]
