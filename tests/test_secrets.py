"""No secret in output: the password in ``RQ_CONNECTION`` never shows.

With the password in the URL form and in the dict form of ``RQ_CONNECTION``, every place
aiorq_flask prints or raises something is searched for it: ``repr()`` of the extension,
its state, plan, queues, jobs, worker and clients; every log line (at DEBUG, tracebacks
included) of a job's whole path; the errors of a wrong password, of Redis down, and of a
bad config; the worker command's output with a bad config, Redis down, a wrong password
and a good run; and ``rq info`` while that worker is registered.
"""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import sys
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from quart import Quart

from aiorq_flask import AsyncRQ, ConfigError

from .apps.acl_support import AclServer, acl_server
from .apps.worker_support import (
    APP,
    BIN,
    SERIALIZER,
    Process,
    burst,
    is_registered,
    unique_name,
    wait_until,
    worker_env,
)
from .redis_server import free_port

USER = "jobs"
SECRET = "Xq7-pass-9Kd2-w0rd"  # the password under test: found nowhere
OTHER = "the-servers-real-pass"  # what the server expects, for the wrong-password cases
FORMS = ["url", "dict"]


@pytest.fixture(scope="module")
def server() -> Iterator[AclServer]:
    with acl_server() as acl:
        acl.admin.execute_command("ACL", "SETUSER", USER, "reset", "on", f">{SECRET}")
        acl.admin.execute_command("ACL", "SETUSER", USER, "~*", "&*", "+@all")
        acl.admin.execute_command("ACL", "SETUSER", "wrong", "reset", "on", f">{OTHER}", "+@all")
        yield acl


def connection(
    server: AclServer, form: str, user: str = USER, port: int | None = None
) -> str | dict[str, Any]:
    """``RQ_CONNECTION`` holding ``SECRET``, in ``form``; ``port``: another one (Redis down)."""
    options = server.options(user, SECRET)
    if port is not None:
        options["port"] = port
    if form == "dict":
        return options
    return f"redis://{user}:{SECRET}@127.0.0.1:{options['port']}/0"


def make_rq(config: Any, **more: Any) -> tuple[Quart, AsyncRQ]:
    app = Quart(__name__)
    app.config.update(RQ_CONNECTION=config, RQ_ASYNC=True, **more)
    return app, AsyncRQ(app)


def everything_about(error: BaseException) -> str:
    """An exception as it can be shown: message, repr, and the traceback with its chain."""
    return f"{error}\n{error!r}\n{''.join(traceback.format_exception(error))}"


def logged(caplog: pytest.LogCaptureFixture) -> str:
    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    return "\n".join(formatter.format(record) for record in caplog.records)


# -- in the app and an in-process worker ---------------------------------------------------------


