"""The worker refuses a Redis older than 6.2 (no ``LPOP`` with a count, no ``BLMOVE``).

No such server can be installed here, so an older one is stood in for by the real test
server behind a proxy that changes one thing: the version ``HELLO`` reports.
"""

from __future__ import annotations

import contextlib
import re
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
import redis

from aiorq_flask.worker._server_version import check_server, hello_fields, parse

from .apps.worker_support import APP, ROOT, worker_env

HELLO_VERSION = re.compile(rb"(\$7\r\nversion\r\n)\$\d+\r\n[^\r]*\r\n")


class VersionProxy:
    """A TCP proxy to a real Redis whose replies name ``version`` in place of its own."""

    def __init__(self, target_url: str, version: str) -> None:
        target = urlsplit(target_url)
        self.target = (target.hostname or "127.0.0.1", target.port or 6379)
        self.version = version.encode()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = target._replace(netloc=f"127.0.0.1:{self.listener.getsockname()[1]}").geturl()
        self.sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, name="version-proxy", daemon=True).start()

    def close(self) -> None:
        for sock in [self.listener, *self.sockets]:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked on it
            sock.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:  # closed: the test is over
                return
            upstream = socket.create_connection(self.target)
            self.sockets += [client, upstream]
            for source, sink, rewrite in ((client, upstream, False), (upstream, client, True)):
                pipe = threading.Thread(target=self._pipe, args=(source, sink, rewrite))
                pipe.daemon = True
                pipe.start()

    def _pipe(self, source: socket.socket, sink: socket.socket, rewrite: bool) -> None:
        replacement = rb"\g<1>$%d\r\n%s\r\n" % (len(self.version), self.version)
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(HELLO_VERSION.sub(replacement, data) if rewrite else data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)


@pytest.fixture
def old_redis_url(redis_url: str) -> Iterator[str]:
    proxy = VersionProxy(redis_url, "6.0.16")
    yield proxy.url
    proxy.close()


def test_versions_compare_by_their_numbers() -> None:
    assert parse("6.2.14") == (6, 2, 14) > (6, 2)
    assert parse("6.0.16") < (6, 2)  # type: ignore[operator]
    assert parse("10.0.0") > (6, 2)  # type: ignore[operator]
    assert parse("7.4.0-rc1") == (7, 4, 0)
    assert parse("unknown") is None


def test_hello_fields_read_a_resp2_list_and_a_resp3_map_alike() -> None:
    resp2 = [b"server", b"redis", b"version", b"6.2.14", b"proto", 2, b"modules", []]
    resp3 = {b"server": b"redis", b"version": b"6.2.14", b"proto": 3, b"modules": []}

    assert hello_fields(resp2)["version"] == hello_fields(resp3)["version"] == "6.2.14"


@pytest.mark.parametrize("protocol", [2, 3])
async def test_the_test_server_passes_the_check(redis_url: str, protocol: int) -> None:
    client = redis.asyncio.Redis.from_url(redis_url, protocol=protocol)
    try:
        await check_server(client, "default")
    finally:
        await client.aclose()


def test_the_worker_refuses_an_older_server_with_one_line_and_exit_status_2(
    old_redis_url: str, sync_redis: redis.Redis
) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "aiorq_flask.worker", "--app", APP, "--burst"],
        cwd=ROOT,
        env=worker_env(old_redis_url),
        capture_output=True,
        text=True,
        timeout=30,
    )

    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines() == [
        "error: connection 'default' is Redis 6.0.16, older than 6.2, the oldest aiorq_flask "
        "supports (it needs LPOP with a count and BLMOVE): upgrade the server"
    ]
    assert sync_redis.smembers("rq:workers") == set()  # it never registered
