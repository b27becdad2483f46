"""Counting a server's connections by client name, from Redis ``CLIENT LIST``.

Tests give the connections under test a client name (``named``), then count them
(``connections_named``), wait for a count (``wait_for_connections``), record the highest
counts seen while something runs (``ConnectionSampler``) or find one blocked in ``WAIT``
(``blocked_in_wait``).
"""

from __future__ import annotations

import threading
import time
from typing import Any

import redis
from redis.connection import parse_url


def named(redis_url: str, client_name: str, **options: Any) -> dict[str, Any]:
    """The dict form of ``redis_url`` whose connections show as ``client_name`` in CLIENT LIST."""
    options = {**parse_url(redis_url), **options}  # type: ignore[no-untyped-call]
    return {**options, "client_name": client_name}


def connections_named(client: redis.Redis, name: str) -> int:
    return sum(1 for c in client.client_list() if c.get("name") == name)


def blocked_in_wait(client: redis.Redis, name: str | None = None) -> int | None:
    """The id of a connection blocked in ``WAIT`` (named ``name``, if given), or None."""
    for entry in client.client_list():
        if entry.get("cmd") == "wait" and name in (None, entry.get("name")):
            return int(entry["id"])
    return None


def wait_for_connections(
    client: redis.Redis, name: str, expected: int, timeout: float = 5.0
) -> int:
    """Poll CLIENT LIST until ``expected`` connections carry ``name`` or ``timeout`` seconds
    pass; return the last count (the caller asserts it)."""
    deadline = time.monotonic() + timeout
    while True:
        count = connections_named(client, name)
        if count == expected or time.monotonic() > deadline:
            return count
        time.sleep(0.01)  # polling CLIENT LIST, with a deadline


class ConnectionSampler:
    """Samples CLIENT LIST from a thread while the ``with`` block runs; keeps the highest
    count per name (``highest[name]``) and of all ``names`` together (``highest_total``)."""

    def __init__(self, redis_url: str, *names: str, interval: float = 0.005) -> None:
        self.redis_url = redis_url
        self.names = names
        self.interval = interval
        self.highest = dict.fromkeys(names, 0)
        self.highest_total = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> ConnectionSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        with redis.Redis.from_url(self.redis_url) as client:
            while not self._stop.is_set():
                names = [c.get("name") for c in client.client_list()]
                counts = {name: names.count(name) for name in self.names}
                for name, count in counts.items():
                    self.highest[name] = max(self.highest[name], count)
                self.highest_total = max(self.highest_total, sum(counts.values()))
                self.samples += 1
                self._stop.wait(self.interval)
