"""Job functions for the worker tests.

Each one leaves a trace in Redis (the URL is an argument), so a test sees from outside in
which order jobs ran, whether they overlapped and whether any ran twice. Importable as
``tests.worker_jobs.*`` by our worker and by stock rq workers started with cwd=/work/main.
"""

from __future__ import annotations

import asyncio
import threading
import time

import redis
import redis.asyncio

from .tasks import app_name

_clients: dict[str, redis.Redis] = {}
_clients_lock = threading.Lock()


def _client(url: str) -> redis.Redis:
    """One sync client per URL for the whole process (redis-py clients are thread-safe)."""
    with _clients_lock:
        client = _clients.get(url)
        if client is None:
            client = _clients[url] = redis.Redis.from_url(url)
        return client


def record(url: str, key: str, value: str) -> str:
    """RPUSH ``value`` to the list ``key``: the list shows order and duplicates."""
    _client(url).rpush(key, value)
    return value


async def async_record(url: str, key: str, value: str, seconds: float = 0.0) -> str:
    """Sleep ``seconds``, then RPUSH ``value`` to ``key``."""
    if seconds:
        await asyncio.sleep(seconds)  # job body
    async with redis.asyncio.Redis.from_url(url) as client:
        await client.rpush(key, value)
    return value


def rendezvous(url: str, key: str, parties: int, timeout: float = 10.0) -> list[str]:
    """Return only once ``parties`` jobs are inside this function at the same time.

    Jobs run one after another never meet: the first raises ``TimeoutError``. Returns the
    thread's name and the current app's name.
    """
    client = _client(url)
    client.incr(key)
    deadline = time.monotonic() + timeout
    while int(client.get(key) or 0) < parties:
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {client.get(key)!r} of {parties} jobs ran at once")
        time.sleep(0.01)  # job body
    return [threading.current_thread().name, app_name()]


def fail_once(url: str, key: str) -> int:
    """INCR ``key``; the first attempt raises, later ones return the attempt number."""
    attempt = int(_client(url).incr(key))
    if attempt == 1:
        raise RuntimeError("first attempt fails on purpose")
    return attempt


async def count_overlap(url: str, key: str, seconds: float) -> int:
    """Track how many of these jobs run at once: ``<key>:now`` while running, the highest
    count in ``<key>:peak``."""
    async with redis.asyncio.Redis.from_url(url) as client:
        now = await client.incr(f"{key}:now")
        await client.eval(
            "if tonumber(redis.call('GET', KEYS[1]) or 0) < tonumber(ARGV[1]) then "
            "redis.call('SET', KEYS[1], ARGV[1]) end",
            1,
            f"{key}:peak",
            now,
        )
        await asyncio.sleep(seconds)  # job body
        await client.decr(f"{key}:now")
    return int(now)
