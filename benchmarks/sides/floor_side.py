"""The floor: what one enqueue costs when Python does nothing but the Redis round trip.

Runs in the suite's interpreter on its redis-py (``redis.asyncio``), one connection,
10,000 sequential MULTI/EXEC transactions each holding what an RQ-format enqueue writes:
HSET of a 15-field job hash, SADD of the queue to the queue set, RPUSH of the id. No
library code runs, so no enqueue built on one MULTI/EXEC can beat it. (An enqueue that is
a single EVALSHA can: one reply to parse instead of five.)
"""

from __future__ import annotations

import argparse
import time
import uuid
from datetime import datetime, timezone

import _common
import redis
import redis.asyncio

# The shape of an rq 3.0 job hash for a no-op: 15 fields, a ~60-byte msgpack payload.
_STATIC_FIELDS = {
    "data": b"\x94\xb8benchmarks.tasks.noop\xc0\x90\x80" + bytes(30),
    "origin": "default",
    "description": "benchmarks.tasks.noop()",
    "timeout": "180",
    "result_ttl": "500",
    "status": "queued",
    "meta": b"\x80",
    "serializer": "msgpack",
    "group_id": "",
    "worker_name": "",
    "last_heartbeat": "",
    "started_at": "",
}


def _job_hash(now: str) -> dict[str, object]:
    return {**_STATIC_FIELDS, "created_at": now, "enqueued_at": now, "ended_at": ""}


async def floor(args: argparse.Namespace) -> dict[str, object]:
    client = redis.asyncio.Redis.from_url(args.redis_url, single_connection_client=True)

    async def one() -> None:
        job_id = uuid.uuid4().hex
        now = datetime.now(timezone.utc).isoformat()
        pipe = client.pipeline(transaction=True)
        pipe.hset(f"rq:job:{job_id}", mapping=_job_hash(now))  # type: ignore[arg-type]
        pipe.sadd("rq:queues", "rq:queue:default")
        pipe.rpush("rq:queue:default", job_id)
        await pipe.execute()

    for _ in range(_common.ENQUEUE_WARMUP):
        await one()
    start = time.perf_counter()
    for _ in range(args.n):
        await one()
    seconds = time.perf_counter() - start
    await client.aclose()
    return {"n": args.n, "seconds": seconds, "redis_py": redis.__version__}


if __name__ == "__main__":
    _common.run({"floor": floor})
