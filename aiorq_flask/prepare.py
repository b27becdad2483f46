"""One job's call and options, validated and encoded for RQ's job hash, before anything
reaches Redis.

``prepare_job`` raises on bad input (``InvalidJobError`` naming the option, id or function,
``SerializationError`` naming the argument), so nothing is written for a job that cannot
be; ``EnqueueData`` is what ``Queue`` then writes, and what eager mode runs.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from redis.typing import EncodableT

from .errors import InvalidJobError
from .job import (
    DEFAULT_CALLBACK_TIMEOUT,
    DEFAULT_TIMEOUT,
    DURATION_UNITS,
    JobStatus,
    Retry,
    format_ts,
    new_job_id,
    parse_duration,
    validate_job_id,
)
from .payload import BIG_DATA, Payload, describe_call, encode_data
from .rate_limit import RateLimit, rate_limit_of
from .repeat import repeat_of
from .serializer import MsgpackSerializer

# The job hash as enqueue.lua writes it (spec §5.1), named here and rendered into its
# preamble, so a call carries values only: the fields every job has a value of, in the
# order script_args passes them, and rq's fields every new job is written with, empty.
CALL_FIELDS = ("created_at", "origin", "description", "timeout")
EMPTY_FIELDS = (
    "success_callback_name",
    "failure_callback_name",
    "stopped_callback_name",
    "started_at",
    "ended_at",
    "last_heartbeat",
    "worker_name",
    "group_id",
)

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
        "unique",
        "rate_limit",
        "repeat",
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
    """A callback option: a function, its dotted path, ``(function, timeout)`` or rq's
    ``Callback(func, timeout)``."""
    if value is None:
        return None
    if isinstance(value, tuple):
        func, timeout = value
    elif _is_rq_callback(value):
        func, timeout = value.func, value.timeout
    else:
        func, timeout = value, DEFAULT_CALLBACK_TIMEOUT
    try:
        return function_path(func), int(timeout)
    except InvalidJobError as error:
        raise InvalidJobError(f"{name}: {error}") from None


def _is_rq_callback(value: Any) -> bool:
    return not callable(value) and hasattr(value, "func") and hasattr(value, "timeout")


def _is_rq_dependency(value: Any) -> bool:
    return hasattr(value, "dependencies") and hasattr(value, "allow_failure")


@dataclass(frozen=True)
class _Parents:
    """``depends_on`` read: the parent ids, and rq's ``Dependency`` flags (set by any one
    of them, they apply to all, as in rq)."""

    ids: tuple[str, ...]
    allow_failure: bool = False
    at_front: bool = False


_NO_PARENTS = _Parents(())


def _parents(depends_on: Any, allow_failure: bool) -> _Parents:
    """Parents from a job, an id, rq's ``Dependency(jobs, allow_failure,
    enqueue_at_front)``, or a list of these (None: no parents)."""
    if depends_on is None:
        return _Parents((), True) if allow_failure else _NO_PARENTS
    items = depends_on if isinstance(depends_on, (list, tuple)) else [depends_on]
    ids: list[str] = []
    at_front = False
    for item in items:
        if _is_rq_dependency(item):
            allow_failure = allow_failure or bool(item.allow_failure)
            at_front = at_front or bool(getattr(item, "enqueue_at_front", False))
            ids.extend(_parent_id(parent) for parent in item.dependencies)
        else:
            ids.append(_parent_id(item))
    return _Parents(tuple(ids), allow_failure, at_front)


def _parent_id(parent: Any) -> str:
    """A parent's id, from an id or from a job handle (ours or rq's)."""
    return validate_job_id(parent if isinstance(parent, str) else getattr(parent, "id", parent))


@dataclass(frozen=True)
class EnqueueData:
    """A job ready to be written: built by ``Queue.prepare_data``, written by ``enqueue_many``."""

    job_id: str
    func_name: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    payload: Payload
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
    unique: bool = False  # written only if no job hash has its id (enqueue.lua checks)

    @property
    def data_beside(self) -> bool:
        """Whether ``data`` is written by a plain ``HSET`` beside the script call (a big
        payload), not by the script. Never for a unique job: the hash would exist before
        the script checks that it does not."""
        return len(self.payload) > BIG_DATA and not self.unique

    rate_limit: RateLimit | None = None  # queued through its limit (scripts/rate_limit.lua)

    def script_args(self, origin: str, status: JobStatus, where: str) -> list[EncodableT]:
        """``enqueue.lua``'s arguments for writing this job with ``status`` (which the
        script turns into ``deferred`` if a parent is not done)."""
        fields = self.fields
        waiting = (JobStatus.SCHEDULED, JobStatus.DEFERRED, JobStatus.RATE_LIMITED)
        may_wait = status in waiting or self.depends_on
        if may_wait and self.at_front:
            fields = {**fields, "enqueue_at_front": 1}  # rq's flag for a later push
        values: dict[str, EncodableT] = {
            "created_at": format_ts(self.created_at),
            "origin": origin,
            "description": self.description,
            "timeout": self.timeout,
        }
        return [
            self.job_id,
            status.value,
            where,
            "" if self.ttl is None else self.ttl,
            b"" if self.data_beside else bytes(self.payload),  # bytes(): no copy of bytes
            len(self.depends_on),
            *self._parents(),
            *(values[name] for name in CALL_FIELDS),
            *(item for pair in fields.items() for item in pair),
        ]

    def _parents(self) -> list[EncodableT]:
        """With parents: whether a failed one counts as done, and their ids."""
        if not self.depends_on:
            return []
        return ["1" if self.allow_dependency_failures else "", *self.depends_on]


def _option_fields(
    meta: Mapping[str, Any] | None,
    ttls: Mapping[str, int | None],
    retry: Retry | None,
    parents: _Parents,
) -> dict[str, EncodableT]:
    """The hash fields a job has only when an option is set (spec §3)."""
    fields: dict[str, EncodableT] = {}
    if meta:
        fields["meta"] = MsgpackSerializer.dumps(dict(meta))
    fields.update({name: value for name, value in ttls.items() if value is not None})
    if retry is not None:
        fields["retries_left"] = retry.max
        fields["retry_intervals"] = json.dumps(retry.intervals)
    if parents.ids:
        fields["dependency_id"] = parents.ids[0]
        fields["dependency_ids"] = json.dumps(list(parents.ids))
        if parents.allow_failure:
            fields["allow_dependency_failures"] = 1
        if parents.at_front:
            fields["enqueue_at_front"] = 1  # rq's Dependency(enqueue_at_front=True)
    return fields


def _callback_fields(on_success: Any, on_failure: Any, on_stopped: Any) -> dict[str, EncodableT]:
    """The fields of the callback options given."""
    fields: dict[str, EncodableT] = {}
    if on_success is None and on_failure is None and on_stopped is None:
        return fields
    for kind, value in (("success", on_success), ("failure", on_failure), ("stopped", on_stopped)):
        callback = _callback(f"on_{kind}", value)
        if callback is not None:
            fields[f"{kind}_callback_name"], fields[f"{kind}_callback_timeout"] = callback
    return fields


def _add_limit_and_repeat_fields(
    fields: dict[str, EncodableT], rate_limit: Any, repeat: Any, result_ttl: int | None
) -> RateLimit | None:
    """Add rq 3.0's fields for ``rate_limit=RateLimit(...)`` and ``repeat=Repeat(...)``;
    return the limit."""
    limit = None if rate_limit is None else rate_limit_of(rate_limit)
    if limit is not None:
        fields["rate_limit_key"] = limit.key
        fields["rate_limit_concurrency"] = limit.concurrency
    if repeat is not None:
        repeating = repeat_of(repeat)
        if result_ttl == 0:
            raise InvalidJobError("repeat needs the job kept between runs: not with result_ttl=0")
        fields["repeats_left"] = repeating.times
        fields["repeat_intervals"] = json.dumps(list(repeating.intervals))
    return limit


def prepare_job(
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
    unique: bool = False,
    rate_limit: Any = None,
    repeat: Any = None,
) -> EnqueueData:
    """Validate and encode one job without touching Redis.

    Raises ``InvalidJobError`` (bad id, function or option; ``unique=True`` without a
    ``job_id``, or with ``depends_on`` or ``rate_limit``, as rq does) or
    ``SerializationError`` (naming the argument that msgpack cannot encode)."""
    func_name, args, kwargs = function_path(func), tuple(args or ()), dict(kwargs or {})
    timeout = _seconds("job_timeout", job_timeout, DEFAULT_TIMEOUT)
    assert timeout is not None
    ttls = _ttls(result_ttl=result_ttl, failure_ttl=failure_ttl, ttl=ttl)
    _check_unique(unique, job_id, depends_on, rate_limit)
    parents = _parents(depends_on, allow_dependency_failures)
    fields = _option_fields(meta, ttls, retry, parents)
    fields.update(_callback_fields(on_success, on_failure, on_stopped))
    limit = _add_limit_and_repeat_fields(fields, rate_limit, repeat, ttls["result_ttl"])
    return EnqueueData(
        job_id=new_job_id() if job_id is None else validate_job_id(job_id),
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
        depends_on=parents.ids,
        allow_dependency_failures=parents.allow_failure,
        fields=fields,
        unique=bool(unique),
        rate_limit=limit,
    )


def _ttls(**given: int | timedelta | None) -> dict[str, int | None]:
    return {name: _seconds(name, value) for name, value in given.items()}


def _check_unique(unique: bool, job_id: str | None, depends_on: Any, rate_limit: Any) -> None:
    if unique and job_id is None:
        raise InvalidJobError("unique=True needs a job_id: it is the id that must be unique")
    if unique and depends_on is not None:
        raise InvalidJobError("unique=True is not supported with depends_on (as in rq)")
    if unique and rate_limit is not None:
        raise InvalidJobError("unique=True is not supported with rate_limit (as in rq)")
