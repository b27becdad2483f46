"""The ``aiorq`` command line (``python -m aiorq_flask``), against a real redis-server.

Most commands run in the test's process on an app of its own (``run_cli``); what is
about processes (the console script, ``quart rq``, errors without a traceback, a
worker honouring ``suspend``, ``info`` on busy workers) runs real subprocesses.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from quart import Quart

from aiorq_flask import AsyncRQ
from aiorq_flask.cli._main import parser, run_command

from . import tasks
from .apps.worker_support import (
    APP,
    BIN,
    ROOT,
    Process,
    burst,
    enqueue_jobs,
    other_db_url,
    our_worker,
    status,
    stock_worker,
    unique_name,
    wait_until,
    worker_env,
)

STATES = ["queued", "started", "finished", "failed", "deferred", "scheduled", "canceled"]


@pytest.fixture
def app(make_quart_app: Callable[..., Quart]) -> Iterator[Quart]:
    app = make_quart_app(RQ_QUEUES=["default", "low"])
    AsyncRQ(app)
    yield app


def run_cli(app: Quart, capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run one command on ``app`` as ``quart rq`` would: (exit status, stdout, stderr)."""
    options = parser("aiorq", with_app=False).parse_args(argv)
    try:
        run_command(options.command, app, options)
        code = 0
    except SystemExit as exit:
        code = int(exit.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def on_app(app: Quart, step: Callable[[AsyncRQ], Any]) -> Any:
    """Run ``step(rq)`` on a loop of its own (the commands run theirs), then close pools."""
    rq: AsyncRQ = app.extensions["aiorq"]

    async def run() -> Any:
        try:
            return await step(rq)
        finally:
            await rq.state(app).pools.aclose()

    return asyncio.run(run())


def failed_jobs(app: Quart, queue: str, count: int) -> list[str]:
    async def step(rq: AsyncRQ) -> list[str]:
        jobs = [await rq.state(app).get_queue(queue).enqueue(tasks.fail) for _ in range(count)]
        await burst(rq.make_worker(app=app, queues=[queue]))
        return [job.id for job in jobs]

    ids: list[str] = on_app(app, step)
    return ids


def aiorq(
    redis_url: str, *argv: str, email_url: str | None = None
) -> subprocess.CompletedProcess[str]:
    """``python -m aiorq_flask <argv> --app tests.apps.worker_app:app`` as a subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "aiorq_flask", *argv, "--app", APP],
        cwd=ROOT,
        env=worker_env(
            redis_url, "default,low" if email_url is None else "default,email", email_url
        ),
        capture_output=True,
        text=True,
        timeout=60,
    )


# -- info ------------------------------------------------------------------------------------


def make_every_state(app: Quart) -> None:
    """On ``default``: one job in each state but started, two queued; one queued on ``low``."""

    async def step(rq: AsyncRQ) -> None:
        queue = rq.state(app).get_queue("default")
        await queue.enqueue(tasks.add, 1, 2)
        await queue.enqueue(tasks.fail)
        await burst(rq.make_worker(app=app))
        parent = await queue.enqueue(tasks.add, 1, 1)
        await queue.enqueue(tasks.add, 2, 2)
        await queue.enqueue(tasks.add, 3, 3, depends_on=parent.id)
        await queue.enqueue_in(3600, tasks.add, 4, 4)
        await (await queue.enqueue(tasks.add, 5, 5)).cancel()
        await rq.state(app).get_queue("low").enqueue(tasks.add, 6, 6)

    on_app(app, step)


def test_info_json_counts_each_queues_jobs_by_state(
    app: Quart, capsys: pytest.CaptureFixture[str]
) -> None:
    make_every_state(app)

    code, out, _ = run_cli(app, capsys, "info", "--json")

    assert code == 0
    (connection,) = json.loads(out)["connections"]
    assert connection["name"] == "default"
    assert connection["suspended"] is False
    counts = {queue["name"]: queue["counts"] for queue in connection["queues"]}
    assert counts["default"] == {
        "queued": 2,
        "started": 0,
        "finished": 1,
        "failed": 1,
        "deferred": 1,
        "scheduled": 1,
        "canceled": 1,
    }
    assert counts["low"] == dict.fromkeys(STATES, 0) | {"queued": 1}
    assert connection["workers"] == []  # the burst worker deregistered


def test_info_text_is_a_table_of_queues_by_state(
    app: Quart, capsys: pytest.CaptureFixture[str]
) -> None:
    make_every_state(app)

    code, out, _ = run_cli(app, capsys, "info")

    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith("connection 'default' (redis://")
    assert lines[1].split() == ["queue", *STATES]
    assert lines[2].split() == ["default", "2", "0", "1", "1", "1", "1", "1"]
    assert lines[3].split() == ["low", "1", "0", "0", "0", "0", "0", "0"]
    assert "0 worker(s)" in out


def test_info_shows_busy_workers_of_both_connections_with_their_running_jobs(
    tmp_path: Path, redis_url: str, email_redis: redis.Redis
) -> None:
    email_url = other_db_url(redis_url)
    names = {"default": unique_name("main"), "email": unique_name("mail")}
    running = {
        "default": enqueue_jobs(redis_url, "tests.tasks.async_sleep", (30,), count=2),
        "email": enqueue_jobs(email_url, "tests.tasks.async_sleep", (30,), queue="email"),
    }
    with (
        our_worker(
            tmp_path,
            redis_url,
            "--name",
            names["default"],
            queues="default,email",
            email_url=email_url,
        ),
        our_worker(
            tmp_path,
            redis_url,
            "--connection",
            "email",
            "--name",
            names["email"],
            queues="default,email",
            email_url=email_url,
        ),
    ):
        wait_until(lambda: all(status(email_redis, i) == "started" for i in running["email"]), 30)
        main = redis.Redis.from_url(redis_url)
        wait_until(lambda: all(status(main, i) == "started" for i in running["default"]), 30)
        main.close()
        done = aiorq(redis_url, "info", "--json", email_url=email_url)

    assert done.returncode == 0, done.stderr
    connections = {c["name"]: c for c in json.loads(done.stdout)["connections"]}
    assert set(connections) == {"default", "email"}
    for name, connection in connections.items():
        (worker,) = connection["workers"]
        assert worker["name"] == names[name]
        assert worker["state"] == "busy"
        assert sorted(worker["current_jobs"]) == sorted(running[name])
        assert 0 <= worker["heartbeat_age"] < 10
        queue = connection["queues"][0]
        assert queue["counts"]["started"] == len(running[name])


def test_info_interval_prints_again_until_interrupted(redis_url: str, tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "aiorq_flask", "info", "--app", APP, "--interval", "0.2"]
    with Process(argv, worker_env(redis_url), tmp_path / "info.log") as info:
        wait_until(lambda: info.output().count("connection 'default'") >= 2, 30, info.output)
        info.signal(signal.SIGINT)
        assert info.wait(10) == 130
    assert "Traceback" not in info.output()


# -- health ----------------------------------------------------------------------------------


def health(redis_url: str, *options: str) -> subprocess.CompletedProcess[str]:
    return aiorq(redis_url, "health", *options)


def test_health_fails_with_one_line_when_no_worker_serves_the_connection(redis_url: str) -> None:
    done = health(redis_url)

    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr == (
        "error: no worker serving connection 'default' has beaten in the last 8s\n"
    )


def test_health_fails_within_one_heartbeat_of_the_only_worker_being_killed(
    tmp_path: Path, redis_url: str
) -> None:
    """The worker runs with the default --heartbeat (10 s) and health with the default
    --max-age: a killed worker is reported within one heartbeat interval."""
    name = unique_name("probe")
    with our_worker(tmp_path, redis_url, "--name", name) as worker:
        worker.wait_for_output("serving", 30)
        ok = health(redis_url)
        assert ok.returncode == 0, ok.stderr
        assert re.fullmatch(rf"ok: worker {name} beat \d+\.\d+s ago\n", ok.stdout)

        worker.kill()
        killed = time.monotonic()
        failed_at = wait_until(lambda: _failing_probe_start(redis_url), 30, "health to fail")
    assert failed_at - killed <= 10.0, f"health passed {failed_at - killed:.1f}s after the kill"

    with our_worker(tmp_path, redis_url) as new_worker:
        new_worker.wait_for_output("serving", 30)
        wait_until(lambda: health(redis_url).returncode == 0, 30, "health to pass again")


def test_health_with_a_config_module_reads_only_that_module(tmp_path: Path, redis_url: str) -> None:
    """``--config`` reads the settings module and imports no web framework."""
    probe = (
        "import sys\n"
        "from aiorq_flask.cli._main import main\n"
        "try:\n"
        "    main(['health', '--config', 'tests.apps.worker_settings'])\n"
        "finally:\n"
        "    print(sorted({'quart', 'flask', 'tests.apps.worker_app'} & set(sys.modules)))\n"
    )

    def run_probe() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-c", probe],
            cwd=ROOT,
            env=worker_env(redis_url),
            capture_output=True,
            text=True,
            timeout=60,
        )

    before = run_probe()
    assert (before.returncode, before.stdout) == (1, "[]\n"), before.stderr
    with our_worker(tmp_path, redis_url) as worker:
        worker.wait_for_output("serving", 30)
        done = run_probe()
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("ok: worker ") and done.stdout.endswith("[]\n")


def _failing_probe_start(redis_url: str) -> float | None:
    """When a health probe that failed started (``time.monotonic``); None if it passed."""
    started = time.monotonic()
    done = health(redis_url)
    if done.returncode == 0:
        return None
    assert done.returncode == 1, done.stderr
    return started


# -- suspend / resume ------------------------------------------------------------------------


def test_suspend_sets_rq_suspended_and_resume_deletes_it(
    app: Quart, capsys: pytest.CaptureFixture[str], sync_redis: redis.Redis
) -> None:
    code, out, _ = run_cli(app, capsys, "suspend", "--duration", "300")

    assert code == 0
    assert out == "suspended connection 'default' for 300s: workers take no new jobs\n"
    assert sync_redis.get("rq:suspended") == b"1"
    assert 0 < sync_redis.ttl("rq:suspended") <= 300

    assert run_cli(app, capsys, "resume")[:2] == (0, "resumed connection 'default'\n")
    assert not sync_redis.exists("rq:suspended")


def test_our_suspended_worker_takes_no_job_until_resumed(
    tmp_path: Path, redis_url: str, sync_redis: redis.Redis
) -> None:
    name = unique_name("suspended")
    with our_worker(tmp_path, redis_url, "--name", name) as worker:
        worker.wait_for_output("serving", 30)
        assert aiorq(redis_url, "suspend").returncode == 0
        (job_id,) = enqueue_jobs(redis_url, "tests.tasks.add", (1, 2))
        wait_until(lambda: _state(sync_redis, name) == b"suspended", 30, worker.output)
        assert status(sync_redis, job_id) == "queued"

        assert aiorq(redis_url, "resume").returncode == 0
        wait_until(lambda: status(sync_redis, job_id) == "finished", 30, worker.output)


def test_a_suspended_stock_rq_worker_takes_no_new_job_until_resumed(
    tmp_path: Path, redis_url: str, sync_redis: redis.Redis
) -> None:
    """Stock rq looks at the flag between jobs (and its CLI will not start while it is
    set): a worker already blocked waiting for a job takes that one job first."""
    name = unique_name("stock")
    with stock_worker(tmp_path, redis_url, name, "default") as worker:
        wait_until(lambda: _state(sync_redis, name) == b"idle", 30, worker.output)
        assert aiorq(redis_url, "suspend").returncode == 0
        (waited_for,) = enqueue_jobs(redis_url, "tests.tasks.add", (1, 2))
        wait_until(lambda: _state(sync_redis, name) == b"suspended", 30, worker.output)
        (job_id,) = enqueue_jobs(redis_url, "tests.tasks.add", (3, 4))
        assert status(sync_redis, waited_for) == "finished"
        assert status(sync_redis, job_id) == "queued"

        assert aiorq(redis_url, "resume").returncode == 0
        wait_until(lambda: status(sync_redis, job_id) == "finished", 30, worker.output)


def _state(client: redis.Redis, worker_name: str) -> bytes | None:
    state: bytes | None = client.hget(f"rq:worker:{worker_name}", "state")  # type: ignore[assignment]
    return state


# -- requeue, empty, cancel --------------------------------------------------------------------


def is_requeued(client: redis.Redis, queue: str, job_id: str) -> bool:
    """Queued as rq requeue leaves it: status, in the queue, out of the failed registry."""
    return (
        status(client, job_id) == "queued"
        and client.lpos(f"rq:queue:{queue}", job_id) is not None
        and client.zscore(f"rq:failed:{queue}", job_id) is None
    )


def test_requeue_by_id_by_queue_and_all(
    app: Quart, capsys: pytest.CaptureFixture[str], sync_redis: redis.Redis
) -> None:
    first, second = failed_jobs(app, "default", 2)
    (low,) = failed_jobs(app, "low", 1)

    assert run_cli(app, capsys, "requeue", first)[:2] == (0, "requeued 1 failed job(s)\n")
    assert is_requeued(sync_redis, "default", first)
    assert status(sync_redis, second) == "failed"

    assert run_cli(app, capsys, "requeue", "--all", "--queue", "low")[0] == 0
    assert is_requeued(sync_redis, "low", low)
    assert status(sync_redis, second) == "failed"

    assert run_cli(app, capsys, "requeue", "--all")[:2] == (0, "requeued 1 failed job(s)\n")
    assert is_requeued(sync_redis, "default", second)


def test_requeue_checks_every_named_job_before_moving_any(
    app: Quart, capsys: pytest.CaptureFixture[str], sync_redis: redis.Redis
) -> None:
    (failed,) = failed_jobs(app, "default", 1)
    (queued,) = enqueue_jobs(app.config["RQ_CONNECTION"], "tests.tasks.add", (1, 2))

    code, out, err = run_cli(app, capsys, "requeue", failed, queued)

    assert code == 2
    assert out == ""
    assert err == f"error: job {queued!r} is not in the failed registry of 'default'\n"
    assert status(sync_redis, failed) == "failed"


def test_requeue_of_an_unknown_job_fails_naming_it(
    app: Quart, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_cli(app, capsys, "requeue", "nope")

    assert code == 1
    assert err == "error: no job 'nope' on any queue of the app (default, low)\n"


def test_empty_deletes_the_waiting_jobs_of_one_queue(
    app: Quart, capsys: pytest.CaptureFixture[str], sync_redis: redis.Redis
) -> None:
    url = app.config["RQ_CONNECTION"]
    waiting = enqueue_jobs(url, "tests.tasks.add", (1, 2), count=3)
    (other,) = enqueue_jobs(url, "tests.tasks.add", (1, 2), queue="low")

    code, out, _ = run_cli(app, capsys, "empty", "default")

    assert code == 0
    assert out == "emptied queue 'default': 3 waiting job(s) deleted\n"
    assert sync_redis.llen("rq:queue:default") == 0
    assert not any(sync_redis.exists(f"rq:job:{job_id}") for job_id in waiting)
    assert status(sync_redis, other) == "queued"


def test_empty_of_an_unknown_queue_names_the_configured_ones(
    app: Quart, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_cli(app, capsys, "empty", "nope")[::2] == (
        2,
        "error: no queue named 'nope'; configured queues: default, low\n",
    )


def test_cancel_books_the_job_canceled(
    app: Quart, capsys: pytest.CaptureFixture[str], sync_redis: redis.Redis
) -> None:
    (job_id,) = enqueue_jobs(app.config["RQ_CONNECTION"], "tests.tasks.add", (1, 2), queue="low")

    code, out, _ = run_cli(app, capsys, "cancel", job_id)

    assert code == 0
    assert out == f"canceled job {job_id!r} of queue 'low'\n"
    assert status(sync_redis, job_id) == "canceled"
    assert sync_redis.zscore("rq:canceled:low", job_id) is not None
    assert sync_redis.llen("rq:queue:low") == 0

    assert run_cli(app, capsys, "cancel", job_id)[::2] == (
        1,
        f"error: job {job_id!r} is already canceled\n",
    )


# -- errors and entry points ---------------------------------------------------------------------


def test_an_unknown_connection_is_a_config_error(
    app: Quart, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_cli(app, capsys, "info", "--connection", "nope")[::2] == (
        2,
        "error: the app's config: unknown connection 'nope'; the connections are: 'default'\n",
    )


def test_redis_down_is_one_line_naming_the_server(
    make_quart_app: Callable[..., Quart], capsys: pytest.CaptureFixture[str]
) -> None:
    app = make_quart_app(RQ_CONNECTION="redis://127.0.0.1:1/0")
    AsyncRQ(app)

    code, _, err = run_cli(app, capsys, "info")

    assert code == 1
    assert err.startswith("error: Redis: ") and "127.0.0.1:1" in err
    assert err.count("\n") == 1


def test_a_broken_app_ends_the_command_in_one_line_without_traceback(redis_url: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "aiorq_flask", "info", "--app", "tests.apps.worker_app:app"],
        cwd=ROOT,
        env={k: v for k, v in worker_env(redis_url).items() if k != "WORKER_APP_REDIS_URL"},
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert done.returncode == 2
    assert done.stderr == (
        "error: importing the app module 'tests.apps.worker_app' failed: "
        "KeyError: 'WORKER_APP_REDIS_URL'\n"
    )


@pytest.mark.parametrize("entry", ["aiorq", "quart rq"])
def test_the_console_script_and_the_app_cli_run_the_same_commands(
    entry: str, redis_url: str
) -> None:
    if entry == "aiorq":
        argv = [str(BIN / "aiorq"), "info", "--json", "--app", APP]
    else:
        argv = [str(BIN / "quart"), "--app", APP, "rq", "info", "--json"]

    done = subprocess.run(
        argv, cwd=ROOT, env=worker_env(redis_url), capture_output=True, text=True, timeout=60
    )

    assert done.returncode == 0, done.stderr
    assert [c["name"] for c in json.loads(done.stdout)["connections"]] == ["default"]
