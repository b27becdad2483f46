"""A throwaway redis-server for one suite run: a free port, no persistence, stopped after.

The suite never touches a Redis it did not start (in particular not one on 6379).
"""

from __future__ import annotations

import shutil
import socket
import statistics
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager

import redis


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_version() -> str:
    """The ``redis-server`` version on PATH, e.g. ``7.0.15``."""
    out = subprocess.run(["redis-server", "--version"], capture_output=True, text=True, check=True)
    return next(w[2:] for w in out.stdout.split() if w.startswith("v="))


@contextmanager
def redis_server() -> Iterator[str]:
    """Start a private redis-server and yield its URL; always stop it on the way out.

    Raises RuntimeError if ``redis-server`` is missing or does not answer within 10 s.
    """
    executable = shutil.which("redis-server")
    if executable is None:
        raise RuntimeError("redis-server is not on PATH (apt-get install redis-server)")
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    with tempfile.TemporaryDirectory(prefix="aiorq-bench-redis-") as workdir:
        process = subprocess.Popen(
            [
                executable,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                workdir,
            ],
            stdout=subprocess.DEVNULL,
            start_new_session=True,  # a Ctrl-C in the terminal must not kill it mid-cleanup
        )
        try:
            _wait_for_ping(url, process)
            yield url
        finally:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _wait_for_ping(url: str, process: subprocess.Popen[bytes]) -> None:
    client = redis.Redis.from_url(url)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            client.close()
            return
        except redis.ConnectionError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server on {url} did not start") from None
            time.sleep(0.05)


def round_trip_ms(url: str, pings: int = 200) -> float:
    """Median PING round trip from redis-py, in ms: the unit every other number is made of."""
    client = redis.Redis.from_url(url)
    client.ping()
    samples = []
    for _ in range(pings):
        start = time.perf_counter()
        client.ping()
        samples.append(time.perf_counter() - start)
    client.close()
    return statistics.median(samples) * 1000


def flush(url: str) -> None:
    """Empty every database, so each run starts from nothing."""
    client = redis.Redis.from_url(url)
    client.flushall()
    client.close()
