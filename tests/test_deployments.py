"""The Redis deployments users run, each a real ``redis-server`` started here: TLS with a
private CA, an ACL user, a unix socket, a non-zero database, a client name, and RESP3
asked for explicitly. In each, a job goes the whole way: enqueued by an app, run by a
worker, its result read back through the app.

Sentinel has its own module (``test_sentinel.py``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from quart import Quart

from aiorq_flask import AsyncRQ

from .client_list import connections_named
from .deployments.jobs import run_a_job
from .deployments.servers import Certificates, NoTLS, Server, make_certificates, tls_server
from .redis_server import RedisServer

# -- TLS -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("certificates"))


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory, certificates: Certificates) -> Iterator[Server]:
    try:
        server = tls_server(tmp_path_factory.mktemp("tls"), certificates)
    except NoTLS as missing:
        pytest.skip(str(missing))
    with server:
        yield server


async def test_a_rediss_url_with_a_private_ca_and_a_client_certificate_runs_jobs(
    tls: Server, certificates: Certificates
) -> None:
    url = (
        f"rediss://localhost:{tls.port}/0?ssl_ca_certs={certificates.ca}"
        f"&ssl_certfile={certificates.client_cert}&ssl_keyfile={certificates.client_key}"
    )

    assert await run_a_job(url) == ("finished", 5)


async def test_tls_dict_options_run_jobs(tls: Server, certificates: Certificates) -> None:
    options = {
        "host": "localhost",
        "port": tls.port,
        "ssl": True,
        "ssl_ca_certs": str(certificates.ca),
        "ssl_certfile": str(certificates.client_cert),
        "ssl_keyfile": str(certificates.client_key),
    }

    assert await run_a_job(options) == ("finished", 5)


async def test_tls_with_a_ca_that_did_not_sign_the_server_is_refused(
    tls: Server, certificates: Certificates, tmp_path: Path
) -> None:
    stranger = make_certificates(tmp_path / "stranger")
    options = {
        "host": "localhost",
        "port": tls.port,
        "ssl": True,
        "ssl_ca_certs": str(stranger.ca),
        "ssl_certfile": str(certificates.client_cert),
        "ssl_keyfile": str(certificates.client_key),
    }

    with pytest.raises(redis.exceptions.ConnectionError, match="CERTIFICATE_VERIFY_FAILED"):
        await run_a_job(options)


# -- ACL ---------------------------------------------------------------------------------------

PASSWORD = "job-runner-s3cret"


@pytest.fixture(scope="module")
def acl(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server whose only user is ``jobs`` (the default user is off)."""
    server = Server(tmp_path_factory.mktemp("acl"), name="acl")
    server.arguments += ["--user", "default", "off"]
    server.arguments += ["--user", "jobs", "on", f">{PASSWORD}", "~*", "&*", "+@all"]
    with server.start(
        {"host": "127.0.0.1", "port": server.port, "username": "jobs", "password": PASSWORD}
    ):
        yield server


async def test_an_acl_user_with_a_password_runs_jobs(acl: Server) -> None:
    assert await run_a_job(f"redis://jobs:{PASSWORD}@127.0.0.1:{acl.port}/0") == ("finished", 5)
    options = {"host": "127.0.0.1", "port": acl.port, "username": "jobs", "password": PASSWORD}
    assert await run_a_job(options) == ("finished", 5)


@pytest.mark.parametrize("path", ["enqueue", "pool"])
async def test_a_wrong_password_is_a_clear_error_that_does_not_repeat_it(
    acl: Server, path: str
) -> None:
    wrong = "not-the-s3cret"
    app = Quart(__name__)
    app.config.update(RQ_CONNECTION=f"redis://jobs:{wrong}@127.0.0.1:{acl.port}/0", RQ_ASYNC=True)
    rq = AsyncRQ(app)

    async with app.app_context():
        try:
            with pytest.raises(redis.exceptions.AuthenticationError) as excinfo:
                if path == "enqueue":
                    await rq.queue.enqueue("tests.tasks.add", 2, 3)
                else:
                    await rq.queue.connection.ping()
        finally:
            await rq.state().pools.aclose()

    message = f"{excinfo.value} {excinfo.value!r}"
    assert "invalid username-password pair" in message
    assert wrong not in message


# -- unix socket, database, client name ---------------------------------------------------------


def private(redis_server: RedisServer | None) -> RedisServer:
    if redis_server is None:
        pytest.skip("needs the private redis-server (AIORQ_TEST_REDIS_URL is set)")
    return redis_server


async def test_a_unix_socket_url_runs_jobs(redis_server: RedisServer | None) -> None:
    server = private(redis_server)
    with redis.Redis(port=server.port, db=2) as db2:
        db2.flushdb()

        assert await run_a_job(f"unix://{server.unix_socket}?db=2") == ("finished", 5)
        assert db2.keys("rq:job:*")


async def test_a_non_zero_database_holds_every_key_and_database_0_none(
    redis_server: RedisServer | None, sync_redis: redis.Redis
) -> None:
    server = private(redis_server)
    with redis.Redis(port=server.port, db=7) as db7:
        db7.flushdb()

        assert await run_a_job(f"redis://127.0.0.1:{server.port}/7") == ("finished", 5)
        assert db7.keys("rq:job:*")
        assert db7.keys("rq:finished:*")
    assert sync_redis.dbsize() == 0


async def test_client_name_names_the_pool_s_connections_and_the_script_channel(
    redis_url: str, sync_redis: redis.Redis
) -> None:
    app = Quart(__name__)
    options = {**redis.connection.parse_url(redis_url), "client_name": "deploy-named"}  # type: ignore[no-untyped-call]
    app.config.update(RQ_CONNECTION=options, RQ_ASYNC=True)
    rq = AsyncRQ(app)

    async with app.app_context():
        try:
            job = await rq.queue.enqueue("tests.tasks.add", 2, 3)  # the script channel
            await rq.queue.fetch_job(job.id)  # a pooled connection
            named = connections_named(sync_redis, "deploy-named")
        finally:
            await rq.state().pools.aclose()

    assert named == 2


# -- RESP3 -------------------------------------------------------------------------------------


def resp3(redis_url: str, form: str) -> str | dict[str, Any]:
    if form == "url":
        return f"{redis_url}?protocol=3"
    return {**redis.connection.parse_url(redis_url), "protocol": 3}  # type: ignore[no-untyped-call]


@pytest.mark.parametrize("form", ["url", "dict"])
async def test_resp3_asked_for_explicitly_still_enqueues_runs_and_records_results(
    redis_url: str, form: str
) -> None:
    assert await run_a_job(resp3(redis_url, form), wait=0) == ("finished", 5)


async def test_resp3_waiting_for_a_result_reads_it(redis_url: str) -> None:
    assert await run_a_job(resp3(redis_url, "dict")) == ("finished", 5)
