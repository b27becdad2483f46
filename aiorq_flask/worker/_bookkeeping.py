"""The worker's own records in Redis, and the passes every worker runs for all.

Registration, heartbeat and death are rq's (spec §5.4, §5.13), so ``rq info`` and
``Worker.all`` list our workers. The sweep rescues the jobs of dead workers (spec §5.9,
made faster: jobs go back on their queue) and the scheduler moves due jobs (spec §5.2).
Each is one round trip.
"""

from __future__ import annotations

import math
import os
import socket
import sys
import time
from collections.abc import Sequence
from typing import Protocol

from redis.asyncio import Redis
from redis.typing import EncodableT, FieldT

from .. import _scripts, keys
from .._multiplexer import Multiplexer
from ..execution import encode_exc_string
from ..job import epoch_ts, now_ts

VERSION = "0.1.0"
SCHEDULER_LOCK_SECONDS = 61  # rq's: a lock outlives a missed tick or two
SWEEP_BATCH = 100  # wip members rescued per queue and pass


class Running(Protocol):
    """What a heartbeat needs to know of a running job."""

    job_id: str
    exec_id: str
    origin: str


def wip_ttl(heartbeat: float) -> int:
    """Seconds a running job's ``rq:wip`` score stays ahead of now. Heartbeats renew it
    every ``heartbeat`` seconds and sweeps run every half heartbeat, so a dead worker's
    jobs are rescued within two heartbeats and a live one keeps half a heartbeat spare."""
    return math.ceil(heartbeat * 1.5)


def worker_key_ttl(heartbeat: float) -> int:
    """A dead worker drops out of ``rq info`` three missed heartbeats after its last."""
    return math.ceil(heartbeat * 3)


async def register(client: Redis, name: str, queues: Sequence[str], heartbeat: float) -> None:
    """Write ``rq:worker:<name>`` and add it to ``rq:workers`` and each ``rq:workers:<q>``.

    Raises ``RuntimeError`` if a live worker already has that name (rq refuses it too).
    """
    worker_key = keys.worker(name)
    existing = await client.hgetall(worker_key)
    if existing and b"death" not in existing:
        raise RuntimeError(f"a live worker named {name!r} already exists")
    now = now_ts()
    identity: dict[FieldT, EncodableT] = {
        "hostname": socket.gethostname(),
        "pid": os.getpid(),
        "queues": ",".join(queues),
    }
    async with client.pipeline(transaction=True) as pipe:
        pipe.delete(worker_key)
        pipe.hset(
            worker_key,
            mapping={
                **identity,
                "birth": now,
                "last_heartbeat": now,
                "ip_address": "",
                "version": VERSION,
                "python_version": sys.version.split()[0],
                "state": "idle",
            },
        )
        pipe.sadd(keys.WORKERS, worker_key)
        for queue in queues:
            pipe.sadd(keys.workers_on(queue), worker_key)
        pipe.expire(worker_key, worker_key_ttl(heartbeat))
        scheduler_key = keys.scheduler(name)
        pipe.hset(
            scheduler_key,
            mapping={**identity, "name": name, "created_at": now, "last_heartbeat": now},
        )
        pipe.expire(scheduler_key, SCHEDULER_LOCK_SECONDS)
        await pipe.execute()


async def deregister(
    client: Redis, multiplexer: Multiplexer, name: str, queues: Sequence[str]
) -> None:
    """Record the worker's death, leave the worker sets, release its scheduler locks."""
    worker_key = keys.worker(name)
    await _scripts.RELEASE_LOCKS(multiplexer, [], [name, *queues])
    async with client.pipeline(transaction=True) as pipe:
        pipe.srem(keys.WORKERS, worker_key)
        for queue in queues:
            pipe.srem(keys.workers_on(queue), worker_key)
        pipe.hset(worker_key, "death", now_ts())
        pipe.expire(worker_key, 60)
        pipe.delete(keys.worker_executions(name), keys.scheduler(name))
        await pipe.execute()


async def heartbeat(
    multiplexer: Multiplexer, name: str, running: Sequence[Running], heartbeat: float, busy: bool
) -> None:
    """Keep the worker key alive and push every running job's expiry forward."""
    now = time.time()
    args: list[object] = [
        name,
        repr(now),
        epoch_ts(now),
        wip_ttl(heartbeat),
        worker_key_ttl(heartbeat),
        "busy" if busy else "idle",
    ]
    for execution in running:
        args += [execution.job_id, execution.exec_id, execution.origin]
    await _scripts.HEARTBEAT(multiplexer, [], args)


async def sweep(
    multiplexer: Multiplexer, queues: Sequence[str], failure_ttl: int
) -> tuple[int, int]:
    """Rescue the jobs of dead workers on ``queues``; return (requeued, failed)."""
    now = time.time()
    text = f"Moved to FailedJobRegistry, due to AbandonedJobError, at {epoch_ts(now)}"
    args = [repr(now), epoch_ts(now), encode_exc_string(text), failure_ttl, SWEEP_BATCH]
    requeued, failed = await _scripts.SWEEP(multiplexer, [], [*args, *queues])
    return int(requeued), int(failed)


async def schedule(multiplexer: Multiplexer, name: str, queues: Sequence[str]) -> int:
    """One scheduler tick for ``queues``; return how many due jobs it moved."""
    now = time.time()
    args = [name, int(now), epoch_ts(now), SCHEDULER_LOCK_SECONDS, *queues]
    return int(await _scripts.SCHEDULE(multiplexer, [], args))
