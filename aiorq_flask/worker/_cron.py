"""The worker's periodic-job pass (``aiorq_flask.cron``): enqueue each due tick of the
periodic jobs on its queues, on each queue's own connection.

Each tick is offered to Redis once per worker: ``scripts/lib/cron.lua`` enqueues it only
if no worker has, so passes cost no round trip between ticks.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

from .. import _scripts, keys
from ..errors import ConfigError
from ..job import JobStatus, epoch_ts

if TYPE_CHECKING:
    from .._state import AppState
    from ..cron import CronJob
    from ..queue import Queue

log = logging.getLogger("aiorq_flask.worker")

PASS_SECONDS = 0.25  # well under the shortest interval (1 s), so no tick is passed over


def crons_for(
    crons: Iterable[CronJob], configured: Sequence[str], served: Sequence[str]
) -> list[CronJob]:
    """The periodic jobs of ``served`` queues; ``ConfigError`` for one whose queue is not
    configured at all (no worker would ever run it)."""
    jobs = list(crons)
    for job in jobs:
        if job.queue not in configured:
            raise ConfigError(
                f"cron job {job.name!r}: its queue {job.queue!r} is not in RQ_QUEUES "
                f"({', '.join(configured)})"
            )
    return [job for job in jobs if job.queue in served]


class CronPass:
    """Enqueues due ticks; remembers, per name, the last tick this worker settled."""

    def __init__(self, jobs: Sequence[CronJob], queues: Mapping[str, Queue]) -> None:
        self.jobs = jobs
        self._queues = queues
        self._settled: dict[str, int] = {}

    @classmethod
    def serving(cls, state: AppState, served: Sequence[str]) -> CronPass:
        """The pass for the periodic jobs of the ``served`` queues of ``state``'s app."""
        return cls(crons_for(state.crons, state.plan.queues, served), state.queues)

    async def run(self) -> int:
        """Offer every newly due tick; return how many jobs were enqueued."""
        now = time.time()
        enqueued = 0
        for job in self.jobs:
            tick = job.latest_tick(now)
            if self._settled.get(job.name) == tick:
                continue
            if await enqueue_tick(self._queues[job.queue], job, tick):
                enqueued += 1
                log.info("cron job %s: enqueued its tick %s", job.name, epoch_ts(tick))
            self._settled[job.name] = tick
        return enqueued


async def enqueue_tick(queue: Queue, job: CronJob, tick: int) -> bool:
    """Enqueue ``job``'s ``tick`` unless a worker did (or it is the name's first tick);
    return whether this call did."""
    data = job.prepare(tick)
    state = keys.cron(job.name)
    if data.rate_limit is None:
        keys_, args = queue.write_args(data)
        written = await _scripts.CRON(queue.multiplexer, [*keys_, state], [tick, *args])
        return written is not None
    keys_, args = queue.write_args(data, JobStatus.RATE_LIMITED, "")
    now = time.time()
    replies = await queue.multiplexer.transaction(
        [
            *(("SCRIPT", "LOAD", script.source) for script in (_scripts.CRON, _scripts.RATE_LIMIT)),
            _scripts.CRON.command([*keys_, state], [tick, *args]),
            _scripts.RATE_LIMIT.command([], [data.job_id, repr(now), epoch_ts(now)]),
        ]
    )
    return replies[-2] is not None
