"""Least privilege in Redis: the web app and the worker each under an ACL user of its own.

A private ``redis-server`` gets two users with the rule sets the README ships
(``tests/apps/acl_support.py``). The app is served by hypercorn as ``rq-app``, the worker
runs as ``rq-worker``, and the whole job path goes through them: enqueue over HTTP, a job,
a dependent job, a scheduled job, rq's stop-job command, results read back. ``ACL LOG``
stays empty: nothing either side sent was refused. Then each user is shown what it cannot
do: flush, configure, list keys, or reach a key outside rq's prefix, even from a script
of its own.
"""

from __future__ import annotations

import asyncio
import os
import re
import shlex
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from quart import Quart
from rq.command import send_stop_job_command

from aiorq_flask import AsyncRQ, InvalidJobOperation, _scripts
from aiorq_flask.serializer import MsgpackSerializer
from examples import redis_binary

from .apps.acl_support import APP_RULES, PREFIX, WORKER_RULES, AclServer, acl_server, setuser
from .apps.worker_support import (
    APP,
    ROOT,
    Process,
    burst,
    is_registered,
    status,
    unique_name,
    wait_until,
    worker_env,
)
from .redis_server import free_port

APP_USER, APP_PASSWORD = "rq-app", "app-pw-3b9f"
WORKER_USER, WORKER_PASSWORD = "rq-worker", "worker-pw-81c2"
OUTSIDE = "session:1"  # an app's own key beside rq's, which neither user may touch
# Which side calls each script: the app enqueues (and empties queues), the worker does
# the rest. Eager mode (RQ_ASYNC = False) runs the worker's finish.lua in the app.
APP_SCRIPTS = ("enqueue", "empty", "rate_limit")
# and enqueue.lua, loaded behind lib/cron.lua: a periodic job's tick
WORKER_SCRIPTS = ("claim", "finish", "heartbeat", "sweep", "schedule", "release_locks", "enqueue")


@pytest.fixture(scope="module")
def acl() -> Iterator[AclServer]:
    with acl_server() as server:
        setuser(server.admin, APP_USER, APP_PASSWORD, APP_RULES)
        setuser(server.admin, WORKER_USER, WORKER_PASSWORD, WORKER_RULES)
        yield server


@pytest.fixture
def clean(acl: AclServer) -> AclServer:
    acl.admin.flushall()
    acl.admin.set(OUTSIDE, "the app's own data")
    acl.reset_log()
    return acl


# -- the job path under the two users ------------------------------------------------------


class Served:
    """The app on hypercorn as ``rq-app`` and a worker process as ``rq-worker``."""

    def __init__(self, acl: AclServer, log_dir: Path) -> None:
        self.acl = acl
        self.port = free_port()
        self.worker_name = unique_name("acl")
        worker_argv = [sys.executable, "-m", "aiorq_flask.worker", "--app", APP]
        worker_argv += ["--name", self.worker_name, "--heartbeat", "1", "--grace-period", "1"]
        server_argv = [sys.executable, "-m", "hypercorn", "--bind", f"127.0.0.1:{self.port}"]
        server_argv.append(APP)
        self.worker = Process(
            worker_argv, worker_env(acl.url(WORKER_USER, WORKER_PASSWORD)), log_dir / "w.log"
        )
        self.server = Process(
            server_argv, worker_env(acl.url(APP_USER, APP_PASSWORD)), log_dir / "app.log"
        )
        self.http = httpx.Client(
            base_url=f"http://127.0.0.1:{self.port}", trust_env=False, timeout=30
        )

    def wait_until_ready(self) -> None:
        channel = f"{PREFIX}:pubsub:{self.worker_name}"
        wait_until(
            lambda: (
                self.worker.popen.poll() is not None
                or dict(self.acl.admin.pubsub_numsub(channel)).get(channel.encode())
            ),
            30,
            lambda: f"the worker to register and subscribe:\n{self.worker.output()}",
        )
        assert is_registered(self.acl.admin, self.worker_name), self.worker.output()
        wait_until(self._serving, 30, lambda: f"the app to serve:\n{self.server.output()}")

    def _serving(self) -> bool:
        assert self.server.popen.poll() is None, self.server.output()
        try:
            self.http.get("/jobs/none")  # any answer will do
        except httpx.TransportError:
            return False
        return True

    def enqueue(self, func: str, *args: Any, **options: Any) -> str:
        reply = self.http.post("/jobs", json={"func": func, "args": list(args), **options})
        assert reply.status_code == 202, reply.text
        job_id: str = reply.json()["job_id"]
        return job_id

    def outcome(self, job_id: str) -> dict[str, Any]:
        reply = self.http.get(f"/jobs/{job_id}?wait=1")
        assert reply.status_code == 200, reply.text
        body: dict[str, Any] = reply.json()
        return body

    def stop(self) -> dict[str, int]:
        self.http.close()
        for process in (self.worker, self.server):
            process.signal(signal.SIGTERM)
        return {"worker": self.worker.wait(30), "app": self.server.wait(30)}

    def kill(self) -> None:
        self.http.close()
        self.worker.kill()
        self.server.kill()


