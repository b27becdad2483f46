"""``Queue``: enqueue jobs in RQ's format, one round trip per call.

Stock rq sends two round trips per enqueue (spec §8.3); here ``scripts/enqueue.lua``
writes the hash, ``SADD rq:queues`` and the push in one atomic call, and ``enqueue_many``
puts any number of those calls in one MULTI. The hash is always written in the same
atomic step as the push, so a worker can never pop an id whose hash is not there yet
(spec §7).
"""

from __future__ import annotations

import functools
import inspect
import json
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

import anyio
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.typing import EncodableT

from . import _scripts, keys
from ._multiplexer import Multiplexer
from .eager import run_eagerly
from .errors import InvalidJobError, NoSuchJobError
from .job import (
    DEFAULT_CALLBACK_TIMEOUT,
    DEFAULT_TIMEOUT,
    DURATION_UNITS,
    Job,
    JobStatus,
    Retry,
    format_ts,
    parse_duration,
    validate_job_id,
)
from .payload import BIG_DATA, describe_call, encode_data, looks_big
from .serializer import MsgpackSerializer

if TYPE_CHECKING:
    from ._connections import ConnectionPools

ENQUEUE_OPTIONS = frozenset(
    {
        "job_id",
        "job_timeout",
        "result_ttl",
        "ttl",
        "failure_ttl",
        "description",
        "meta",
        "at_front",
        "depends_on",
        "retry",
        "on_success",
        "on_failure",
        "on_stopped",
    }
)


def function_path(func: Any) -> str:
    """``module.qualname`` of something a worker can import, else ``InvalidJobError``."""
    if isinstance(func, str):
        if not func or func.startswith(".") or func.endswith("."):
            raise InvalidJobError(f"{func!r} is not a dotted function path")
        return func
    func = getattr(func, "__aiorq_func__", func)  # a @rq.job wrapper enqueues its function
    if inspect.ismethod(func):
        raise InvalidJobError(
            f"{func!r} is a bound method: enqueue a module-level function or a staticmethod"
        )
    module = getattr(func, "__module__", None)
    qualname = getattr(func, "__qualname__", None)
    if not callable(func) or not module or not qualname:
        raise InvalidJobError(
            f"{func!r} cannot be enqueued: only module-level functions (or their dotted "
            "path) can be, since the worker imports the function by name"
        )
    if "<lambda>" in qualname or "<locals>" in qualname:
        raise InvalidJobError(
            f"{module}.{qualname} is a lambda or nested function: a worker cannot import "
            "it; define it at module level"
        )
    if module == "__main__":
        raise InvalidJobError(
            f"{qualname} is defined in __main__: a worker cannot import it; move it to a module"
        )
    return f"{module}.{qualname}"


