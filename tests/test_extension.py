"""AsyncRQ on Flask and Quart apps: registration, per-app state, accessors and their errors."""

from __future__ import annotations

import contextlib
import gc
import weakref
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis
from flask import Flask
from quart import Quart
from redis.asyncio import Redis

from aiorq_flask import AsyncRQ, Queue

AppFactory = Callable[..., Any]

ACCESSORS: dict[str, Callable[[AsyncRQ], object]] = {
    "queue": lambda rq: rq.queue,
    "queues": lambda rq: rq.queues,
    "get_queue": lambda rq: rq.get_queue("default"),
}


@pytest.fixture(params=["flask", "quart"])
def make_app(request: pytest.FixtureRequest, redis_url: str) -> AppFactory:
    """A Flask or Quart app configured for the test server; keyword arguments override config."""
    framework: type[Any] = Flask if request.param == "flask" else Quart

    def make(name: str = "app", **config: Any) -> Any:
        app = framework(name)
        app.config.update(RQ_CONNECTION=redis_url, RQ_ASYNC=True)
        app.config.update(config)
        return app

    return make


@contextlib.asynccontextmanager
async def app_context(app: Any) -> AsyncIterator[None]:
    """Push ``app``'s app context, whichever framework it belongs to."""
    if isinstance(app, Quart):
        async with app.app_context():
            yield
    else:
        with app.app_context():
            yield


# -- registration --------------------------------------------------------------------------


def test_asyncrq_with_app_registers_itself_as_the_aiorq_extension(make_app: AppFactory) -> None:
    app = make_app()

    rq = AsyncRQ(app)

    assert app.extensions["aiorq"] is rq


def test_init_app_registers_the_extension_as_the_aiorq_extension(make_app: AppFactory) -> None:
    app = make_app()
    rq = AsyncRQ()

    rq.init_app(app)

    assert app.extensions["aiorq"] is rq


async def test_init_app_later_gives_the_app_its_queues(make_app: AppFactory) -> None:
    app = make_app(RQ_QUEUES=["high", "low"])
    rq = AsyncRQ()
    rq.init_app(app)

    async with app_context(app):
        assert list(rq.queues) == ["high", "low", "default"]


def test_second_init_app_on_the_same_app_raises_runtime_error(make_app: AppFactory) -> None:
    app = make_app()
    rq = AsyncRQ(app)

    with pytest.raises(RuntimeError, match="already has an AsyncRQ extension"):
        rq.init_app(app)


def test_second_extension_on_the_same_app_raises_runtime_error(make_app: AppFactory) -> None:
    app = make_app()
    AsyncRQ(app)

    with pytest.raises(RuntimeError, match="already has an AsyncRQ extension"):
        AsyncRQ(app)


async def test_failed_second_init_app_keeps_the_first_registration(
    make_app: AppFactory,
) -> None:
    app = make_app(RQ_QUEUES=["first"])
    rq = AsyncRQ(app)
    app.config["RQ_QUEUES"] = ["second"]

    with pytest.raises(RuntimeError):
        rq.init_app(app)

    assert app.extensions["aiorq"] is rq
    async with app_context(app):
        assert list(rq.queues) == ["first", "default"]


# -- one instance, several apps ------------------------------------------------------------


def test_one_instance_registers_on_several_apps(make_app: AppFactory) -> None:
    first, second = make_app("first"), make_app("second")
    rq = AsyncRQ()

    rq.init_app(first)
    rq.init_app(second)

    assert first.extensions["aiorq"] is second.extensions["aiorq"] is rq


async def test_one_instance_gives_each_app_its_own_queues(make_app: AppFactory) -> None:
    first = make_app("first", RQ_QUEUES=["a1"])
    second = make_app("second", RQ_QUEUES=["b1", "b2"])
    rq = AsyncRQ()
    rq.init_app(first)
    rq.init_app(second)

    async with app_context(first):
        first_queues = list(rq.queues)
    async with app_context(second):
        second_queues = list(rq.queues)

    assert (first_queues, second_queues) == (["a1", "default"], ["b1", "b2", "default"])


async def test_accessors_follow_the_app_whose_context_is_current(make_app: AppFactory) -> None:
    first = make_app("first", RQ_QUEUES=["a1"])
    second = make_app("second", RQ_QUEUES=["b1"])
    rq = AsyncRQ()
    rq.init_app(first)
    rq.init_app(second)

    async with app_context(first):
        first_default = rq.queue
        async with app_context(second):
            second_default = rq.queue
            assert rq.get_queue("b1").name == "b1"
        assert rq.get_queue("a1").name == "a1"
        assert rq.queue is first_default

    assert first_default is not second_default


async def test_state_of_an_app_is_reachable_without_its_context(make_app: AppFactory) -> None:
    first = make_app("first", RQ_QUEUES=["a1"])
    second = make_app("second", RQ_QUEUES=["b1"])
    rq = AsyncRQ()
    rq.init_app(first)
    rq.init_app(second)

    async with app_context(first):
        assert list(rq.state(second).queues) == ["b1", "default"]


