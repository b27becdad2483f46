"""SIGKILLed workers lose no job, and only the jobs a killed worker held run again.

A worker process (``--heartbeat 1``) is killed with SIGKILL, which it cannot see coming:
mid-drain, three times in a row, and while Redis holds its writes (``CLIENT PAUSE WRITE``)
so that jobs have ended but their outcomes are not recorded. A new worker (a new process,
its own random name) is started after each kill; once the dead worker's ``rq:wip`` scores
have passed and its registration is gone, the live worker's sweep puts the dead worker's
jobs back on their queue and runs them.

What a killed worker held is read from ``rq:worker:<name>:executions`` once Redis has
closed its connections (so every command it sent has been run): the jobs it claimed and
had not recorded the end of. Only those may run twice.
"""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from ..apps.worker_support import (
    all_have_status,
    enqueue_calls,
    latest_result,
    our_worker,
    statuses,
)
from ..redis_server import RedisServer
from .conftest import Figures
from .support import (
    file_runs,
    held_job_ids,
    named_client,
    private_redis,
    trace_counts,
    wait_for_disconnect,
    wait_while_alive,
    worker_name,
)

TRACE = "trace"  # the list tests.worker_jobs.record pushes each job's value to


@pytest.fixture
def server() -> Iterator[RedisServer]:
    with private_redis() as server:
        yield server


@pytest.fixture
def client(server: RedisServer) -> Iterator[redis.Redis]:
    client = named_client(server.url)
    yield client
    client.close()


# -- SIGKILL x3 ------------------------------------------------------------------------------------

JOBS = 2000
KILLS = 3
CONCURRENCY = 8
PREFETCH = 2
DRAIN_OPTIONS = (
    "--heartbeat",
    "1",
    "--concurrency",
    str(CONCURRENCY),
    "--prefetch",
    str(PREFETCH),
)


def ended_at(client: redis.Redis, job_id: str) -> float:
    """When the job's recorded run ended (epoch seconds, from its latest result)."""
    outcome = latest_result(client, job_id)
    assert outcome is not None, f"job {job_id} has no result"
    return float(outcome.fields["execution_ended_at"])


def traced_runs_reach(client: redis.Redis, count: int) -> Callable[[], bool]:
    return lambda: client.llen(TRACE) >= count


@dataclass(frozen=True)
class Kill:
    at: float  # epoch seconds
    held: frozenset[str]  # ids of the jobs the killed worker had claimed and not recorded


def test_three_sigkills_mid_drain_lose_no_job_and_rerun_only_jobs_in_flight(
    tmp_path: Path, server: RedisServer, client: redis.Redis, figures: Figures
) -> None:
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    figures.record("seed", seed)
    values = [str(i) for i in range(JOBS)]
    calls = [(server.url, TRACE, value) for value in values]
    ids = enqueue_calls(server.url, "tests.worker_jobs.record", calls)
    kills: list[Kill] = []

    with contextlib.ExitStack() as processes:
        for _ in range(KILLS):
            worker = processes.enter_context(our_worker(tmp_path, server.url, *DRAIN_OPTIONS))
            name = worker_name(client, worker)
            target = client.llen(TRACE) + rng.randint(150, 400)  # a random point of the drain
            wait_while_alive(worker, traced_runs_reach(client, target), 30, f"{target} runs")
            worker.kill()
            at = time.time()
            wait_for_disconnect(client)
            kills.append(Kill(at, frozenset(held_job_ids(client, name))))
        last = processes.enter_context(our_worker(tmp_path, server.url, *DRAIN_OPTIONS))
        wait_while_alive(
            last,
            lambda: all_have_status(client, ids, "finished"),
            40,
            "every job to finish",
        )

    runs = trace_counts(client, TRACE)
    id_of = dict(zip(values, ids, strict=True))
    reruns = [[v for v in values if runs[v] > 1 and id_of[v] in kill.held] for kill in kills]
    # A job runs once, plus at most once more per kill that caught it in flight.
    live_reruns = [v for v in values if runs[v] > 1 + sum(id_of[v] in k.held for k in kills)]
    for number, (kill, rerun) in enumerate(zip(kills, reruns, strict=True), 1):
        figures.record(f"jobs held at kill {number}", len(kill.held))
        figures.record(f"re-runs after kill {number}", len(rerun))
        if kill.held:
            recovered = max(ended_at(client, i) for i in kill.held)
            figures.record(f"recovery after kill {number} (s)", round(recovered - kill.at, 2))
    figures.record("live jobs run twice", len(live_reruns))
    assert statuses(client, ids) == ["finished"] * JOBS
    assert [v for v in values if runs[v] == 0] == []
    assert live_reruns == [], seed
    assert all(kill.held for kill in kills), f"a kill came after the drain (seed {seed})"


