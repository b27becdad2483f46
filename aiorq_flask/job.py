"""The job model, and its encoding as RQ's job hash and results stream.

Field names, value encodings and statuses are rq's (spec §3, §4), so ``rq info``,
rq-dashboard, ``Job.fetch`` and stock workers read what we write and we read theirs.
This module is the one place that knows those encodings.
"""

from __future__ import annotations

import base64
import enum
import json
import math
import os
import random
import re
import sys
import time
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import redis
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from . import keys, registries
from ._connections import block_slice
from .errors import (
    DeserializationError,
    InvalidJobError,
    InvalidJobOperation,
    NoSuchJobError,
)
from .payload import Call, Payload, decode_data
from .rate_limit import wait_in
from .serializer import MsgpackSerializer

DEFAULT_TIMEOUT = 180
DEFAULT_RESULT_TTL = 500
DEFAULT_FAILURE_TTL = 31_536_000
DEFAULT_CALLBACK_TIMEOUT = 60

_JOB_ID = re.compile(r"[A-Za-z0-9_-]+")
_TS_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
_TS_TEXT = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?Z")


class JobStatus(str, enum.Enum):
    """rq's job statuses. Never 3.0's ``ready_to_enqueue``; ``rate_limited`` only for a job
    enqueued with a ``RateLimit`` (a 3.0 feature: 2.12 fails to read a job in that status)."""

    CREATED = "created"
    QUEUED = "queued"
    DEFERRED = "deferred"
    SCHEDULED = "scheduled"
    STARTED = "started"
    FINISHED = "finished"
    FAILED = "failed"
    STOPPED = "stopped"
    CANCELED = "canceled"
    RATE_LIMITED = "rate_limited"  # waiting for a slot of its RateLimit


class ResultType(enum.IntEnum):
    SUCCESSFUL = 1
    FAILED = 2
    STOPPED = 3
    RETRIED = 4
    MAX_RETRIES_EXCEEDED = 5


@dataclass(frozen=True)
class Retry:
    """Retry a raising job up to ``max`` times, waiting ``interval`` seconds (or the
    n-th of a list of intervals) before each new attempt. A job may also return one,
    as in rq 3.0: it runs again, up to ``max`` more times."""

    max: int
    interval: float | Sequence[float] = 0

    def __post_init__(self) -> None:
        if self.max < 1:
            raise InvalidJobError(f"Retry(max={self.max!r}): max must be at least 1")
        if any(i < 0 for i in self.intervals):
            raise InvalidJobError(f"Retry(interval={self.interval!r}): a wait must not be negative")

    @property
    def intervals(self) -> list[float]:
        interval = self.interval
        return [interval] if isinstance(interval, (int, float)) else list(interval)

    @classmethod
    def backoff(
        cls,
        max: int,
        base: float = 1,
        factor: float = 2,
        cap: float = 300,
        jitter: bool = True,
    ) -> Retry:
        """Exponential backoff: the n-th wait (from 0) is ``min(cap, base * factor**n)``
        seconds; with ``jitter``, a random point of its upper half, so workers that failed
        together do not all come back together, and (with ``factor >= 2``) a wait is never
        shorter than the one before it. Drawn now and stored as plain ``retry_intervals``,
        so stock rq reads them."""
        if base <= 0 or factor < 1 or cap <= 0:
            raise InvalidJobError(
                f"Retry.backoff(base={base!r}, factor={factor!r}, cap={cap!r}): base and cap "
                "must be positive and factor at least 1"
            )
        waits = [min(cap, base * factor**n) for n in range(max)]
        if jitter:
            waits = [random.uniform(wait / 2, wait) for wait in waits]
        return cls(max, [round(wait, 3) for wait in waits])


