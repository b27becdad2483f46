"""What ``info`` and ``health`` read of one connection: its queues' counts by state and
the workers registered there, as rq records them (spec §2, §2.2).

Counts come from ``Queue`` and ``registries``; workers from ``rq:workers`` and each
worker's hash, read straight (one pipeline), so stock rq workers show up too.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis

from .. import keys
from .._config import ConnectionSpec, _redacted
from ..job import parse_ts
from ..queue import Queue
from ..registries import REGISTRIES

# The states a queue's jobs are counted by, in the order ``info`` shows them: waiting in
# the queue, then each registry.
STATES = (
    "queued",
    *(registry.__name__.removesuffix("JobRegistry").lower() for registry in REGISTRIES),
)


@dataclass(frozen=True)
class QueueStatus:
    name: str
    counts: dict[str, int]  # by ``STATES``
    configured: bool = True  # False: found in ``rq:queues`` but not in the app's config


@dataclass(frozen=True)
class WorkerStatus:
    name: str
    state: str
    queues: tuple[str, ...]
    current_jobs: tuple[str, ...]
    heartbeat_age: float | None  # seconds since its last heartbeat; None: never recorded
    successful: int
    failed: int
    hostname: str = ""
    pid: str = ""


@dataclass(frozen=True)
class ConnectionStatus:
    name: str
    where: str
    suspended: bool
    queues: list[QueueStatus] = field(default_factory=list)
    workers: list[WorkerStatus] = field(default_factory=list)


def where(spec: ConnectionSpec) -> str:
    """The server a connection reaches, for people: its URL or options, never a password."""
    if spec.url is not None:
        return str(_redacted(spec.url))
    options = spec.options or {}
    if spec.sentinels is not None:
        return f"sentinel service {spec.sentinels.service_name!r}, db {options.get('db', 0)}"
    if "path" in options:
        return f"unix://{options['path']}?db={options.get('db', 0)}"
    host, port = options.get("host", "localhost"), options.get("port", 6379)
    return f"{host}:{port}/{options.get('db', 0)}"


async def queue_counts(queue: Queue) -> dict[str, int]:
    """How many of ``queue``'s jobs are in each of ``STATES``."""
    counts = {"queued": await queue.count()}
    for state, registry in zip(STATES[1:], REGISTRIES, strict=True):
        counts[state] = await registry(queue).count()
    return counts


async def extra_queue_names(client: Redis, configured: Sequence[str]) -> list[str]:
    """Queues ``rq:queues`` lists on this connection that the app does not configure."""
    prefix = keys.queue("")
    members: set[bytes] = await client.smembers(keys.QUEUES)  # type: ignore[assignment]
    names = {m.decode(errors="replace").removeprefix(prefix) for m in members}
    return sorted(names - set(configured))


async def workers(client: Redis, queue_names: Sequence[str]) -> list[WorkerStatus]:
    """The live registrations in ``rq:workers`` that serve any of ``queue_names``, newest
    heartbeat first (a stopped worker leaves the set; a killed one stays until its hash
    expires)."""
    worker_keys: set[bytes] = await client.smembers(keys.WORKERS)  # type: ignore[assignment]
    names = sorted(k.decode(errors="replace").removeprefix(keys.worker("")) for k in worker_keys)
    async with client.pipeline(transaction=False) as pipe:
        for name in names:
            pipe.hgetall(keys.worker(name))
            pipe.smembers(keys.worker_executions(name))
        replies = await pipe.execute()
    now = time.time()
    found = []
    for name, fields, executions in zip(names, replies[::2], replies[1::2], strict=True):
        status = _worker_status(name, fields, executions, now)
        if status is not None and set(status.queues) & set(queue_names):
            found.append(status)
    return sorted(found, key=lambda w: (w.heartbeat_age is None, w.heartbeat_age or 0.0))


def _worker_status(
    name: str, fields: Mapping[bytes, bytes], executions: set[bytes], now: float
) -> WorkerStatus | None:
    """A worker hash read as rq writes it; None if it is gone or records a death."""
    if not fields or b"death" in fields:
        return None
    text = {k.decode(errors="replace"): v.decode(errors="replace") for k, v in fields.items()}
    try:
        beat = parse_ts(text.get("last_heartbeat"))
    except ValueError:
        beat = None
    jobs = sorted({m.decode(errors="replace").rpartition(":")[0] for m in executions})
    if not jobs and text.get("current_job") and text.get("state") == "busy":
        jobs = [text["current_job"]]  # a stock rq worker books only this
    return WorkerStatus(
        name=name,
        state=text.get("state", "?"),
        queues=tuple(q for q in text.get("queues", "").split(",") if q),
        current_jobs=tuple(jobs),
        heartbeat_age=None if beat is None else max(0.0, now - beat.timestamp()),
        successful=_int(text.get("successful_job_count")),
        failed=_int(text.get("failed_job_count")),
        hostname=text.get("hostname", ""),
        pid=text.get("pid", ""),
    )


def _int(value: Any) -> int:
    try:
        return int(value or 0)
    except ValueError:
        return 0
