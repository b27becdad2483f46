"""Fixtures: a private redis-server for the session, apps wired to it, sync clients.

Set ``AIORQ_TEST_REDIS_URL`` to use a server of your own instead (it is flushed).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
import redis
from quart import Quart

from aiorq_flask import AsyncRQ

from .apps.worker_support import other_db_url
from .redis_server import RedisServer


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer | None]:
    if os.environ.get("AIORQ_TEST_REDIS_URL"):
        yield None
        return
    server = RedisServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer | None) -> Iterator[str]:
    url = os.environ.get("AIORQ_TEST_REDIS_URL") or (redis_server.url if redis_server else "")
    client = redis.Redis.from_url(url)
    client.flushdb()
    client.close()
    yield url


@pytest.fixture
def sync_redis(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def email_redis(redis_url: str) -> Iterator[redis.Redis]:
    """A client on the next database of the test server, where the worker tests' apps keep
    their email queues; flushed before and after the test."""
    client = redis.Redis.from_url(other_db_url(redis_url))
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


@pytest.fixture
def make_quart_app(redis_url: str) -> Callable[..., Quart]:
    """A Quart app configured for the test server; keyword arguments override config."""

    def make(**config: Any) -> Quart:
        app = Quart(__name__)
        app.config.update(RQ_CONNECTION=redis_url, RQ_ASYNC=True)
        app.config.update(config)
        return app

    return make


@pytest.fixture
async def quart_rq(make_quart_app: Callable[..., Quart]) -> AsyncIterator[AsyncRQ]:
    """An AsyncRQ on a Quart app, with its app context pushed for the test."""
    app = make_quart_app(RQ_QUEUES=["high", "default", "low"])
    rq = AsyncRQ(app)
    async with app.app_context():
        yield rq
        await rq.state().pools.aclose()