@dataclass(frozen=True)
class Result:
    """One recorded outcome of a job, read from ``rq:results:<id>``."""

    id: str
    type: ResultType
    created_at: datetime
    return_value: Any = None
    exc_string: str | None = None
    worker_name: str = ""
    execution_id: str | None = None

    @classmethod
    def from_entry(cls, entry_id: bytes, fields: Mapping[bytes, bytes]) -> Result:
        millis = int(entry_id.split(b"-", 1)[0])
        raw_value = fields.get(b"return_value")
        raw_exc = fields.get(b"exc_string")
        exec_id = fields.get(b"execution_id")
        return cls(
            id=entry_id.decode(),
            type=ResultType(int(fields[b"type"])),
            created_at=datetime.fromtimestamp(millis / 1000, timezone.utc),
            return_value=None
            if raw_value is None
            else MsgpackSerializer.loads(base64.b64decode(raw_value)),
            exc_string=None
            if raw_exc is None
            else zlib.decompress(base64.b64decode(raw_exc)).decode("utf-8", "replace"),
            worker_name=fields.get(b"worker_name", b"").decode(),
            execution_id=None if exec_id is None else exec_id.decode(),
        )


def format_ts(moment: datetime) -> str:
    """rq's timestamp text: UTC, six fractional digits, a literal ``Z``."""
    utc = moment.astimezone(timezone.utc).replace(tzinfo=None)
    return utc.isoformat(timespec="microseconds") + "Z"  # strftime, 4x slower, is on hot paths


def now_ts() -> str:
    return format_ts(datetime.now(timezone.utc))


def epoch_ts(epoch: float) -> str:
    """``format_ts`` of a ``time.time()`` value."""
    return format_ts(datetime.fromtimestamp(epoch, timezone.utc))


def parse_ts(value: bytes | str | None) -> datetime | None:
    """An aware UTC datetime from rq's timestamp text; ``None`` for empty or missing.

    Raises ``ValueError`` for anything rq's own parser refuses.
    """
    if not value:
        return None
    text = value.decode() if isinstance(value, bytes) else value
    if not _TS_TEXT.fullmatch(text):
        raise ValueError(f"{text!r} is not an rq timestamp (like 2026-11-28T23:29:17.544169Z)")
    if sys.version_info >= (3, 11):
        return datetime.fromisoformat(text)  # reads the Z as UTC; 8x faster than strptime
    moment = datetime.strptime(text, _TS_FORMAT if "." in text else "%Y-%m-%dT%H:%M:%SZ")
    return moment.replace(tzinfo=timezone.utc)


_UUID4_CLEAR = ~((0xF000 << 64) | (0xC000 << 48))  # the version and variant bits
_UUID4_SET = (0x4000 << 64) | (0x8000 << 48)  # version 4, RFC 4122 variant


def new_job_id() -> str:
    """A random version-4 UUID as 32 hex digits, what ``uuid.uuid4().hex`` gives, in a
    third of its time: one per enqueue, so on the bulk enqueue's path."""
    bits = int.from_bytes(os.urandom(16), "big")
    return f"{(bits & _UUID4_CLEAR) | _UUID4_SET:032x}"


def validate_job_id(job_id: str) -> str:
    if not isinstance(job_id, str) or not _JOB_ID.fullmatch(job_id):
        raise InvalidJobError(
            f"job_id {job_id!r} is not valid: rq accepts only letters, digits, '_' and '-'"
        )
    return job_id


DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> int:
    """rq's durations: integer seconds, or ``30s``/``10m``/``1h``/``2d``; ``ValueError``."""
    if text[-1:] in DURATION_UNITS:
        return int(text[:-1]) * DURATION_UNITS[text[-1]]
    return int(text)


def parse_timeout(value: bytes | None) -> int:
    """rq's ``timeout`` field; missing means rq's default."""
    return parse_duration(value.decode()) if value else DEFAULT_TIMEOUT