def test_the_whole_job_path_runs_with_the_app_and_the_worker_each_under_its_own_user(
    clean: AclServer, tmp_path: Path
) -> None:
    served = Served(clean, tmp_path)
    try:
        served.wait_until_ready()
        parent = served.enqueue("tests.tasks.async_sleep", 0.3)
        child = served.enqueue("tests.tasks.add", 3, 4, depends_on=parent)
        later = served.enqueue("tests.tasks.add", 5, 6, delay=1)
        long = served.enqueue("tests.tasks.async_sleep", 30)

        finished = [served.outcome(job_id) for job_id in (parent, child, later)]
        wait_until(lambda: status(clean.admin, long) == "started", what="the long job to start")
        with clean.client(APP_USER, APP_PASSWORD) as as_app:
            send_stop_job_command(as_app, long, serializer=MsgpackSerializer)
        stopped = served.outcome(long)
        exit_codes = served.stop()
    finally:
        served.kill()

    assert [(o["status"], o["return_value"]) for o in finished] == [
        ("finished", 0.3),
        ("finished", 7),
        ("finished", 11),
    ]
    assert stopped["status"] == "stopped"
    assert exit_codes["worker"] == 0, served.worker.output()
    assert "NOPERM" not in served.worker.output() + served.server.output()
    assert clean.denials() == []


async def test_the_apps_user_can_make_every_call_on_jobs_queues_and_registries(
    clean: AclServer,
) -> None:
    app = Quart(__name__)
    app.config.update(RQ_CONNECTION=clean.url(APP_USER, APP_PASSWORD), RQ_ASYNC=True)
    rq = AsyncRQ(app)
    async with app.app_context():
        queue = rq.queue
        await queue.enqueue("tests.tasks.echo", os.urandom(2 << 20))  # big: HSET in a MULTI
        prepared = [queue.prepare_data("tests.tasks.add", (i, 1)) for i in range(4)]
        jobs = await queue.enqueue_many(prepared)
        parent = await queue.enqueue_in(60, "tests.tasks.add", 1, 1)
        await queue.enqueue("tests.tasks.add", 2, 2, depends_on=parent, ttl=60, meta={"a": 1})
        failing = await queue.enqueue("tests.tasks.fail")
        await run_a_burst_as_the_worker(clean)

        job = await queue.fetch_job(jobs[0].id)
        assert job is not None
        job.meta["seen"] = True
        await job.save_meta()
        await job.refresh()
        assert (await job.latest_result(timeout=1)) is not None
        assert len(await job.results()) == 1
        await queue.enqueue("tests.tasks.add", 1, 1)
        assert await queue.count() == 1
        assert len(await queue.job_ids()) == 1
        for registry in (queue.started, queue.finished, queue.failed, queue.deferred):
            assert await registry.count() == len(await registry.job_ids())
        await queue.failed.requeue(failing.id)
        await parent.cancel()
        with pytest.raises(InvalidJobOperation):  # WATCHed, then let go with UNWATCH
            await parent.cancel()
        await parent.requeue()
        await jobs[1].cancel()
        await queue.canceled.remove(jobs[1].id)
        await jobs[2].delete()
        await queue.empty()
        await rq.state().pools.aclose()

    assert clean.denials() == []