# -- SIGKILL during finish ------------------------------------------------------------------------


def script_connection_held(client: redis.Redis) -> bool:
    """A worker's script connection is blocked by ``CLIENT PAUSE WRITE``. Claims, outcomes
    and upkeep share that one connection, in order: nothing sent after it runs either."""
    return any(
        c.get("cmd") == "evalsha" and "b" in c.get("flags", "") for c in client.client_list()
    )


def test_sigkill_before_outcomes_are_recorded_reruns_those_jobs_with_one_final_result(
    tmp_path: Path, server: RedisServer, client: redis.Redis, figures: Figures
) -> None:
    runs_dir = tmp_path / "runs"
    runs_dir.mkdir()
    ended = [f"ended-{i}" for i in range(4)]  # end while Redis refuses writes
    running = [f"running-{i}" for i in range(2)]  # still running at the kill
    waiting = [f"waiting-{i}" for i in range(3)]  # never claimed by the killed worker
    calls = [(str(runs_dir), "first", v) for v in ended]
    calls += [(str(runs_dir), "second", v) for v in running]
    calls += [(str(runs_dir), "first", v) for v in waiting]
    ids = enqueue_calls(server.url, "tests.faults.support.gated_trace", calls)
    values = ended + running + waiting
    id_of = dict(zip(values, ids, strict=True))
    options = ("--heartbeat", "1", "--concurrency", "6", "--prefetch", "0")

    with our_worker(tmp_path, server.url, *options) as worker:
        name = worker_name(client, worker)
        first_six = [id_of[v] for v in ended + running]
        wait_while_alive(
            worker, lambda: all_have_status(client, first_six, "started"), 15, "six jobs to start"
        )
        client.execute_command("CLIENT", "PAUSE", 30_000, "WRITE")
        try:
            (runs_dir / "first").touch()
            wait_while_alive(
                worker, lambda: all(file_runs(runs_dir, v) for v in ended), 15, "four jobs to end"
            )
            wait_while_alive(
                worker, lambda: script_connection_held(client), 10, "the pause to hold a script"
            )
            worker.kill()
            killed_at = time.time()
            wait_for_disconnect(client)
            held = held_job_ids(client, name)
        finally:
            client.execute_command("CLIENT", "UNPAUSE")
    (runs_dir / "second").touch()
    with our_worker(tmp_path, server.url, *options) as rescuer:
        wait_while_alive(
            rescuer, lambda: all_have_status(client, ids, "finished"), 30, "every job to finish"
        )

    ran_twice = {v for v in values if file_runs(runs_dir, v) == 2}
    figures.record("jobs run twice", len(ran_twice))
    figures.record("live jobs run twice", len({v for v in ran_twice if id_of[v] not in held}))
    recovered = max(ended_at(client, i) for i in held)
    figures.record("recovery after the kill (s)", round(recovered - killed_at, 2))
    assert held == set(first_six)
    assert {v: file_runs(runs_dir, v) for v in values} == {
        **dict.fromkeys(ended, 2),
        **dict.fromkeys(running, 1),
        **dict.fromkeys(waiting, 1),
    }
    assert [client.xlen(f"rq:results:{i}") for i in ids] == [1] * len(ids)
    assert [latest_result(client, i).return_value for i in ids] == values
