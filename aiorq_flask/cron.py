"""Periodic jobs: ``rq.register_cron(func, cron="0 9 * * *")`` or ``interval=60``.

A registration is app code, like a route: made at import or app setup, kept by the
extension for every app it serves (``AppState.crons``), and run by each worker whose
queues include its queue. A periodic job's *ticks* are fixed times every worker computes
alike: a cron expression's (5 fields, read in ``timezone``, by ``croniter``), or the
multiples of ``interval`` seconds since the Unix epoch (``interval=3600`` runs on the
hour). Each tick is enqueued once, however many workers run, by ``scripts/lib/cron.lua``:
the last tick enqueued per name (``rq:cron:<name>``) is compared and set in the same
atomic step as the enqueue, and survives restarts, so a restart neither skips nor repeats
a tick.

- A name seen for the first time starts at the next tick (deploying a daily job at noon
  does not run it at once).
- Ticks missed while no worker ran are caught up once, not once per missed tick: the
  first pass after the gap enqueues the latest due tick.
- A tick's job id is ``cron-<name>-<tick>`` (the name with characters outside
  ``[A-Za-z0-9_-]`` as ``_``; the tick in epoch seconds), so the registries show which
  tick a job was for.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter  # type: ignore[import-untyped]

from .errors import InvalidJobError
from .payload import BIG_DATA
from .prepare import ENQUEUE_OPTIONS, EnqueueData, function_path, prepare_job

_NOT_AN_ID = re.compile(r"[^A-Za-z0-9_-]")
# Options a periodic job cannot take: its ids are its ticks', and nothing it waits on
# exists when it is registered.
_REFUSED = frozenset({"job_id", "depends_on", "allow_dependency_failures"})


@dataclass(frozen=True)
class CronJob:
    """One periodic job; ``register_cron`` builds it (use ``cron_job`` to validate)."""

    name: str
    func: str  # the function's dotted path, as a worker imports it
    queue: str
    args: tuple[Any, ...]
    kwargs: Mapping[str, Any]
    cron: str | None  # exactly one of cron and interval
    interval: int | None
    timezone: tzinfo
    options: Mapping[str, Any] = field(default_factory=dict)  # enqueue options

    @property
    def id_prefix(self) -> str:
        return "cron-" + _NOT_AN_ID.sub("_", self.name)

    def latest_tick(self, now: float) -> int:
        """The newest tick at or before ``now`` (epoch seconds)."""
        if self.interval is not None:
            return math.floor(now / self.interval) * self.interval
        ticks = croniter(self.cron, datetime.fromtimestamp(now, self.timezone))
        return int(ticks.get_prev(datetime).timestamp())

    def next_tick(self, now: float) -> int:
        """The first tick after ``now`` (epoch seconds)."""
        if self.interval is not None:
            return self.latest_tick(now) + self.interval
        ticks = croniter(self.cron, datetime.fromtimestamp(now, self.timezone))
        return int(ticks.get_next(datetime).timestamp())

    def job_id(self, tick: int) -> str:
        return f"{self.id_prefix}-{tick}"

    def prepare(self, tick: int) -> EnqueueData:
        """The job of ``tick``, ready to write."""
        return prepare_job(
            self.func, self.args, self.kwargs, job_id=self.job_id(tick), **self.options
        )


def cron_job(
    func: Callable[..., Any] | str,
    *,
    cron: str | None = None,
    interval: float | timedelta | None = None,
    queue: str = "default",
    args: Sequence[Any] = (),
    kwargs: Mapping[str, Any] | None = None,
    name: str | None = None,
    timezone: str | tzinfo = "UTC",
    **options: Any,
) -> CronJob:
    """A validated ``CronJob``; ``InvalidJobError`` (or ``SerializationError`` for an
    argument msgpack cannot encode) naming what is wrong."""
    if (cron is None) == (interval is None):
        raise InvalidJobError("register_cron takes exactly one of cron=... and interval=...")
    path = function_path(func)
    job = CronJob(
        name=path if name is None else name,
        func=path,
        queue=queue,
        args=tuple(args),
        kwargs=dict(kwargs or {}),
        cron=None if cron is None else _cron_expression(cron),
        interval=None if interval is None else _interval(interval),
        timezone=_timezone(timezone),
        options=_options(options),
    )
    if not isinstance(job.name, str) or not job.name:
        raise InvalidJobError(f"register_cron: name={name!r} must be a non-empty str")
    if len(job.prepare(0).payload) > BIG_DATA:  # also checks the options and arguments
        raise InvalidJobError(f"cron job {job.name!r}: its arguments are too big to repeat")
    return job


def _cron_expression(expression: str) -> str:
    fields = expression.split() if isinstance(expression, str) else []
    if len(fields) != 5 or not croniter.is_valid(expression):
        raise InvalidJobError(
            f"cron={expression!r} is not a cron expression of 5 fields "
            "(minute hour day-of-month month day-of-week, e.g. '0 9 * * 1-5')"
        )
    return expression


def _interval(interval: float | timedelta) -> int:
    seconds = interval.total_seconds() if isinstance(interval, timedelta) else interval
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        raise InvalidJobError(f"interval={interval!r} is not seconds or a timedelta")
    if seconds < 1 or seconds != int(seconds):
        raise InvalidJobError(f"interval={interval!r} must be whole seconds, at least 1")
    return int(seconds)


def _timezone(timezone: str | tzinfo) -> tzinfo:
    if isinstance(timezone, tzinfo):
        return timezone
    try:
        return ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise InvalidJobError(f"timezone={timezone!r} is not a known time zone") from None


def _options(options: Mapping[str, Any]) -> dict[str, Any]:
    unknown = set(options) - ENQUEUE_OPTIONS
    if unknown:
        raise TypeError(f"unknown enqueue option(s): {', '.join(sorted(unknown))}")
    refused = set(options) & _REFUSED
    if refused:
        raise InvalidJobError(
            f"a periodic job cannot take {', '.join(sorted(refused))}: each tick's job "
            "has its own id, and runs when its tick is due"
        )
    return dict(options)


class CronRegistry:
    """The periodic jobs an extension registered, by name; a name registered twice, or
    two names with the same job ids, is an error naming them."""

    def __init__(self) -> None:
        self._jobs: dict[str, CronJob] = {}

    def add(self, job: CronJob) -> None:
        if job.name in self._jobs:
            raise InvalidJobError(f"a cron job named {job.name!r} is registered already")
        for other in self._jobs.values():
            if other.id_prefix == job.id_prefix:
                raise InvalidJobError(
                    f"cron job names {other.name!r} and {job.name!r} give the same job ids "
                    f"({job.id_prefix}-<tick>): rename one"
                )
        self._jobs[job.name] = job

    def __iter__(self) -> Iterator[CronJob]:
        return iter(list(self._jobs.values()))

    def __len__(self) -> int:
        return len(self._jobs)
