"""Apps served over HTTP: Flask async views (test client and a threaded server) and Quart on
hypercorn. Each app counts hits in Redis through ``rq.queue.connection``; connections carry a
client name so CLIENT LIST shows exactly the app's own.

Warnings are errors in this test session, in every thread: a warning on the server side
turns into a 500 or a logged error, which these tests assert never happens.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import threading
import time
import weakref
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
import redis
from flask import Flask
from hypercorn.asyncio import serve
from hypercorn.config import Config
from quart import Quart
from werkzeug.serving import make_server

from aiorq_flask import AsyncRQ

from .client_list import ConnectionSampler, connections_named, named, wait_for_connections
from .redis_server import free_port

LOOP_PROBLEMS = ("attached to a different loop", "Event loop is closed", "Unclosed")
QUART_MAX_CONNECTIONS = 5
# Plain HTTP to 127.0.0.1: ignore proxy settings, and skip building a TLS context, which
# costs ~0.2 s of CPU per client and would serialise 20 client threads on the GIL.
PLAIN_HTTP: dict[str, Any] = {"trust_env": False, "verify": False}


def connection_ids(sync_redis: redis.Redis, client_name: str) -> set[str]:
    return {c["id"] for c in sync_redis.client_list() if c.get("name") == client_name}


def problems(caplog: pytest.LogCaptureFixture) -> list[str]:
    """Log records (from any thread) that are warnings or worse or that name a loop problem."""
    found = []
    for record in caplog.records:
        text = record.getMessage() + (record.exc_text or "")
        if record.levelno >= logging.WARNING or any(p in text for p in LOOP_PROBLEMS):
            found.append(f"{record.name} {record.levelname}: {text}")
    return found


# -- Flask ---------------------------------------------------------------------------------


def make_flask_app(redis_url: str, client_name: str) -> Flask:
    app = Flask("flask_e2e")
    app.config.update(RQ_CONNECTION=named(redis_url, client_name), RQ_ASYNC=True)
    rq = AsyncRQ(app)

    @app.get("/hit")
    async def hit() -> dict[str, int]:
        return {"hits": await rq.queue.connection.incr("hits")}

    return app


@pytest.fixture
def flask_app(redis_url: str) -> Flask:
    return make_flask_app(redis_url, "flask-e2e")


@pytest.fixture
def flask_server(flask_app: Flask) -> Iterator[str]:
    """``flask_app`` on a threaded werkzeug server on a free port; yields its base URL."""
    server = make_server("127.0.0.1", 0, flask_app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def hit_concurrently(base_url: str, clients: int, requests_each: int) -> list[int]:
    """GET /hit from ``clients`` threads, each with its own HTTP client; the status codes."""

    def one_client() -> list[int]:
        with httpx.Client(base_url=base_url, **PLAIN_HTTP, timeout=30) as client:
            return [client.get("/hit").status_code for _ in range(requests_each)]

    with ThreadPoolExecutor(max_workers=clients) as pool:
        futures = [pool.submit(one_client) for _ in range(clients)]
        return [status for future in futures for status in future.result()]


def test_flask_async_view_serves_200_sequential_test_client_requests(
    flask_app: Flask, sync_redis: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    client = flask_app.test_client()

    statuses = [client.get("/hit").status_code for _ in range(200)]
    gc.collect()  # a client left for the garbage collector would warn here

    assert statuses == [200] * 200
    assert sync_redis.get("hits") == b"200"
    assert problems(caplog) == []


def test_flask_test_client_requests_leave_no_connection_open(
    flask_app: Flask, sync_redis: redis.Redis
) -> None:
    client = flask_app.test_client()

    for _ in range(50):
        assert client.get("/hit").status_code == 200

    assert wait_for_connections(sync_redis, "flask-e2e", 0) == 0


def test_flask_requests_do_not_keep_their_event_loops_alive(redis_url: str) -> None:
    app = Flask("flask_loops")
    app.config.update(RQ_CONNECTION=redis_url, RQ_ASYNC=True)
    rq = AsyncRQ(app)
    loops: list[weakref.ref[asyncio.AbstractEventLoop]] = []

    @app.get("/ping")
    async def ping() -> str:
        loops.append(weakref.ref(asyncio.get_running_loop()))
        await rq.queue.connection.ping()
        return "pong"

    client = app.test_client()
    for _ in range(20):
        assert client.get("/ping").status_code == 200
    gc.collect()

    assert sum(1 for loop in loops if loop() is not None) == 0


def test_flask_threaded_server_serves_200_requests_from_20_concurrent_clients(
    flask_server: str, sync_redis: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    statuses = hit_concurrently(flask_server, clients=20, requests_each=10)
    gc.collect()  # a client left for the garbage collector would warn here

    assert statuses == [200] * 200
    assert sync_redis.get("hits") == b"200"
    assert problems(caplog) == []


def test_flask_threaded_server_leaves_no_connection_open_after_requests(
    flask_server: str, sync_redis: redis.Redis
) -> None:
    statuses = hit_concurrently(flask_server, clients=20, requests_each=10)

    assert statuses == [200] * 200
    assert wait_for_connections(sync_redis, "flask-e2e", 0) == 0


def test_flask_threaded_server_uses_at_most_one_connection_per_concurrent_request(
    flask_server: str, redis_url: str
) -> None:
    with ConnectionSampler(redis_url, "flask-e2e") as sampler:
        statuses = hit_concurrently(flask_server, clients=20, requests_each=10)

    assert statuses == [200] * 200
    assert sampler.samples > 0
    assert 0 < sampler.highest["flask-e2e"] <= 20


# -- Quart on hypercorn --------------------------------------------------------------------


def make_quart_app(redis_url: str, client_name: str) -> Quart:
    app = Quart("quart_e2e")
    app.config.update(
        RQ_CONNECTION=named(redis_url, client_name, max_connections=QUART_MAX_CONNECTIONS),
        RQ_ASYNC=True,
    )
    rq = AsyncRQ(app)

    @app.get("/hit")
    async def hit() -> dict[str, int]:
        return {"hits": await rq.queue.connection.incr("hits")}

    @app.get("/ready")
    async def ready() -> str:
        return "ready"

    return app


class HypercornThread:
    """Hypercorn serving an app on its own loop in a thread.

    ``shutdown()`` returns once hypercorn has finished serving (lifespan shutdown included)
    while that loop is still open, so what ``after_serving`` did can be checked before
    ``asyncio.run`` tidies up the loop; ``finish()`` then lets the loop end.
    """

    def __init__(self, app: Quart) -> None:
        self.app = app
        self.base_url = ""
        self.error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._started = threading.Event()
        self._served = threading.Event()
        self._release = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        port = free_port()
        self.base_url = f"http://127.0.0.1:{port}"
        self._thread.start()
        self._started.wait(10)
        self._wait_until_ready(port)

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as error:  # reported by shutdown()
            self.error = error
        finally:
            self._served.set()
            self._started.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self._started.set()
        await serve(self.app, self._config, shutdown_trigger=self._stop.wait)
        self._served.set()
        await asyncio.to_thread(self._release.wait, 10)

    def _wait_until_ready(self, port: int) -> None:
        deadline = time.monotonic() + 10
        with httpx.Client(base_url=self.base_url, **PLAIN_HTTP, timeout=1) as client:
            while True:
                try:
                    if client.get("/ready").status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                if self._served.is_set() or time.monotonic() > deadline:
                    raise RuntimeError(f"hypercorn did not serve on port {port}: {self.error!r}")
                time.sleep(0.02)

    @property
    def _config(self) -> Config:
        config = Config()
        config.bind = [self.base_url.removeprefix("http://")]
        config.backlog = 1024
        config.graceful_timeout = 5
        return config

    def shutdown(self) -> None:
        """Stop serving and wait for hypercorn to finish; the loop stays open until finish()."""
        if self._loop is not None and self._stop is not None and not self._served.is_set():
            self._loop.call_soon_threadsafe(self._stop.set)
        if not self._served.wait(15):
            raise RuntimeError("hypercorn did not shut down within 15 s")
        if self.error is not None:
            raise self.error

    def finish(self) -> None:
        self._release.set()
        self._thread.join(15)

    @classmethod
    @contextlib.contextmanager
    def serving(cls, app: Quart) -> Iterator[HypercornThread]:
        """``app`` served for the block, shut down and its thread ended after it."""
        server = cls(app)
        try:
            server.start()
            yield server
        finally:
            try:
                server.shutdown()
            finally:
                server.finish()


@pytest.fixture
def quart_server(redis_url: str) -> Iterator[HypercornThread]:
    with HypercornThread.serving(make_quart_app(redis_url, "quart-e2e")) as server:
        yield server


async def hit_all_at_once(base_url: str, requests: int) -> list[int]:
    limits = httpx.Limits(max_connections=requests)
    async with httpx.AsyncClient(
        base_url=base_url, limits=limits, **PLAIN_HTTP, timeout=30
    ) as client:
        responses = await asyncio.gather(*(client.get("/hit") for _ in range(requests)))
    return [response.status_code for response in responses]


async def test_quart_on_hypercorn_serves_200_concurrent_requests(
    quart_server: HypercornThread, sync_redis: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    statuses = await hit_all_at_once(quart_server.base_url, 200)

    assert statuses == [200] * 200
    assert sync_redis.get("hits") == b"200"
    assert problems(caplog) == []


async def test_quart_on_hypercorn_keeps_to_one_pool_bounded_by_max_connections(
    quart_server: HypercornThread, redis_url: str
) -> None:
    with ConnectionSampler(redis_url, "quart-e2e") as sampler:
        statuses = await hit_all_at_once(quart_server.base_url, 200)

    assert statuses == [200] * 200
    assert sampler.samples > 0
    assert 0 < sampler.highest["quart-e2e"] <= QUART_MAX_CONNECTIONS


async def test_quart_on_hypercorn_keeps_its_pool_open_between_requests(
    quart_server: HypercornThread, sync_redis: redis.Redis
) -> None:
    await hit_all_at_once(quart_server.base_url, 20)
    opened = connection_ids(sync_redis, "quart-e2e")

    await hit_all_at_once(quart_server.base_url, 20)

    assert opened
    assert opened <= connection_ids(sync_redis, "quart-e2e")


async def test_quart_on_hypercorn_closes_its_pool_when_it_stops_serving(
    quart_server: HypercornThread, sync_redis: redis.Redis
) -> None:
    await hit_all_at_once(quart_server.base_url, 20)
    assert connections_named(sync_redis, "quart-e2e") > 0

    await asyncio.to_thread(quart_server.shutdown)  # its loop is still open after this

    assert wait_for_connections(sync_redis, "quart-e2e", 0) == 0
