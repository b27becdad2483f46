"""rq's ``Repeat(times, interval)``: run a job again after each success.

Stored as rq stores it (``repeats_left``, ``repeat_intervals``), so a stock rq 3.0 worker
repeats our jobs and ours repeat theirs. After a success with repeats left, the job is
queued again at once (interval 0) or scheduled after the interval; intervals are used from
the front, the last one for every further run (``scripts/lib/repeat.lua``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .errors import InvalidJobError


@dataclass(frozen=True, init=False)
class Repeat:
    """Run a job ``times`` more times after its first success, waiting ``interval`` seconds
    (or the n-th of a list of intervals) before each."""

    times: int
    intervals: tuple[int, ...]

    def __init__(self, times: int, interval: int | Iterable[int] = 0) -> None:
        if not isinstance(times, int) or isinstance(times, bool) or times < 1:
            raise InvalidJobError(f"Repeat(times={times!r}): times must be an int of at least 1")
        intervals = (interval,) if isinstance(interval, int) else tuple(interval)
        if not intervals or any(
            not isinstance(i, int) or isinstance(i, bool) or i < 0 for i in intervals
        ):
            raise InvalidJobError(
                f"Repeat(interval={interval!r}): intervals must be whole seconds, not negative"
            )
        object.__setattr__(self, "times", times)
        object.__setattr__(self, "intervals", intervals)


def repeat_of(value: Any) -> Repeat:
    """The ``repeat`` option as a ``Repeat``: ours, or rq's (``times``, ``intervals``)."""
    if isinstance(value, Repeat):
        return value
    if hasattr(value, "times") and hasattr(value, "intervals"):
        return Repeat(value.times, value.intervals)
    raise InvalidJobError(f"repeat={value!r} is not a Repeat(times, interval)")