def _seconds(name: str, value: Any, allow_none_as: int | None = None) -> int | None:
    """Integer seconds from an int, a timedelta or rq's '30s'/'10m'/'1h'/'2d' text."""
    if value is None:
        return allow_none_as
    if isinstance(value, timedelta):
        return int(value.total_seconds())
    if isinstance(value, str) and value[-1:] in DURATION_UNITS and value[:-1].isdigit():
        return parse_duration(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    raise InvalidJobError(
        f"{name}={value!r} is not a duration: use whole seconds, a timedelta or '30s'/'10m'/'1h'"
    )


def _callback(name: str, value: Any) -> tuple[str, int] | None:
    """A callback option: a function, its dotted path, or ``(function, timeout)``."""
    if value is None:
        return None
    func, timeout = value if isinstance(value, tuple) else (value, DEFAULT_CALLBACK_TIMEOUT)
    try:
        return function_path(func), int(timeout)
    except InvalidJobError as error:
        raise InvalidJobError(f"{name}: {error}") from None


def _dependency_ids(depends_on: Any) -> list[str]:
    items = depends_on if isinstance(depends_on, (list, tuple)) else [depends_on]
    return [validate_job_id(d.id if isinstance(d, Job) else d) for d in items]


@dataclass(frozen=True)
class EnqueueData:
    """A job ready to be written: built by ``Queue.prepare_data``, written by ``enqueue_many``."""

    job_id: str
    func_name: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    payload: bytes
    created_at: datetime
    description: str
    timeout: int
    at_front: bool
    ttl: int | None
    result_ttl: int | None
    failure_ttl: int | None
    retry: Retry | None
    meta: Mapping[str, Any]
    depends_on: tuple[str, ...]
    allow_dependency_failures: bool
    fields: dict[str, EncodableT]  # the hash fields a job has only when an option is set

    def script_args(self, origin: str, status: JobStatus, where: str) -> list[EncodableT]:
        """``enqueue.lua``'s arguments for writing this job with ``status`` (which the
        script turns into ``deferred`` if a parent is not done)."""
        fields = self.fields
        may_wait = status in (JobStatus.SCHEDULED, JobStatus.DEFERRED) or self.depends_on
        if may_wait and self.at_front:
            fields = {**fields, "enqueue_at_front": 1}  # rq's flag for a later push
        return [
            status.value,
            where,
            origin,
            "" if self.ttl is None else self.ttl,
            format_ts(self.created_at),
            b"" if len(self.payload) > BIG_DATA else self.payload,  # big: written beside
            self.description,
            self.timeout,
            int(self.created_at.timestamp()),
            "1" if self.allow_dependency_failures else "",
            len(self.depends_on),
            *self.depends_on,
            *(item for pair in fields.items() for item in pair),
        ]


class Queue:
    """A named RQ queue on one resolved connection. Coroutines reach Redis."""

    def __init__(
        self,
        name: str,
        connection_name: str,
        pools: ConnectionPools,
        *,
        eager: bool = False,
    ) -> None:
        self.name = name
        self.key = keys.queue(name)
        self.connection_name = connection_name
        self.eager = eager
        self._pools = pools

    def __repr__(self) -> str:
        return f"<Queue {self.name!r} on connection {self.connection_name!r}>"

    @property
    def connection(self) -> Redis:
        """The ``redis.asyncio`` client of this queue's connection for the running loop."""
        return self._pools.client(self.connection_name)

    @property
    def multiplexer(self) -> Multiplexer:
        """The running loop's shared connection that carries this queue's script calls."""
        return self._pools.multiplexer(self.connection_name)

    # -- building jobs -------------------------------------------------------------

    def prepare_data(
        self,
        func: Callable[..., Any] | str,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        *,
        job_id: str | None = None,
        job_timeout: int | str | timedelta | None = None,
        result_ttl: int | timedelta | None = None,
        ttl: int | timedelta | None = None,
        failure_ttl: int | timedelta | None = None,
        description: str | None = None,
        meta: Mapping[str, Any] | None = None,
        at_front: bool = False,
        depends_on: Any = None,
        allow_dependency_failures: bool = False,
        retry: Retry | None = None,
        on_success: Any = None,
        on_failure: Any = None,
        on_stopped: Any = None,
    ) -> EnqueueData:
        """Validate and encode one job without touching Redis.

        Raises ``InvalidJobError`` (bad id, function or option) or ``SerializationError``
        (naming the argument that msgpack cannot encode).
        """
        func_name = function_path(func)
        args = tuple(args or ())
        kwargs = dict(kwargs or {})
        timeout = _seconds("job_timeout", job_timeout, DEFAULT_TIMEOUT)
        assert timeout is not None
        fields: dict[str, EncodableT] = {}
        if meta:
            fields["meta"] = MsgpackSerializer.dumps(dict(meta))
        given = {"result_ttl": result_ttl, "failure_ttl": failure_ttl, "ttl": ttl}
        ttls = {name: _seconds(name, value) for name, value in given.items()}
        fields.update({name: value for name, value in ttls.items() if value is not None})
        if retry is not None:
            fields["retries_left"] = retry.max
            fields["retry_intervals"] = json.dumps(retry.intervals)
        for kind, value in (
            ("success", on_success),
            ("failure", on_failure),
            ("stopped", on_stopped),
        ):
            callback = _callback(f"on_{kind}", value)
            if callback is not None:
                fields[f"{kind}_callback_name"], fields[f"{kind}_callback_timeout"] = callback
        dependency_ids = _dependency_ids(depends_on) if depends_on is not None else []
        if dependency_ids:
            fields["dependency_id"] = dependency_ids[0]
            fields["dependency_ids"] = json.dumps(dependency_ids)
            if allow_dependency_failures:
                fields["allow_dependency_failures"] = 1
        return EnqueueData(
            job_id=uuid.uuid4().hex if job_id is None else validate_job_id(job_id),
            func_name=func_name,
            args=args,
            kwargs=kwargs,
            payload=encode_data(func_name, args, kwargs),
            created_at=datetime.now(timezone.utc),
            description=description or describe_call(func_name, args, kwargs),
            timeout=timeout,
            at_front=at_front,
            ttl=ttls["ttl"],
            result_ttl=ttls["result_ttl"],
            failure_ttl=ttls["failure_ttl"],
            retry=retry,
            meta=meta or {},
            depends_on=tuple(dependency_ids),
            allow_dependency_failures=allow_dependency_failures,
            fields=fields,
        )

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

    # -- writing jobs --------------------------------------------------------------

    def write_args(
        self, data: EnqueueData, status: JobStatus = JobStatus.QUEUED, where: str | None = None
    ) -> tuple[list[str], list[EncodableT]]:
        """Keys and arguments of ``enqueue.lua`` for ``data``; a queued job is pushed at
        the back (at the front with ``at_front``) unless ``where`` says otherwise."""
        if where is None:
            where = ("L" if data.at_front else "R") if status is JobStatus.QUEUED else ""
        return [keys.job(data.job_id), self.key], data.script_args(self.name, status, where)

    def _write_in(
        self, pipe: Pipeline, data: EnqueueData, status: JobStatus, where: str | None = None
    ) -> None:
        """Queue ``data``'s write in a MULTI: its script call, and before it, in the same
        atomic step, a big payload's plain ``HSET`` (see ``payload.BIG_DATA``)."""
        job_keys, args = self.write_args(data, status, where)
        if len(data.payload) > BIG_DATA:
            pipe.hset(job_keys[0], "data", data.payload)
        _scripts.ENQUEUE.call_in(pipe, job_keys, args)

    async def _write(
        self, data: EnqueueData, status: JobStatus = JobStatus.QUEUED, where: str | None = None
    ) -> JobStatus:
        """Write one job; return the status written (``deferred`` if a parent waits).

        Over the shared multiplexed connection, unless its payload is big: then in a MULTI
        on a pooled connection of its own, so no other caller waits behind it.
        """
        if len(data.payload) <= BIG_DATA:
            written = await _scripts.ENQUEUE(
                self.multiplexer, *self.write_args(data, status, where)
            )
        else:
            async with self.connection.pipeline(transaction=True) as pipe:
                _scripts.ENQUEUE.load_in(pipe)
                self._write_in(pipe, data, status, where)
                written = (await pipe.execute())[-1]
        return JobStatus(written.decode())

    async def _prepare(
        self,
        func: Callable[..., Any] | str,
        args: Sequence[Any],
        kwargs: Mapping[str, Any],
        options: Mapping[str, Any],
    ) -> EnqueueData:
        """``prepare_data``, in a thread when the arguments alone are big: packing and
        compressing them would hold the caller's event loop for many milliseconds."""
        if looks_big(args, kwargs):
            build = functools.partial(self.prepare_data, func, args, kwargs, **options)
            return await anyio.to_thread.run_sync(build)
        return self.prepare_data(func, args, kwargs, **options)

    async def enqueue_many(self, jobs: Iterable[EnqueueData]) -> list[Job]:
        """Write any number of prepared jobs in one MULTI (one round trip, all or nothing).

        A job with ``depends_on`` is written ``deferred`` when a parent is not done yet
        (parents earlier in the same call count as they are at that point).
        """
        jobs = list(jobs)
        if self.eager:
            return [await self._run_eagerly(data) for data in jobs]
        connection = self.connection
        async with connection.pipeline(transaction=True) as pipe:
            _scripts.ENQUEUE.load_in(pipe)
            for data in jobs:
                self._write_in(pipe, data, JobStatus.QUEUED)
            replies = await pipe.execute()
        written = [reply for reply in replies[1:] if isinstance(reply, bytes)]  # not HSETs'
        return [
            self._job(data, connection, JobStatus(status.decode()))
            for data, status in zip(jobs, written, strict=True)
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
        ``depends_on``, ``retry``, ``on_success``, ``on_failure``, ``on_stopped``)."""
        unknown = set(options) - ENQUEUE_OPTIONS - {"allow_dependency_failures"}
        if unknown:
            raise TypeError(f"unknown enqueue option(s): {', '.join(sorted(unknown))}")
        data = await self._prepare(func, args or (), kwargs or {}, options)
        if self.eager:
            return await self._run_eagerly(data)
        return self._job(data, self.connection, await self._write(data))

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
        return self._job(data, self.connection, JobStatus.SCHEDULED)

    async def enqueue_in(
        self, delay: timedelta | float, f: Callable[..., Any] | str, *args: Any, **kwargs: Any
    ) -> Job:
        """Schedule ``f(*args, **kwargs)`` to run after ``delay`` (a timedelta or seconds)."""
        seconds = delay.total_seconds() if isinstance(delay, timedelta) else float(delay)
        when = datetime.now(timezone.utc) + timedelta(seconds=seconds)
        return await self.enqueue_at(when, f, *args, **kwargs)

    async def _run_eagerly(self, data: EnqueueData) -> Job:
        return await run_eagerly(self, data)

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
