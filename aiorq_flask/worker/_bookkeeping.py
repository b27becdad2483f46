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
from collections.abc import Mapping, Sequence
from typing import Protocol

from redis.asyncio import Redis
from redis.typing import EncodableT, FieldT

from .. import _scripts, keys
from .._multiplexer import Multiplexer
from .._scripts import Beat, Swept
from ..execution import encode_exc_string
from ..job import epoch_ts, now_ts

VERSION = "0.1.0"
SCHEDULER_LOCK_SECONDS = 61  # rq's: a lock outlives a missed tick or two
SWEEP_BATCH = 100  # wip members rescued per queue and pass


class Held(Protocol):
    """What a heartbeat needs to know of an execution the worker holds."""

    raw_id: bytes
    exec_id: str
    origin: bytes
    ended: bool


def wip_ttl(heartbeat: float) -> int:
    """Seconds a running job's ``rq:wip`` score stays ahead of now. Heartbeats renew it
    every half ``heartbeat``, so a live worker keeps a whole heartbeat spare; a dead
    worker's jobs are rescued once its registration has expired too (three heartbeats)."""
    return math.ceil(heartbeat * 1.5)


def worker_key_ttl(heartbeat: float) -> int:
    """A dead worker drops out of ``rq info`` three missed heartbeats after its last."""
    return math.ceil(heartbeat * 3)


class NameTaken(RuntimeError):
    """A live worker (registered, no ``death``) already has this name."""


def registration(name: str, queues: Sequence[str], birth: str) -> dict[FieldT, EncodableT]:
    """rq's worker hash fields (spec §2.2): written at start, and again by a heartbeat
    that finds the hash gone (expired in an outage, or Redis lost its data)."""
    return {
        "birth": birth,
        "queues": ",".join(queues),
        "pid": str(os.getpid()),
        "hostname": socket.gethostname(),
        "ip_address": "",
        "version": VERSION,
        "python_version": sys.version.split()[0],
    }


async def register(
    client: Redis,
    name: str,
    queues: Sequence[str],
    heartbeat: float,
    fields: Mapping[FieldT, EncodableT],
) -> None:
    """Write ``rq:worker:<name>`` and add it to ``rq:workers`` and each ``rq:workers:<q>``.

    Raises ``NameTaken`` if a live worker already has that name (rq refuses it too). The
    executions set of an earlier worker of that name is dropped: that worker is dead, and
    its jobs are now the sweep's to rescue.
    """
    worker_key = keys.worker(name)
    existing = await client.hgetall(worker_key)
    if existing and b"death" not in existing:
        raise NameTaken(f"a live worker named {name!r} is registered")
    now = fields["birth"]
    async with client.pipeline(transaction=True) as pipe:
        pipe.delete(worker_key, keys.worker_executions(name))
        pipe.hset(worker_key, mapping={**fields, "last_heartbeat": now, "state": "idle"})
        pipe.sadd(keys.WORKERS, worker_key)
        for queue in queues:
            pipe.sadd(keys.workers_on(queue), worker_key)
        pipe.expire(worker_key, worker_key_ttl(heartbeat))
        scheduler_key = keys.scheduler(name)
        pipe.hset(
            scheduler_key,
            mapping={
                "name": name,
                "hostname": fields["hostname"],
                "pid": fields["pid"],
                "queues": fields["queues"],
                "created_at": now,
                "last_heartbeat": now,
            },
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
    multiplexer: Multiplexer,
    name: str,
    fields: Mapping[FieldT, EncodableT],
    queues: Sequence[str],
    held: Sequence[Held],
    heartbeat: float,
) -> Beat:
    """Keep the worker's registration and every held execution's booking alive.

    Must not run while a claim is in flight: the executions it holds are what tells the
    script which booked executions came from a claim whose reply was lost.
    """
    now = time.time()
    args: list[object] = [
        name,
        repr(now),
        epoch_ts(now),
        wip_ttl(heartbeat),
        worker_key_ttl(heartbeat),
        "busy" if held else "idle",
        len(fields),
        *(item for pair in fields.items() for item in pair),
        len(queues),
        *queues,
    ]
    for execution in held:
        state = "ended" if execution.ended else "running"
        args += [execution.raw_id, execution.exec_id, execution.origin, state]
    return Beat._make(await _scripts.HEARTBEAT(multiplexer, [], args))


async def sweep(multiplexer: Multiplexer, queues: Sequence[str], failure_ttl: int) -> Swept:
    """Rescue the jobs of dead workers on ``queues``."""
    now = time.time()
    text = f"Moved to FailedJobRegistry, due to AbandonedJobError, at {epoch_ts(now)}"
    args = [repr(now), epoch_ts(now), encode_exc_string(text), failure_ttl, SWEEP_BATCH]
    return Swept._make(await _scripts.SWEEP(multiplexer, [], [*args, *queues]))


async def schedule(multiplexer: Multiplexer, name: str, queues: Sequence[str]) -> int:
    """One scheduler tick for ``queues``; return how many due jobs it moved."""
    now = time.time()
    args = [name, int(now), epoch_ts(now), SCHEDULER_LOCK_SECONDS, *queues]
    return int(await _scripts.SCHEDULE(multiplexer, [], args))