@pytest.mark.parametrize("form", FORMS)
async def test_no_repr_and_no_log_line_of_a_jobs_whole_path_shows_the_password(
    server: AclServer, form: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    server.admin.flushall()
    app, rq = make_rq(connection(server, form), RQ_WORKER_ALLOWED_MODULES=["tests"])
    async with app.app_context():
        state = rq.state()
        queue = rq.queue
        done = await queue.enqueue("tests.tasks.add", 1, 2)
        failed = await queue.enqueue("tests.tasks.fail")
        worker = rq.make_worker(max_jobs=2)
        handles = (rq, state, state.plan, queue, done, worker, queue.connection)
        clients = (queue.connection.connection_pool, queue.multiplexer)
        shown = [repr(item) for item in (*handles, *clients, *state.plan.connections.values())]
        await burst(worker)
        assert (await done.latest_result(timeout=5)).return_value == 3
        assert "boom" in ((await failed.latest_result(timeout=5)).exc_string or "")
        await state.pools.aclose()

    assert [text for text in shown if SECRET in text] == []
    assert caplog.records, "nothing was logged: the check would prove nothing"
    assert SECRET not in logged(caplog)


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("trouble", ["wrong password", "Redis down"])
async def test_no_error_shows_the_password_when_it_is_wrong_or_redis_is_down(
    server: AclServer, form: str, trouble: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    if trouble == "wrong password":
        config = connection(server, form, user="wrong")
    else:
        config = connection(server, form, port=free_port())
    app, rq = make_rq(config)
    errors = []
    async with app.app_context():
        for attempt in (rq.queue.enqueue("tests.tasks.add", 1, 2), rq.queue.count()):
            with pytest.raises(Exception) as caught:  # any error, as it shows
                await attempt
            errors.append(everything_about(caught.value))
        await rq.state().pools.aclose()

    assert all(("AUTH" in e or "auth" in e or "connect" in e) for e in errors), errors
    assert [e for e in errors if SECRET in e] == []
    assert SECRET not in logged(caplog)


BAD_URLS = [
    f"foo://{USER}:{SECRET}@127.0.0.1:6379/0",
    f"redis://{USER}:{SECRET}@127.0.0.1:6379/0?decode_responses=1",
    f"redis://{USER}:{SECRET}@127.0.0.1:6379/0?max_connections=0",
    f"redis://{USER}:{SECRET}@127.0.0.1:port/0",
    f"rediss://127.0.0.1:6379/0?ssl_password={SECRET}&decode_responses=1",  # a key's passphrase
]
BAD_DICTS = [
    {"host": "127.0.0.1", "password": SECRET, "no_such_option": 1},
    {"host": "127.0.0.1", "password": SECRET, "decode_responses": True},
    {"host": "127.0.0.1", "password": SECRET, "max_connections": 0},
    {"host": "127.0.0.1", "ssl": True, "ssl_password": SECRET, "no_such_option": 1},
    {
        "sentinels": [["127.0.0.1", 26379]],
        "service_name": "m",
        "sentinel_kwargs": {"password": SECRET},
        "no_such_option": 1,
    },
]


@pytest.mark.parametrize("config", BAD_URLS + BAD_DICTS)
def test_no_config_error_shows_the_password(config: Any) -> None:
    with pytest.raises(ConfigError) as caught:
        make_rq(config)

    assert SECRET not in everything_about(caught.value)


def test_no_config_error_or_warning_of_a_queue_connection_shows_the_password(
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = f"redis://{USER}:{SECRET}@127.0.0.1:6379/0"
    make_rq(url, RQ_QUEUE_CONNECTIONS={"default": url})  # ignored: warned about
    with pytest.raises(ConfigError) as caught:
        make_rq(url, RQ_QUEUES=["a"], RQ_QUEUE_CONNECTIONS=[url])

    assert "ignored" in caplog.text
    assert SECRET not in caplog.text + everything_about(caught.value)


# -- the worker command and rq info ------------------------------------------------------------


def run_worker(tmp_path: Path, config: str | dict[str, Any], *options: str) -> Process:
    env = worker_env(json.dumps(config) if isinstance(config, dict) else config)
    argv = [sys.executable, "-m", "aiorq_flask.worker", "--app", APP, *options]
    return Process(argv, env, tmp_path / f"{unique_name('worker')}.log")


@pytest.mark.parametrize("form", FORMS)
def test_the_worker_command_never_prints_the_password(
    server: AclServer, form: str, tmp_path: Path
) -> None:
    server.admin.flushall()
    config = connection(server, form)
    bad: str | dict[str, Any]
    if isinstance(config, dict):
        bad = {**config, "decode_responses": True}
    else:
        bad = config + "?decode_responses=1"
    outputs = []
    with run_worker(tmp_path, bad) as bad_config:
        assert bad_config.wait(30) == 2
        outputs.append(bad_config.output())
    with run_worker(tmp_path, config, "--connection", "nope") as bad_option:
        assert bad_option.wait(30) == 2
        outputs.append(bad_option.output())
    for trouble in (connection(server, form, port=free_port()), connection(server, form, "wrong")):
        with run_worker(tmp_path, trouble) as failing:
            failing.wait_for_output("retrying", timeout=30)
            outputs.append(failing.output())
    name = unique_name("secret")
    with run_worker(tmp_path, config, "--name", name, "--log-level", "DEBUG") as good:
        wait_until(lambda: is_registered(server.admin, name), 30, good.output)
        if form == "url":
            outputs.append(rq_info(str(config)))
        good.signal(signal.SIGTERM)
        assert good.wait(30) == 0
        outputs.append(good.output())

    assert "decode_responses" in outputs[0] and "'nope'" in outputs[1]
    assert "retrying" in outputs[2] and "retrying" in outputs[3]
    assert [output for output in outputs if SECRET in output] == []


def rq_info(url: str) -> str:
    """``rq info`` (stock rq) for ``url``: its queues and workers, one a line."""
    argv = [str(BIN / "rq"), "info", "--url", url, "--serializer", SERIALIZER]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=True)
    assert "1 workers" in done.stdout, done.stdout
    return done.stdout + done.stderr