@dataclass(eq=False)
class Job:
    """A job as stored in ``rq:job:<id>``. Build one with ``Queue.enqueue`` or ``Job.fetch``.

    Timestamps are aware UTC datetimes. ``args``/``kwargs``/``func_name`` are decoded
    lazily from ``data``, so fetching a job whose payload is broken still works.

    ``data`` is the field's bytes, except for a big payload (over 1 MiB): a job just
    enqueued holds it as the parts that were sent (``bytes(job.data)`` joins them), and
    a worker's job has it decoded as it was read, its ``data`` empty.
    """

    id: str
    connection: Redis
    data: Payload
    origin: str = ""
    description: str = ""
    status: JobStatus | None = None
    timeout: int = DEFAULT_TIMEOUT
    created_at: datetime | None = None
    enqueued_at: datetime | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    last_heartbeat: datetime | None = None
    worker_name: str = ""
    result_ttl: int | None = None
    failure_ttl: int | None = None
    ttl: int | None = None
    retries_left: int | None = None
    retry_intervals: list[float] = field(default_factory=list)
    number_of_retries: int | None = None  # how often it returned a Retry
    enqueue_at_front_on_retry: bool = False
    meta: dict[str, Any] = field(default_factory=dict)
    dependency_ids: list[str] = field(default_factory=list)
    allow_dependency_failures: bool = False
    success_callback_name: str = ""
    failure_callback_name: str = ""
    stopped_callback_name: str = ""
    success_callback_timeout: int = DEFAULT_CALLBACK_TIMEOUT
    failure_callback_timeout: int = DEFAULT_CALLBACK_TIMEOUT
    stopped_callback_timeout: int = DEFAULT_CALLBACK_TIMEOUT
    _call: Call | None = field(default=None, repr=False)

    def __repr__(self) -> str:
        return (
            f"<Job {self.id} {self.status.value if self.status else 'created'}: {self.description}>"
        )

    @property
    def key(self) -> str:
        return keys.job(self.id)

    def _decoded(self) -> Call:
        if self._call is None:
            self._call = decode_data(bytes(self.data))
        return self._call

    @property
    def func_name(self) -> str:
        return self._decoded()[0]

    @property
    def args(self) -> list[Any]:
        return self._decoded()[1]

    @property
    def kwargs(self) -> dict[str, Any]:
        return self._decoded()[2]

    @classmethod
    def from_hash(
        cls,
        job_id: str,
        mapping: Mapping[bytes, bytes],
        connection: Redis,
        call: Call | None = None,
    ) -> Job:
        """Decode an ``HGETALL`` (without ``data`` if ``call`` is what it decodes to).

        Raises ``NoSuchJobError`` when it is empty or has no ``data``, and
        ``InvalidJobError`` naming the field when a field cannot be read as rq reads it.
        Empty fields count as absent and unknown fields are ignored, as rq does.
        """
        data = mapping.get(b"data", None if call is None else b"")
        if data is None:
            if mapping:
                raise NoSuchJobError(f"job {job_id!r} has a hash but no 'data' field")
            raise NoSuchJobError(f"no job {job_id!r} in Redis (key {keys.job(job_id)})")
        values: dict[str, Any] = {}
        rules = _FIELD_RULES
        try:  # one try around the loop: this runs for every job a worker claims
            for name, raw in mapping.items():
                if raw and (rule := rules.get(name)) is not None:
                    values[rule[0]] = rule[1](raw)
        except (ValueError, TypeError, OverflowError) as error:
            raise InvalidJobError(
                f"job {job_id!r}: field {name.decode()!r} holds {_clip(raw)!r}, "
                f"which rq cannot read: {error}"
            ) from None
        legacy_parent = values.pop(_LEGACY_PARENT, None)
        if legacy_parent and "dependency_ids" not in values:
            values["dependency_ids"] = [legacy_parent]
        return cls(id=job_id, connection=connection, data=data, _call=call, **values)

    @classmethod
    async def fetch(cls, job_id: str, connection: Redis) -> Job:
        """Read ``rq:job:<id>`` (one ``HGETALL``); raises ``NoSuchJobError``."""
        validate_job_id(job_id)
        mapping: dict[bytes, bytes] = await connection.hgetall(keys.job(job_id))  # type: ignore[assignment]
        return cls.from_hash(job_id, mapping, connection)

    async def refresh(self) -> None:
        fresh = await Job.fetch(self.id, self.connection)
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(fresh, name))

    async def get_status(self, refresh: bool = True) -> JobStatus | None:
        if refresh:
            raw: bytes | None = await self.connection.hget(self.key, "status")  # type: ignore[assignment]
            self.status = JobStatus(raw.decode()) if raw else None
        return self.status

    async def latest_result(self, timeout: float = 0) -> Result | None:
        """The newest entry of the results stream, or None.

        With ``timeout`` > 0 and no entry yet, blocks on ``XREAD BLOCK`` up to that many
        seconds for the first one.
        """
        stream = keys.results(self.id)
        if timeout <= 0:
            entries: list[Any] = await self.connection.xrevrange(stream, count=1)  # type: ignore[assignment]
            return Result.from_entry(*entries[0]) if entries else None
        # From 0-0, XREAD answers at once with every entry (about ten at most) if there is
        # one, else blocks for the first: one round trip either way.
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            block = max(1, math.ceil(block_slice(self.connection, left) * 1000))  # 0: forever
            try:
                reply: Any = await self.connection.xread({stream: "0-0"}, block=block)
            except redis.TimeoutError:
                continue  # a slow reply to a read-only wait: just wait again
            if reply:
                return Result.from_entry(*_stream_entries(reply)[-1])
        return None

    async def results(self) -> list[Result]:
        """Every recorded outcome, newest first (the stream keeps about ten)."""
        entries: list[Any] = await self.connection.xrevrange(keys.results(self.id))  # type: ignore[assignment]
        return [Result.from_entry(*entry) for entry in entries]

    async def return_value(self) -> Any:
        """The value of the latest result if it succeeded, else None."""
        result = await self.latest_result()
        return result.return_value if result and result.type is ResultType.SUCCESSFUL else None

    async def save_meta(self) -> None:
        """Write ``meta`` (only that field, as rq does), e.g. a running job's progress:
        ``job = get_current_job(); job.meta["progress"] = 50; await job.save_meta()``."""
        await self.connection.hset(self.key, "meta", MsgpackSerializer.dumps(self.meta))

    async def stop(self) -> bool:
        """Ask the worker running this job to stop it, with rq's ``stop-job`` command
        (stock rq workers obey it too; the job ends ``stopped``). Returns whether a worker
        took the command: False when the job is not running or its worker is gone."""
        raw: list[bytes | None] = await self.connection.hmget(self.key, ["status", "worker_name"])  # type: ignore[assignment]
        status, worker_name = raw
        if status != JobStatus.STARTED.value.encode() or not worker_name:
            return False
        command = json.dumps({"command": "stop-job", "job_id": self.id})
        channel = keys.pubsub(worker_name.decode("utf-8", "backslashreplace"))
        return int(await self.connection.publish(channel, command)) > 0

    async def delete(self) -> None:
        """Remove the job and all it has in Redis: its hash, results and executions, and
        its place in its queue and in every registry, in one atomic step. A worker running
        it records nothing when it ends."""

        async def read(pipe: Pipeline) -> tuple[str, list[str]]:
            raw_origin: bytes | None = await pipe.hget(self.key, "origin")  # type: ignore[assignment]
            origin = raw_origin.decode() if raw_origin else self.origin
            return origin, await registries.running_members(pipe, origin, self.id)

        def write(pipe: Pipeline, found: tuple[str, list[str]]) -> None:
            origin, running = found
            pipe.lrem(keys.queue(origin), 0, self.id)
            registries.take_out(pipe, origin, self.id, running)
            pipe.delete(
                self.key,
                keys.results(self.id),
                keys.dependents(self.id),
                keys.dependencies(self.id),
                keys.executions(self.id),
                *(keys.execution(*registries.split_member(member)) for member in running),
            )

        await registries.atomically(self.connection, self.key, read, write)

    async def cancel(self) -> None:
        """Take the job out of its queue and every registry and book it ``canceled``, in
        one atomic step (spec §5.12); its hash stays, with no expiry.

        Raises ``NoSuchJobError`` if the job is gone, ``InvalidJobOperation`` if it is
        canceled already. A running job is not stopped (``send_stop_job_command`` does
        that): as in rq, only its started registry entry goes.
        """

        async def read(pipe: Pipeline) -> tuple[str, list[str]]:
            raw: list[bytes | None] = await pipe.hmget(self.key, ["status", "origin"])  # type: ignore[assignment]
            if raw[0] is None and not await pipe.exists(self.key):
                raise NoSuchJobError(f"no job {self.id!r} in Redis (key {self.key})")
            if raw[0] == JobStatus.CANCELED.value.encode():
                raise InvalidJobOperation(f"job {self.id!r} is already canceled")
            origin = raw[1].decode() if raw[1] else self.origin
            return origin, await registries.running_members(pipe, origin, self.id)

        def write(pipe: Pipeline, found: tuple[str, list[str]]) -> None:
            origin, running = found
            pipe.hset(self.key, "status", JobStatus.CANCELED.value)
            pipe.lrem(keys.queue(origin), 1, self.id)
            registries.take_out(pipe, origin, self.id, running)
            pipe.zadd(keys.canceled(origin), {self.id: int(time.time())})

        await registries.atomically(self.connection, self.key, read, write)
        self.status = JobStatus.CANCELED

    async def requeue(self, at_front: bool = False) -> None:
        """Put a failed, stopped or canceled job back on its queue, as ``rq requeue`` does,
        in one atomic step: status ``queued``, out of every registry, ``started_at`` and
        ``ended_at`` cleared, its hash kept with no expiry, pushed at the back of the queue
        (the front with ``at_front``). A job with a ``RateLimit`` goes back in line for a
        slot instead (status ``rate_limited``), as in rq 3.0: the next step that fills its
        limit's slots lets it through (a job of that limit ending, or a worker's sweep).

        Raises ``NoSuchJobError`` if the job is gone, ``InvalidJobOperation`` if it is in
        another status.
        """

        waits = False  # a rate-limited job goes back in line for a slot, as in rq 3.0

        async def read(pipe: Pipeline) -> tuple[str, list[bytes | None]]:
            fields = ["status", "origin", "rate_limit_key", "rate_limit_concurrency"]
            raw: list[bytes | None] = await pipe.hmget(self.key, fields)  # type: ignore[assignment]
            if raw[0] is None and not await pipe.exists(self.key):
                raise NoSuchJobError(f"no job {self.id!r} in Redis (key {self.key})")
            status = _status(raw[0]) if raw[0] else None
            if status not in (JobStatus.FAILED, JobStatus.STOPPED, JobStatus.CANCELED):
                raise InvalidJobOperation(
                    f"job {self.id!r} is {status.value if status else 'created'}: only "
                    "failed, stopped or canceled jobs can be requeued"
                )
            return (raw[1].decode() if raw[1] else self.origin), raw[2:]

        def write(pipe: Pipeline, found: tuple[str, list[bytes | None]]) -> None:
            nonlocal waits
            origin, (limit_key, concurrency) = found
            registries.take_out(pipe, origin, self.id, running=())
            pipe.hset(
                self.key,
                mapping={
                    "status": JobStatus.QUEUED.value,
                    "enqueued_at": now_ts(),
                    "started_at": "",
                    "ended_at": "",
                },
            )
            pipe.persist(self.key)
            pipe.sadd(keys.QUEUES, keys.queue(origin))
            waits = bool(limit_key and concurrency and concurrency.isdigit())
            if waits:
                self._wait_for_slot_in(pipe, found[1], at_front)
                return
            (pipe.lpush if at_front else pipe.rpush)(keys.queue(origin), self.id)

        await registries.atomically(self.connection, self.key, read, write)
        self.status = JobStatus.RATE_LIMITED if waits else JobStatus.QUEUED

    def _wait_for_slot_in(self, pipe: Pipeline, limit: list[bytes | None], at_front: bool) -> None:
        """Queue in a MULTI: this job waits ``rate_limited`` for a slot of its limit
        (``limit``: its key and concurrency as stored)."""
        key, concurrency = limit
        assert key is not None and concurrency is not None
        pipe.hset(self.key, "status", JobStatus.RATE_LIMITED.value)
        if at_front:
            pipe.hset(self.key, "enqueue_at_front", 1)
        wait_in(pipe, self.id, key.decode(), int(concurrency))


