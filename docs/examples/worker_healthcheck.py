"""Exit 0 while the named worker is alive: registered, with a recent heartbeat.

    python worker_healthcheck.py redis://localhost:6379/0 web-1 [max_age_seconds]

For a container HEALTHCHECK or a Kubernetes liveness probe; start the worker with
``--name`` so the probe knows which one to look for.
"""

from __future__ import annotations

import sys
import time

import redis

from aiorq_flask import keys
from aiorq_flask.job import parse_ts


def alive(url: str, name: str, max_age: float = 30.0) -> bool:
    client = redis.Redis.from_url(url, socket_timeout=5)
    try:
        raw = client.hmget(keys.worker(name), ["last_heartbeat", "death"])
    finally:
        client.close()
    last_heartbeat, death = raw
    if not last_heartbeat or death:
        return False
    beat = parse_ts(last_heartbeat)
    return beat is not None and time.time() - beat.timestamp() < max_age


if __name__ == "__main__":
    max_age = float(sys.argv[3]) if len(sys.argv) > 3 else 30.0
    sys.exit(0 if alive(sys.argv[1], sys.argv[2], max_age) else 1)
