"""Worker subprocesses: ``python -m aiorq_flask.worker`` and ``quart rq worker``.

Real processes loading ``tests.apps.worker_app:app`` against the test server: the CLI
options, SIGTERM (grace period, putting jobs back, a second SIGTERM), SIGKILL with jobs
in flight, and a Redis restart. Every process runs in its own process group and is
killed (group-wide) when its test ends.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from .apps.worker_support import (
    APP,
    BIN,
    ROOT,
    Process,
    all_have_status,
    enqueue_calls,
    enqueue_jobs,
    is_registered,
    latest_result,
    other_db_url,
    our_worker,
    status,
    statuses,
    unique_name,
    wait_until,
    worker_env,
)
from .redis_server import RedisServer

TWO_CONNECTIONS = "default,email-priority,email"  # email queues on WORKER_APP_EMAIL_URL


# -- command line ------------------------------------------------------------------------------


def test_help_describes_every_worker_option() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "aiorq_flask.worker", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )

    assert done.returncode == 0, done.stderr
    for option in (
        "--app",
        "--connection",
        "--queues",
        "--concurrency",
        "--burst",
        "--max-jobs",
        "--name",
        "--heartbeat",
        "--grace-period",
        "--no-scheduler",
    ):
        assert option in done.stdout


def test_burst_worker_exits_0_when_the_queues_are_empty(
    tmp_path: Path, redis_url: str, sync_redis: redis.Redis
) -> None:
    name = unique_name("burst")
    with our_worker(tmp_path, redis_url, "--burst", "--name", name) as worker:
        assert worker.wait(20) == 0, worker.output()

    assert not is_registered(sync_redis, name)


def test_burst_worker_runs_the_waiting_jobs_then_exits_0(
    tmp_path: Path, redis_url: str, sync_redis: redis.Redis
) -> None:
    ids = enqueue_jobs(redis_url, "tests.tasks.add", (1, 2), count=3)

    with our_worker(tmp_path, redis_url, "--burst") as worker:
        assert worker.wait(20) == 0, worker.output()

    assert statuses(sync_redis, ids) == ["finished"] * 3


def test_max_jobs_worker_exits_0_after_that_many_jobs(
    tmp_path: Path, redis_url: str, sync_redis: redis.Redis
) -> None:
    ids = enqueue_jobs(redis_url, "tests.tasks.add", (1, 2), count=5)

    with our_worker(tmp_path, redis_url, "--max-jobs", "3") as worker:
        assert worker.wait(20) == 0, worker.output()

    assert sorted(statuses(sync_redis, ids)) == ["finished"] * 3 + ["queued"] * 2
    assert sync_redis.llen("rq:queue:default") == 2


def test_quart_rq_worker_burst_runs_the_waiting_jobs(
    tmp_path: Path, redis_url: str, sync_redis: redis.Redis
) -> None:
    ids = enqueue_jobs(redis_url, "tests.tasks.add", (1, 2), count=2)
    env = worker_env(redis_url) | {"QUART_APP": APP}

    with Process([str(BIN / "quart"), "rq", "worker", "--burst"], env, tmp_path / "q.log") as cli:
        assert cli.wait(20) == 0, cli.output()

    assert statuses(sync_redis, ids) == ["finished", "finished"]


def test_connection_option_serves_only_that_connections_queues(
    tmp_path: Path, redis_url: str, sync_redis: redis.Redis, email_redis: redis.Redis
) -> None:
    email_url = other_db_url(redis_url)
    email = enqueue_jobs(email_url, "tests.tasks.add", (1, 2), queue="email")
    default = enqueue_jobs(redis_url, "tests.tasks.add", (1, 2))

    options = ("--connection", "email", "--burst")

    with our_worker(
        tmp_path, redis_url, *options, queues=TWO_CONNECTIONS, email_url=email_url
    ) as worker:
        assert worker.wait(20) == 0, worker.output()

    assert statuses(email_redis, email) == ["finished"]
    assert statuses(sync_redis, default) == ["queued"]


def test_queues_option_naming_another_connections_queue_is_a_clear_error(
    tmp_path: Path, redis_url: str
) -> None:
    email_url = other_db_url(redis_url)
    options = ("--connection", "default", "--queues", "default,email", "--burst")

    with our_worker(
        tmp_path, redis_url, *options, queues=TWO_CONNECTIONS, email_url=email_url
    ) as worker:
        code = worker.wait(20)

    assert code != 0
    assert "'email' is not served by connection 'default'" in worker.output()


# -- signals -----------------------------------------------------------------------------------


def wait_started(client: redis.Redis, ids: list[str], worker: Process) -> None:
    wait_until(
        lambda: all_have_status(client, ids, "started") or worker.popen.poll() is not None,
        timeout=15,
        what=lambda: f"every job to start: {statuses(client, ids)}\n{worker.output()}",
    )
    assert worker.popen.poll() is None, worker.output()


def test_sigterm_lets_running_jobs_finish_then_exits_0(
    tmp_path: Path, redis_url: str, sync_redis: redis.Redis
) -> None:
    ids = enqueue_calls(
        redis_url, "tests.worker_jobs.async_record", [(redis_url, "done", v, 1) for v in "012"]
    )

    with our_worker(tmp_path, redis_url) as worker:
        wait_started(sync_redis, ids, worker)
        worker.signal(signal.SIGTERM)
        assert worker.wait(20) == 0, worker.output()

    assert statuses(sync_redis, ids) == ["finished"] * 3
    assert sorted(sync_redis.lrange("done", 0, -1)) == [b"0", b"1", b"2"]


def test_sigterm_puts_jobs_still_running_after_the_grace_period_back_and_exits_0(
    tmp_path: Path, redis_url: str, sync_redis: redis.Redis
) -> None:
    ids = enqueue_jobs(redis_url, "tests.tasks.async_sleep", (30,), count=3)

    with our_worker(tmp_path, redis_url, "--grace-period", "0.5") as worker:
        wait_started(sync_redis, ids, worker)
        worker.signal(signal.SIGTERM)
        assert worker.wait(20) == 0, worker.output()

    assert statuses(sync_redis, ids) == ["queued"] * 3
    assert sorted(sync_redis.lrange("rq:queue:default", 0, -1)) == sorted(i.encode() for i in ids)
    assert sync_redis.zcard("rq:wip:default") == 0


def test_second_sigterm_skips_the_grace_period(
    tmp_path: Path, redis_url: str, sync_redis: redis.Redis
) -> None:
    """The first SIGTERM is seen once the worker logs that it waits for its running jobs."""
    ids = enqueue_jobs(redis_url, "tests.tasks.async_sleep", (30,), count=2)

    with our_worker(tmp_path, redis_url, "--grace-period", "30") as worker:
        wait_started(sync_redis, ids, worker)
        worker.signal(signal.SIGTERM)
        worker.wait_for_output("waiting up to")
        worker.signal(signal.SIGTERM)
        assert worker.wait(10) == 0, worker.output()

    assert statuses(sync_redis, ids) == ["queued"] * 2


# -- crashes -----------------------------------------------------------------------------------


def test_jobs_of_a_sigkilled_worker_all_complete_on_the_next_worker(
    tmp_path: Path, redis_url: str, sync_redis: redis.Redis
) -> None:
    values = [str(i) for i in range(20)]
    ids = enqueue_calls(
        redis_url, "tests.worker_jobs.async_record", [(redis_url, "done", v, 2) for v in values]
    )
    options = ("--heartbeat", "1", "--concurrency", "20")

    with our_worker(tmp_path, redis_url, *options) as first:
        wait_started(sync_redis, ids, first)
        first.kill()
    with our_worker(tmp_path, redis_url, *options) as second:
        wait_until(
            lambda: all_have_status(sync_redis, ids, "finished") or second.popen.poll() is not None,
            timeout=30,
            what=lambda: f"every job to finish: {statuses(sync_redis, ids)}\n{second.output()}",
        )
        assert second.popen.poll() is None, second.output()

    assert [latest_result(sync_redis, i).return_value for i in ids] == values
    assert sorted(sync_redis.lrange("done", 0, -1)) == sorted(v.encode() for v in values)


def test_worker_process_reconnects_after_redis_restarts(
    tmp_path: Path, redis_server: RedisServer | None, redis_url: str, sync_redis: redis.Redis
) -> None:
    if redis_server is None:
        pytest.skip("needs the private redis-server (AIORQ_TEST_REDIS_URL is set)")
    name = unique_name("reconnect")

    with our_worker(tmp_path, redis_url, "--name", name, "--heartbeat", "1") as worker:
        wait_until(
            lambda: is_registered(sync_redis, name) or worker.popen.poll() is not None,
            what="the worker to register",
        )
        assert worker.popen.poll() is None, worker.output()
        try:
            redis_server.stop()
            worker.wait_for_output("WARNING")  # the idle worker has met the dead connection
        finally:
            if redis_server.process is None:
                redis_server.start()
        [job_id] = enqueue_jobs(redis_url, "tests.tasks.add", (1, 2))

        wait_until(
            lambda: status(sync_redis, job_id) == "finished" or worker.popen.poll() is not None,
            timeout=20,
            what=lambda: f"the job enqueued after the restart:\n{worker.output()}",
        )
        assert worker.popen.poll() is None, worker.output()
