"""What the outage cases share: a traced job, a restartable Redis with persistence, a proxy.

- ``traced`` is the job the outage cases run: it records its start and its end (straight to
  a Redis that the fault does not touch), so a test sees which jobs ran twice.
- ``PersistentRedis`` is a private ``redis-server`` with an append-only file that a test
  SIGKILLs and starts again on the same port and directory.
- ``Proxy`` is a small asyncio TCP proxy, run on its own thread, that a test cuts (every
  connection closed, new ones refused) and then stalls (bytes dropped, no FIN).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import signal
import subprocess
import threading
import time
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import redis
import redis.asyncio

from ..redis_server import free_port, redis_program

STARTS = "starts"  # suffixes of the trace lists: <key>:starts, <key>:ends
ENDS = "ends"


# -- the traced job ------------------------------------------------------------------------------


async def traced(url: str, key: str, label: str, seconds: float) -> str:
    """RPUSH ``label`` to ``<key>:starts``, sleep ``seconds``, RPUSH it to ``<key>:ends``."""
    async with redis.asyncio.Redis.from_url(url) as client:
        await client.rpush(f"{key}:{STARTS}", label)
        await asyncio.sleep(seconds)  # job body
        await client.rpush(f"{key}:{ENDS}", label)
    return label


@dataclass(frozen=True)
class Trace:
    """What the traced jobs wrote: how many times each label started and ended."""

    starts: dict[str, int] = field(default_factory=dict)
    ends: dict[str, int] = field(default_factory=dict)

    @classmethod
    def read(cls, client: redis.Redis, key: str) -> Trace:
        return cls(
            _counts(client.lrange(f"{key}:{STARTS}", 0, -1)),
            _counts(client.lrange(f"{key}:{ENDS}", 0, -1)),
        )

    @property
    def started(self) -> int:
        return sum(self.starts.values())

    @property
    def ended(self) -> int:
        return sum(self.ends.values())

    def started_twice(self) -> list[str]:
        """Labels that started more than once."""
        return sorted(label for label, count in self.starts.items() if count > 1)


def _counts(raw: Sequence[bytes]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for value in raw:
        label = value.decode()
        counts[label] = counts.get(label, 0) + 1
    return counts


def traced_calls(
    trace_url: str, key: str, count: int, durations: Sequence[float]
) -> list[tuple[str, str, str, float]]:
    """Arguments of ``count`` traced jobs, labelled ``j00``... and lasting ``durations`` in
    turn."""
    return [(trace_url, key, f"j{i:02d}", durations[i % len(durations)]) for i in range(count)]


# -- a Redis that is killed and comes back -------------------------------------------------------


class PersistentRedis:
    """A private ``redis-server`` on a free port, its data in an append-only file in
    ``directory``; ``kill`` SIGKILLs it and ``start`` brings it back on the same port and
    directory, with what it had written to the file."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def argv(self) -> list[str]:
        return [
            redis_program(),
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.dir),
            "--save",
            "",
            "--appendonly",
            "yes",
            # Every write reaches the file before Redis replies: a SIGKILL then loses nothing
            # that a client was told had happened, so what these tests exercise is the
            # worker's recovery, not Redis's one-second fsync window.
            "--appendfsync",
            "always",
        ]

    def start(self, timeout: float = 10.0) -> None:
        """Start the server and return once it answers PING (its file loaded)."""
        with open(self.dir / "redis-server.log", "ab") as log:
            self.process = subprocess.Popen(
                self.argv(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        client = redis.Redis.from_url(self.url)
        deadline = time.monotonic() + timeout
        try:
            while True:
                try:
                    client.ping()
                    return
                except redis.ConnectionError:  # refused, or BusyLoadingError while loading
                    if time.monotonic() > deadline or self.process.poll() is not None:
                        raise RuntimeError(
                            f"redis-server did not start on port {self.port}"
                        ) from None
                    time.sleep(0.02)  # polling the server's start-up, with a deadline
        finally:
            client.close()

    def kill(self) -> None:
        """SIGKILL: no shutdown, no final write; the port is free again once this returns."""
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)
            self.process = None

    def __enter__(self) -> PersistentRedis:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.kill()


# -- a network that fails --------------------------------------------------------------------


@dataclass(eq=False)
class _Link:
    """One client connection through the proxy and its connection to the target."""

    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    broken: bool = False  # lost bytes in a stall: stays silent until its client leaves

    def close(self) -> None:
        for writer in (self.client, self.upstream):
            writer.close()
        for task in self.tasks:
            task.cancel()


class Proxy:
    """A TCP proxy from ``127.0.0.1:<port>`` to a Redis, on an event loop of its own thread.

    Normally bytes flow both ways. ``outage(cut, stall)`` then breaks the network in two
    steps:

    - **cut**: every connection is closed and the listening socket with it, so new
      connections are refused;
    - **stall**: connections are accepted (and connected to Redis) again, but every byte
      either side sends is dropped, and nothing tells either side (no FIN, no RST).

    A connection that lost bytes cannot carry a consistent stream again, so it stays silent
    (a half-open connection) until its client gives up and closes it; only then does the
    proxy close its Redis side. Connections that lost nothing, and new ones, carry traffic
    again once the stall ends.
    """

    def __init__(self, target_url: str) -> None:
        target = urlsplit(target_url)
        self.target_host = target.hostname or "127.0.0.1"
        self.target_port = target.port or 6379
        self.port = free_port()
        self.url = urlunsplit(target._replace(netloc=f"127.0.0.1:{self.port}"))
        self.flowing_again_at: float | None = None  # time.monotonic() when a stall ended
        self._stalled = False
        self._links: set[_Link] = set()
        self._server: asyncio.Server | None = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="proxy", daemon=True)

    def start(self) -> Proxy:
        self._thread.start()
        self._run(self._listen()).result(10)
        return self

    def close(self) -> None:
        if self._thread.is_alive():
            self._run(self._shutdown()).result(10)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
        self._loop.close()

    def __enter__(self) -> Proxy:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def outage(self, cut: float, stall: float) -> concurrent.futures.Future[None]:
        """Cut every connection for ``cut`` seconds, then stall for ``stall`` seconds, then
        let traffic flow; the future is done when it flows again."""
        return self._run(self._outage(cut, stall))

    def _run(self, coroutine: Coroutine[Any, Any, None]) -> concurrent.futures.Future[None]:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop)

    async def _outage(self, cut: float, stall: float) -> None:
        await self._close()
        await asyncio.sleep(cut)  # the length of the cut: the fault itself
        self._stalled = True
        await self._listen()
        await asyncio.sleep(stall)  # the length of the stall: the fault itself
        self._stalled = False
        self.flowing_again_at = time.monotonic()

    async def _shutdown(self) -> None:
        """Close everything, an outage still in progress included."""
        await self._close()
        others = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(
            self._accept, "127.0.0.1", self.port, reuse_address=True
        )

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()  # no more accepts: connecting is refused
            self._server = None
        links, self._links = self._links, set()
        for link in links:
            link.close()
        await asyncio.gather(
            *(task for link in links for task in link.tasks), return_exceptions=True
        )

    async def _accept(
        self, client_reader: asyncio.StreamReader, client: asyncio.StreamWriter
    ) -> None:
        try:
            upstream_reader, upstream = await asyncio.open_connection(
                self.target_host, self.target_port
            )
        except OSError:
            client.transport.abort()
            return
        link = _Link(client, upstream)
        if self._server is None:  # cut while this connection was being made
            link.close()
            return
        self._links.add(link)
        link.tasks = [
            asyncio.create_task(self._pump(link, client_reader, upstream, from_client=True)),
            asyncio.create_task(self._pump(link, upstream_reader, client, from_client=False)),
        ]

    async def _pump(
        self,
        link: _Link,
        source: asyncio.StreamReader,
        sink: asyncio.StreamWriter,
        *,
        from_client: bool,
    ) -> None:
        try:
            while data := await source.read(65536):
                if self._stalled or link.broken:
                    link.broken = True  # dropped: this stream can never be whole again
                    continue
                sink.write(data)
                await sink.drain()
        except (ConnectionError, OSError):
            pass
        # The source closed. The client leaving always ends the link; Redis leaving is
        # passed on only while the link still carries traffic (a stall sends no FIN).
        if from_client or not (self._stalled or link.broken):
            link.close()
            self._links.discard(link)
        else:
            link.broken = True
