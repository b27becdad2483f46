"""rq 3.0's ``RQ_KEY_PREFIX``: with it set, our writer, our worker, a stock rq 3.0 writer and
a stock rq 3.0 worker share one keyspace under that prefix, and nothing is written under
``rq:``.

The prefix is read from the environment when ``aiorq_flask.keys`` (or ``rq``) is first
imported, so every side runs in a process of its own with the variable set.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import redis

from .apps.worker_support import APP, BIN, ROOT, SERIALIZER, Process, worker_env

PREFIX = "myapp"

ENQUEUE_OURS = """
import asyncio, json, sys
from quart import Quart
from aiorq_flask import AsyncRQ

async def main():
    app = Quart("prefix")
    app.config.update(RQ_CONNECTION=sys.argv[1], RQ_ASYNC=True)
    state = AsyncRQ(app).state(app)
    jobs = [await state.get_queue("default").enqueue("tests.tasks.add", i, 1) for i in (1, 2)]
    await state.pools.aclose()
    print(json.dumps([job.id for job in jobs]))

asyncio.run(main())
"""

ENQUEUE_STOCK = """
import json, sys
from redis import Redis
from rq import Queue
from aiorq_flask.serializer import MsgpackSerializer

queue = Queue(connection=Redis.from_url(sys.argv[1]), serializer=MsgpackSerializer)
print(json.dumps([queue.enqueue("tests.tasks.add", i, 10).id for i in (3, 4)]))
"""


def run(code: str, redis_url: str) -> list[str]:
    env = {**os.environ, "RQ_KEY_PREFIX": PREFIX}
    done = subprocess.run(
        [sys.executable, "-c", code, redis_url],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    ids: list[str] = json.loads(done.stdout)
    return ids


def burst(argv: list[str], redis_url: str, log: Path) -> None:
    env = {**worker_env(redis_url), "RQ_KEY_PREFIX": PREFIX}
    with Process(argv, env, log) as worker:
        assert worker.wait(60) == 0, worker.output()


def test_our_side_and_stock_rq_share_jobs_under_rq_key_prefix(
    tmp_path: Path, redis_url: str, sync_redis: redis.Redis
) -> None:
    run_by_ours = run(ENQUEUE_OURS, redis_url) + run(ENQUEUE_STOCK, redis_url)
    burst(
        [sys.executable, "-m", "aiorq_flask.worker", "--app", APP, "--burst"],
        redis_url,
        tmp_path / "ours.log",
    )
    run_by_stock = run(ENQUEUE_OURS, redis_url)
    stock = [str(BIN / "rq"), "worker", "--burst", "--url", redis_url, "--serializer"]
    burst([*stock, SERIALIZER, "-w", "rq.worker.SimpleWorker"], redis_url, tmp_path / "rq.log")

    for job_id in run_by_ours + run_by_stock:
        assert sync_redis.hget(f"{PREFIX}:job:{job_id}", "status") == b"finished", job_id
    written = [key.decode() for key in sync_redis.scan_iter()]
    assert written and all(key.startswith(f"{PREFIX}:") for key in written), written