async def run_a_burst_as_the_worker(acl: AclServer) -> None:
    app = Quart(__name__)
    app.config.update(RQ_CONNECTION=acl.url(WORKER_USER, WORKER_PASSWORD), RQ_ASYNC=True)
    rq = AsyncRQ(app)
    try:
        await burst(rq.make_worker(app=app, allow_modules=["tests"]))
    finally:
        await rq.state(app).pools.aclose()


def test_stop_job_needs_publish_on_the_workers_channels(clean: AclServer) -> None:
    """The one rule the app needs beyond its keys: rq's stop-job (and shutdown) commands
    are PUBLISHed on ``rq:pubsub:<worker>``."""
    rules = [rule for rule in APP_RULES if rule != "+publish"]
    setuser(clean.admin, "rq-app-no-publish", APP_PASSWORD, rules)
    job_id = "stoppable"
    asyncio.run(enqueue_as(clean.url(APP_USER, APP_PASSWORD), job_id))
    clean.admin.hset(f"{PREFIX}:job:{job_id}", "worker_name", "w")

    with (
        clean.client("rq-app-no-publish", APP_PASSWORD) as without,
        pytest.raises(redis.exceptions.NoPermissionError, match="publish"),
    ):
        send_stop_job_command(without, job_id, serializer=MsgpackSerializer)
    with clean.client(APP_USER, APP_PASSWORD) as as_app:
        send_stop_job_command(as_app, job_id, serializer=MsgpackSerializer)
    clean.admin.execute_command("ACL", "DELUSER", "rq-app-no-publish")


async def enqueue_as(url: str, job_id: str) -> None:
    app = Quart(__name__)
    app.config.update(RQ_CONNECTION=url, RQ_ASYNC=True)
    rq = AsyncRQ(app)
    try:
        await rq.state(app).queues["default"].enqueue("tests.tasks.add", 1, 2, job_id=job_id)
    finally:
        await rq.state(app).pools.aclose()


# -- what each user cannot do ------------------------------------------------------------------

FORBIDDEN = {
    "FLUSHALL": ("FLUSHALL",),
    "FLUSHDB": ("FLUSHDB",),
    "CONFIG GET": ("CONFIG", "GET", "dir"),
    "CONFIG SET": ("CONFIG", "SET", "dir", "/tmp"),
    "KEYS": ("KEYS", "*"),
    "SCAN": ("SCAN", "0"),
    "GET outside the prefix": ("GET", OUTSIDE),
    "SET outside the prefix": ("SET", OUTSIDE, "taken"),
    "DEL outside the prefix": ("DEL", OUTSIDE),
    "HSET outside the prefix": ("HSET", OUTSIDE + ":hash", "field", "value"),
    "EVAL": ("EVAL", "return 1", "0"),
    "ACL": ("ACL", "LIST"),
    "PUBLISH outside rq's channels": ("PUBLISH", "other-channel", "x"),
    "SUBSCRIBE outside rq's channels": ("SUBSCRIBE", "other-channel"),
}


@pytest.mark.parametrize("user", [APP_USER, WORKER_USER])
@pytest.mark.parametrize("command", FORBIDDEN.values(), ids=FORBIDDEN.keys())
def test_neither_user_can_flush_configure_list_keys_or_touch_keys_outside_the_prefix(
    clean: AclServer, user: str, command: tuple[str, ...]
) -> None:
    password = APP_PASSWORD if user == APP_USER else WORKER_PASSWORD

    with clean.client(user, password) as client, pytest.raises(redis.exceptions.NoPermissionError):
        client.execute_command(*command)

    assert clean.admin.get(OUTSIDE) == b"the app's own data"
    assert [denial["username"] for denial in clean.denials()] == [user]  # ACL LOG saw it