def _clip(raw: bytes) -> bytes:
    return raw if len(raw) <= 60 else raw[:60] + b"..."


def _number_list(raw: bytes) -> list[float]:
    value = json.loads(raw)
    if not isinstance(value, list) or not all(
        isinstance(i, (int, float)) and not isinstance(i, bool) for i in value
    ):
        raise ValueError("not a JSON list of seconds")
    return value


def _str_list(raw: bytes) -> list[str]:
    value = json.loads(raw)
    if not isinstance(value, list) or not all(isinstance(i, str) for i in value):
        raise ValueError("not a JSON list of job ids")
    return value


def _flag(raw: bytes) -> bool:
    return raw == b"1"


def _status(raw: bytes) -> JobStatus:
    return JobStatus(raw.decode())


def _timeout(raw: bytes) -> int:
    return parse_duration(raw.decode())


_Parse = Callable[[bytes], Any]
_LEGACY_PARENT = "legacy dependency_id"  # read only where dependency_ids is absent

# Hash field -> (Job attribute, parser): the one reading of rq's job hash (spec §3).
_FIELD_RULES: dict[bytes, tuple[str, _Parse]] = {
    b"origin": ("origin", bytes.decode),
    b"description": ("description", bytes.decode),
    b"status": ("status", _status),
    b"timeout": ("timeout", _timeout),
    b"created_at": ("created_at", parse_ts),
    b"enqueued_at": ("enqueued_at", parse_ts),
    b"started_at": ("started_at", parse_ts),
    b"ended_at": ("ended_at", parse_ts),
    b"last_heartbeat": ("last_heartbeat", parse_ts),
    b"worker_name": ("worker_name", bytes.decode),
    b"result_ttl": ("result_ttl", int),
    b"failure_ttl": ("failure_ttl", int),
    b"ttl": ("ttl", int),
    b"retries_left": ("retries_left", int),
    b"retry_intervals": ("retry_intervals", _number_list),
    b"number_of_retries": ("number_of_retries", int),
    b"enqueue_at_front_on_retry": ("enqueue_at_front_on_retry", _flag),
    b"meta": ("meta", lambda raw: _decode_meta(raw)),
    b"dependency_ids": ("dependency_ids", _str_list),
    b"dependency_id": (_LEGACY_PARENT, bytes.decode),
    b"allow_dependency_failures": ("allow_dependency_failures", _flag),
    b"success_callback_name": ("success_callback_name", bytes.decode),
    b"failure_callback_name": ("failure_callback_name", bytes.decode),
    b"stopped_callback_name": ("stopped_callback_name", bytes.decode),
    b"success_callback_timeout": ("success_callback_timeout", int),
    b"failure_callback_timeout": ("failure_callback_timeout", int),
    b"stopped_callback_timeout": ("stopped_callback_timeout", int),
}


def _stream_entries(reply: Any) -> list[Any]:
    """The entries of the one stream an ``XREAD`` read: ``[[name, entries]]`` in RESP2,
    ``{name: entries}`` (or ``{name: [entries]}``) when the client asked for RESP3."""
    if isinstance(reply, dict):
        (entries,) = reply.values()
        return list(entries[0] if entries and isinstance(entries[0], list) else entries)
    return list(reply[0][1])


def _decode_meta(raw: bytes | None) -> dict[str, Any]:
    if not raw:
        return {}
    try:
        meta = MsgpackSerializer.loads(raw)
    except DeserializationError:
        return {"unserialized": raw}
    return meta if isinstance(meta, dict) else {"unserialized": raw}
