"""Recording how executions ended: one ``finish.lua`` call for any number of them.

The worker records its batches here and eager mode its one job, so a job run either way
leaves the same state in Redis.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from . import _scripts
from ._multiplexer import Multiplexer
from ._scripts import Outcome
from .job import epoch_ts

__all__ = ["Ended", "Outcome", "record"]  # Outcome: what ``Ended.status`` holds


@dataclass(frozen=True)
class Ended:
    """One execution's end, as ``finish.lua`` takes it."""

    raw_id: bytes  # the job id as stored
    exec_id: str
    origin: bytes  # the queue its execution was booked under
    status: Outcome
    payload: str = ""  # base64 return value, or base64 exc_string
    started_at: float = 0.0


async def record(
    multiplexer: Multiplexer,
    worker_name: str,
    ended: Sequence[Ended],
    result_ttl: int,
    failure_ttl: int,
) -> list[bytes]:
    """Write every outcome in one atomic step; return what was written for each
    (``finished``, ``retried``, ``recorded`` when it was written before, ...).

    ``worker_name`` is ``""`` in eager mode: no worker hash to count in.
    """
    now = time.time()
    rows = [
        (
            e.raw_id,
            e.exec_id,
            e.origin,
            e.status.value,
            e.payload,
            repr(e.started_at),
            repr(max(now - e.started_at, 0.0)),  # working seconds
        )
        for e in ended
    ]
    args = [worker_name, repr(now), epoch_ts(now), result_ttl, failure_ttl]
    written: list[bytes] = await _scripts.FINISH(
        multiplexer, [], [*args, _scripts.pack_argument(rows)]
    )
    return written