@pytest.mark.parametrize("user", [APP_USER, WORKER_USER])
def test_a_script_a_user_loads_runs_with_that_users_permissions(
    clean: AclServer, user: str
) -> None:
    password = APP_PASSWORD if user == APP_USER else WORKER_PASSWORD

    with clean.client(user, password) as client:
        inside = client.script_load(f"return redis.call('HGET', '{PREFIX}:job:x', 'status')")
        outside = client.script_load(f"return redis.call('HSET', '{OUTSIDE}', 'f', 'v')")
        assert client.evalsha(inside, 0) is None
        with pytest.raises(redis.exceptions.ResponseError, match="can't"):
            client.evalsha(outside, 0)

    assert clean.admin.get(OUTSIDE) == b"the app's own data"


# -- the rules themselves ------------------------------------------------------------------------

SCRIPTS = Path(_scripts.__file__).parent / "scripts"


def commands_sent_by(*scripts: str) -> set[str]:
    """The commands the Lua scripts call (``redis.call('X'`` and the pushes they choose),
    with the libraries each is loaded with."""
    loaded = [s for s in vars(_scripts).values() if isinstance(s, _scripts.Script)]
    found: set[str] = set()
    for script in loaded:
        if script.name in scripts:
            found |= set(re.findall(r"redis\.call\('([A-Z]+)'", script.source))
            found |= set(re.findall(r"'([LR]PUSH)'", script.source))
    return {command.lower() for command in found}


@pytest.mark.parametrize(
    ("rules", "scripts"),
    [(APP_RULES, APP_SCRIPTS), (WORKER_RULES, WORKER_SCRIPTS)],
    ids=["app", "worker"],
)
def test_every_command_a_script_sends_is_in_the_rules_of_the_side_that_calls_it(
    rules: tuple[str, ...], scripts: tuple[str, ...]
) -> None:
    allowed = {rule[1:] for rule in rules if rule.startswith("+")}

    assert commands_sent_by(*scripts) - allowed == set()
    assert {path.stem for path in SCRIPTS.glob("*.lua")} == {*APP_SCRIPTS, *WORKER_SCRIPTS}


def shown(text: str) -> str:
    """Shell text as its words: line continuations, quotes and runs of spaces removed."""
    return " ".join(text.replace("\\\n", " ").replace("'", "").split())


@pytest.mark.parametrize("doc", ["README.md", "docs/design.md"])
def test_the_docs_show_exactly_the_rules_tested_here(doc: str) -> None:
    text = shown((ROOT / doc).read_text())

    assert f"ACL SETUSER rq-app reset on >app-password {' '.join(APP_RULES)}" in text
    assert f"ACL SETUSER rq-worker reset on >worker-password {' '.join(WORKER_RULES)}" in text


@pytest.mark.skipif(
    redis_binary.find("redis-cli") is None, reason=redis_binary.missing("redis-cli")
)
def test_the_readmes_commands_create_exactly_the_users_tested_here() -> None:
    readme = (ROOT / "README.md").read_text()
    commands = readme.split("## Least privilege")[1].split("```sh\n")[1].split("```")[0]
    program = redis_binary.find("redis-cli")
    assert program is not None
    with acl_server() as server:
        cli = f"{shlex.quote(program.path)} -p {server.server.port} "
        subprocess.run(["bash", "-c", commands.replace("redis-cli ", cli)], check=True, timeout=30)
        setuser(server.admin, "tested-app", "app-password", APP_RULES)
        setuser(server.admin, "tested-worker", "worker-password", WORKER_RULES)
        users = dict(line.split(" ", 2)[1:] for line in server.admin.acl_list())

    assert users["rq-app"] == users["tested-app"]
    assert users["rq-worker"] == users["tested-worker"]