async def test_one_instance_serves_a_flask_app_and_a_quart_app(redis_url: str) -> None:
    flask_app, quart_app = Flask("flask_app"), Quart("quart_app")
    flask_app.config.update(RQ_CONNECTION=redis_url, RQ_QUEUES=["from-flask"])
    quart_app.config.update(RQ_CONNECTION=redis_url, RQ_QUEUES=["from-quart"])
    rq = AsyncRQ()
    rq.init_app(flask_app)
    rq.init_app(quart_app)

    with flask_app.app_context():
        flask_queues = list(rq.queues)
    async with quart_app.app_context():
        quart_queues = list(rq.queues)

    assert (flask_queues, quart_queues) == (["from-flask", "default"], ["from-quart", "default"])


# -- accessor errors -----------------------------------------------------------------------


@pytest.mark.parametrize("accessor", list(ACCESSORS))
async def test_accessors_raise_runtime_error_when_no_app_is_registered(
    make_app: AppFactory, accessor: str
) -> None:
    app = make_app()
    rq = AsyncRQ()

    async with app_context(app):
        with pytest.raises(RuntimeError, match=r"not registered.*init_app"):
            ACCESSORS[accessor](rq)


@pytest.mark.parametrize("accessor", list(ACCESSORS))
def test_accessors_raise_runtime_error_outside_an_app_context(
    make_app: AppFactory, accessor: str
) -> None:
    rq = AsyncRQ(make_app())

    with pytest.raises(RuntimeError, match="outside of an app context"):
        ACCESSORS[accessor](rq)


@pytest.mark.parametrize("accessor", list(ACCESSORS))
async def test_accessors_raise_runtime_error_when_the_current_app_is_not_registered(
    make_app: AppFactory, accessor: str
) -> None:
    registered = make_app("registered")  # held: the extension keeps its apps weakly
    rq = AsyncRQ(registered)
    stranger = make_app("stranger")

    async with app_context(stranger):
        with pytest.raises(RuntimeError, match="not registered on the current app 'stranger'"):
            ACCESSORS[accessor](rq)


async def test_get_queue_of_an_unknown_name_raises_key_error_listing_the_queues(
    make_app: AppFactory,
) -> None:
    app = make_app(RQ_QUEUES=["high", "low"])
    rq = AsyncRQ(app)

    async with app_context(app):
        with pytest.raises(KeyError) as raised:
            rq.get_queue("nope")

    message = str(raised.value)
    assert "'nope'" in message
    assert "high, low, default" in message


# -- queues --------------------------------------------------------------------------------


async def test_queues_are_in_priority_order(make_app: AppFactory) -> None:
    app = make_app(RQ_QUEUES=["low", "default", "high"])
    rq = AsyncRQ(app)

    async with app_context(app):
        assert list(rq.queues) == ["low", "default", "high"]


async def test_queues_map_each_name_to_its_queue(make_app: AppFactory) -> None:
    app = make_app(RQ_QUEUES=["high", "low"])
    rq = AsyncRQ(app)

    async with app_context(app):
        assert {name: queue.name for name, queue in rq.queues.items()} == {
            "high": "high",
            "low": "low",
            "default": "default",
        }


async def test_queue_is_the_default_queue(make_app: AppFactory) -> None:
    app = make_app(RQ_QUEUES=["high", "low"])
    rq = AsyncRQ(app)

    async with app_context(app):
        assert rq.queue.name == "default"
        assert rq.queue is rq.queues["default"]


async def test_get_queue_returns_the_named_queue(make_app: AppFactory) -> None:
    app = make_app(RQ_QUEUES=["high", "low"])
    rq = AsyncRQ(app)

    async with app_context(app):
        assert rq.get_queue("low") is rq.queues["low"]


async def test_get_queue_without_a_name_returns_the_default_queue(make_app: AppFactory) -> None:
    app = make_app()
    rq = AsyncRQ(app)

    async with app_context(app):
        assert rq.get_queue() is rq.queue


async def test_queue_has_its_name_rq_key_and_connection_name(
    make_app: AppFactory, redis_url: str
) -> None:
    app = make_app(RQ_QUEUES=["email"], RQ_QUEUE_CONNECTIONS={"email": with_db(redis_url, 1)})
    rq = AsyncRQ(app)

    async with app_context(app):
        queue = rq.get_queue("email")

    assert isinstance(queue, Queue)
    assert (queue.name, queue.key, queue.connection_name) == ("email", "rq:queue:email", "email")


async def test_queue_on_the_default_connection_names_it_default(make_app: AppFactory) -> None:
    app = make_app(RQ_QUEUES=["high"])
    rq = AsyncRQ(app)

    async with app_context(app):
        assert rq.get_queue("high").connection_name == "default"


async def test_queue_connection_is_an_asyncio_client_of_the_configured_server(
    make_quart_app: Callable[..., Quart], sync_redis: redis.Redis
) -> None:
    app = make_quart_app()
    rq = AsyncRQ(app)

    async with app.app_context():
        connection = rq.queue.connection
        await connection.set("written-by", "queue.connection")
        await rq.state().pools.aclose()

    assert isinstance(connection, Redis)
    assert sync_redis.get("written-by") == b"queue.connection"


def with_db(url: str, db: int) -> str:
    """``url`` pointing at database ``db`` of the same server."""
    return urlsplit(url)._replace(path=f"/{db}").geturl()


def test_a_dropped_app_is_not_kept_alive_by_the_extension() -> None:
    rq = AsyncRQ()
    app = Quart(__name__)
    rq.init_app(app)
    app_ref = weakref.ref(app)

    del app
    gc.collect()

    assert app_ref() is None
