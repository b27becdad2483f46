"""Overload and cancellation (issue 10, case 8): many callers on a small connection pool.

In-process: apps built like ``tests/conftest.py``'s ``make_quart_app``, each with a pool of
a few connections (``?max_connections=N``), and, where jobs must run, a worker on this same
event loop (``serving``) with a pool of its own, as a worker process would have. Every
batch of calls runs under a deadline, so a deadlock fails in seconds instead of hanging.

Then the same calls are cancelled at random await points: each task is cancelled after a
random number of loop steps, drawn from a fixed seed. No caller gets another caller's
reply; no job is half written (its hash has every field an enqueue writes, a queued id is
in its queue exactly once, a deferred id is booked where its parents' worker looks, and
every id in a queue has a hash); and nothing is left behind: no warning, no "Task was
destroyed" or "never retrieved" log line, no task still pending.

Redis is read through one Lua call per check (``snapshot``), so a check never sees a write
that landed halfway through it.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import random
import sys
import time
import warnings
import zlib
from collections import Counter
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

import pytest
import redis
from quart import Quart

from aiorq_flask import AsyncRQ
from aiorq_flask.job import Job, Result
from aiorq_flask.queue import Queue
from aiorq_flask.serializer import MsgpackSerializer
from aiorq_flask.worker import Worker

from ..apps.worker_support import burst, serving, within
from .conftest import Figures

SEED = 10
ECHO = "tests.tasks.echo"
ADD = "tests.tasks.add"
DEADLINE = 20.0  # for a batch that takes a second or two when nothing is stuck
MAX_STEPS = 64  # a cancelled task is cancelled after fewer loop steps than this
UNCANCELLED_SHARE = 0.25  # this share of the tasks in a cancelled batch is left to finish

# The fields scripts/enqueue.lua writes on every job (spec §3); a queued job also has
# ``enqueued_at``, a dependent one its parents' ids.
JOB_FIELDS = frozenset(
    {
        "status",
        "created_at",
        "data",
        "success_callback_name",
        "failure_callback_name",
        "stopped_callback_name",
        "started_at",
        "ended_at",
        "last_heartbeat",
        "worker_name",
        "group_id",
        "origin",
        "description",
        "timeout",
    }
)
DEPENDENT_FIELDS = frozenset({"dependency_id", "dependency_ids"})


# -- apps ----------------------------------------------------------------------------------------


@pytest.fixture
async def queue_on_pool_of(
    make_quart_app: Callable[..., Quart], redis_url: str
) -> AsyncIterator[Callable[[int], Queue]]:
    """``queue_on_pool_of(n)``: the default queue of a new app whose pool holds ``n``
    connections; every such app's pools are closed at the end."""
    rqs: list[tuple[AsyncRQ, Quart]] = []

    def make(size: int) -> Queue:
        app = make_quart_app(RQ_CONNECTION=f"{redis_url}?max_connections={size}")
        rq = AsyncRQ(app)
        rqs.append((rq, app))
        return rq.state(app).get_queue("default")

    yield make
    for rq, app in rqs:
        await rq.state(app).pools.aclose()


@pytest.fixture
async def make_worker(make_quart_app: Callable[..., Quart]) -> AsyncIterator[Callable[[], Worker]]:
    """A worker for this loop, on an app and pool of its own (as a worker process has)."""
    app = make_quart_app()
    rq = AsyncRQ(app)
    yield lambda: rq.make_worker(app=app)
    await rq.state(app).pools.aclose()


# -- nothing left behind -------------------------------------------------------------------------


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture(autouse=True)
async def nothing_left_behind() -> AsyncIterator[None]:
    """Fail a test that leaves a warning (a coroutine never awaited, an unclosed
    transport), an unraisable exception, an asyncio log line ("Task was destroyed but it is
    pending", "Task exception was never retrieved") or a pending task.

    Set up before the test's apps and torn down after their pools are closed; a garbage
    collection first, so that what is dropped is reported now.
    """
    unraisable: list[str] = []
    previous_hook = sys.unraisablehook

    def hook(info: Any) -> None:
        unraisable.append(f"{info.exc_value!r} in {info.object!r}")

    asyncio_log = _Records()
    logging.getLogger("asyncio").addHandler(asyncio_log)
    sys.unraisablehook = hook
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield
            pending = asyncio.all_tasks() - {asyncio.current_task()}
            gc.collect()
            gc.collect()
    finally:
        sys.unraisablehook = previous_hook
        logging.getLogger("asyncio").removeHandler(asyncio_log)
    assert [str(w.message) for w in caught] == []
    assert unraisable == []
    assert asyncio_log.lines == []
    assert pending == set()


# -- cancelling at random await points -----------------------------------------------------------


def random_steps(rng: random.Random) -> int:
    """Fewer than MAX_STEPS loop steps, log-uniform: a call spends only its first steps in
    each of its first await points, so those are drawn as often as the later ones."""
    return int(MAX_STEPS ** rng.random()) - 1


async def _cancel_after(task: asyncio.Task[Any], steps: int) -> None:
    for _ in range(steps):
        await asyncio.sleep(0)  # one loop step: how far the task gets before its cancel
    task.cancel()


async def cancelled_at_random_points(
    calls: Sequence[Coroutine[Any, Any, Any]], rng: random.Random
) -> list[Any]:
    """Run each call as a task and cancel most of them, each after a random number of loop
    steps; return each task's result or exception (``CancelledError`` if cancelled)."""
    tasks = [asyncio.create_task(call) for call in calls]
    cancellers = [
        asyncio.create_task(_cancel_after(task, random_steps(rng)))
        for task in tasks
        if rng.random() >= UNCANCELLED_SHARE
    ]
    outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    await asyncio.gather(*cancellers)
    return outcomes


async def cancelled_in_two_batches(
    make_call: Callable[[int], Coroutine[Any, Any, Any]], count: int, rng: random.Random
) -> list[Any]:
    """``cancelled_at_random_points`` for calls 0..count-1, in two batches: the second
    finds open the connections the first had to open, so it is cancelled at other points."""
    half = count // 2
    first = await cancelled_at_random_points([make_call(i) for i in range(half)], rng)
    second = await cancelled_at_random_points([make_call(i) for i in range(half, count)], rng)
    return first + second


async def after_random_steps(call: Coroutine[Any, Any, Any], steps: int) -> Any:
    """``call``, started after ``steps`` loop steps (to spread calls over other calls)."""
    for _ in range(steps):
        await asyncio.sleep(0)  # one loop step
    return await call


def split(outcomes: list[Any]) -> tuple[dict[int, Any], int]:
    """The results of the completed calls by index, and how many were cancelled; any
    other exception fails the test."""
    errors = [o for o in outcomes if isinstance(o, BaseException)]
    cancelled = [o for o in errors if isinstance(o, asyncio.CancelledError)]
    assert len(errors) == len(cancelled), [o for o in errors if o not in cancelled][:3]
    done = {i: o for i, o in enumerate(outcomes) if not isinstance(o, BaseException)}
    return done, len(cancelled)


# -- reading Redis in one step -------------------------------------------------------------------

_SNAPSHOT = """
local hashes, sets = {}, {}
for _, key in ipairs(redis.call('KEYS', 'rq:job:*')) do
  local kind = redis.call('TYPE', key)['ok']
  if kind == 'hash' then
    hashes[#hashes + 1] = {key, redis.call('HGETALL', key)}
  elseif kind == 'set' then
    sets[#sets + 1] = {key, redis.call('SMEMBERS', key)}
  end
end
return {hashes, sets, redis.call('LRANGE', KEYS[1], 0, -1), redis.call('ZRANGE', KEYS[2], 0, -1)}
"""


@dataclass(frozen=True)
class Snapshot:
    """The default queue's jobs as one atomic read saw them."""

    jobs: dict[str, dict[str, bytes]]  # rq:job:<id> hashes by id
    sets: dict[str, set[str]]  # rq:job:<id>:dependents and the like, by key
    queue: list[str]  # rq:queue:default
    deferred: set[str]  # rq:deferred:default

    def args(self, job_id: str) -> list[Any]:
        """The positional arguments stored in the job's ``data`` (spec §3.2)."""
        data = self.jobs[job_id]["data"]
        with contextlib.suppress(zlib.error):  # else stored uncompressed, as rq accepts too
            data = zlib.decompress(data)
        _func, _instance, args, _kwargs = MsgpackSerializer.loads(data)
        return list(args)

    def status(self, job_id: str) -> str | None:
        fields = self.jobs.get(job_id)
        return None if fields is None else fields["status"].decode()


def snapshot(client: redis.Redis) -> Snapshot:
    hashes, sets, queue, deferred = client.eval(  # type: ignore[misc]
        _SNAPSHOT, 2, "rq:queue:default", "rq:deferred:default"
    )
    return Snapshot(
        jobs={
            key.decode().removeprefix("rq:job:"): {
                flat[i].decode(): flat[i + 1] for i in range(0, len(flat), 2)
            }
            for key, flat in hashes
        },
        sets={key.decode(): {m.decode() for m in members} for key, members in sets},
        queue=[job_id.decode() for job_id in queue],
        deferred={job_id.decode() for job_id in deferred},
    )


def half_written(state: Snapshot) -> list[str]:
    """Every way a job in ``state`` is not whole, one line each."""
    problems = []
    in_queue = Counter(state.queue)
    for job_id, fields in state.jobs.items():
        status = fields.get("status", b"").decode()
        missing = JOB_FIELDS - set(fields)
        if "dependency_id" in fields or "dependency_ids" in fields:
            missing |= DEPENDENT_FIELDS - set(fields)
        if status == "queued":
            missing |= {"enqueued_at"} - set(fields)
        if missing:
            problems.append(f"{job_id}: no {', '.join(sorted(missing))}")
        if status == "queued" and in_queue[job_id] != 1:
            problems.append(f"{job_id}: queued, {in_queue[job_id]} times in the queue")
        if status == "deferred":
            parent = fields.get("dependency_id", b"").decode()
            if job_id not in state.deferred:
                problems.append(f"{job_id}: deferred, not in rq:deferred:default")
            if job_id not in state.sets.get(f"rq:job:{parent}:dependents", set()):
                problems.append(f"{job_id}: deferred, not among {parent}'s dependents")
    problems += [
        f"{job_id}: in the queue, no hash" for job_id in state.queue if job_id not in state.jobs
    ]
    return problems


# -- all complete without deadlock ---------------------------------------------------------------


async def test_a_thousand_concurrent_enqueues_through_a_pool_of_five_all_complete(
    queue_on_pool_of: Callable[[int], Queue], sync_redis: redis.Redis, figures: Figures
) -> None:
    queue = queue_on_pool_of(5)

    started = time.monotonic()
    jobs: list[Job] = await within(
        asyncio.gather(*(queue.enqueue(ECHO, f"call-{i}") for i in range(1000))),
        DEADLINE,
        "1,000 concurrent enqueues on a pool of 5",
    )
    figures.record("1,000 concurrent enqueues, pool of 5 (s)", f"{time.monotonic() - started:.2f}")

    state = snapshot(sync_redis)
    assert [state.args(job.id) for job in jobs] == [[f"call-{i}"] for i in range(1000)]
    assert sorted(state.queue) == sorted(job.id for job in jobs)
    assert half_written(state) == []


async def test_two_hundred_concurrent_depends_on_enqueues_through_a_pool_of_two_all_complete(
    queue_on_pool_of: Callable[[int], Queue],
    make_worker: Callable[[], Worker],
    sync_redis: redis.Redis,
    figures: Figures,
) -> None:
    queue = queue_on_pool_of(2)
    finished = [await queue.enqueue(ECHO, f"parent-{i}") for i in range(10)]
    await burst(make_worker())
    waiting = [await queue.enqueue(ECHO, f"parent-{i}") for i in range(10, 20)]
    parents = [job.id for pair in zip(finished, waiting, strict=True) for job in pair]

    started = time.monotonic()
    children: list[Job] = await within(
        asyncio.gather(
            *(queue.enqueue(ECHO, f"child-{i}", depends_on=parents[i % 20]) for i in range(200))
        ),
        DEADLINE,
        "200 concurrent depends_on enqueues on a pool of 2",
    )
    figures.record(
        "200 concurrent depends_on enqueues, pool of 2 (s)", f"{time.monotonic() - started:.2f}"
    )

    state = snapshot(sync_redis)
    assert [state.args(job.id) for job in children] == [[f"child-{i}"] for i in range(200)]
    assert [state.status(job.id) for job in children] == ["queued", "deferred"] * 100
    assert half_written(state) == []


async def test_a_hundred_result_waiters_on_a_pool_of_five_each_get_their_own_jobs_value(
    queue_on_pool_of: Callable[[int], Queue],
    make_worker: Callable[[], Worker],
    sync_redis: redis.Redis,
    figures: Figures,
) -> None:
    queue = queue_on_pool_of(5)
    jobs = await queue.enqueue_many(queue.prepare_data(ADD, (i, 1000)) for i in range(100))

    started = time.monotonic()
    waiters = asyncio.gather(*(job.latest_result(timeout=20) for job in jobs))
    async with serving(make_worker(), sync_redis):
        results: list[Result | None] = await within(
            waiters, DEADLINE, "100 result waiters on a pool of 5"
        )
    figures.record("100 result waiters, pool of 5 (s)", f"{time.monotonic() - started:.2f}")

    assert [r.return_value if r else None for r in results] == [i + 1000 for i in range(100)]


# -- cancelled at random await points ------------------------------------------------------------


async def test_enqueues_cancelled_at_random_points_leave_only_whole_jobs_of_their_own_calls(
    queue_on_pool_of: Callable[[int], Queue], sync_redis: redis.Redis, figures: Figures
) -> None:
    rng = random.Random(SEED)
    queue = queue_on_pool_of(5)

    outcomes = await within(
        cancelled_in_two_batches(lambda i: queue.enqueue(ECHO, f"call-{i}"), 400, rng),
        DEADLINE,
        "400 enqueues, most cancelled",
    )
    await queue.multiplexer.execute_command("PING")  # replies come in order: all are in
    done, cancelled = split(outcomes)
    figures.record("enqueues completed / cancelled", f"{len(done)} / {cancelled}")

    state = snapshot(sync_redis)
    figures.record("jobs written by a cancelled enqueue", len(state.jobs) - len(done))
    assert {i: state.args(job.id) for i, job in done.items()} == {i: [f"call-{i}"] for i in done}
    assert half_written(state) == []


async def test_commands_cancelled_at_random_points_never_hand_a_caller_another_callers_reply(
    queue_on_pool_of: Callable[[int], Queue],
) -> None:
    rng = random.Random(SEED)
    queue = queue_on_pool_of(5)

    outcomes = await within(
        cancelled_in_two_batches(
            lambda i: queue.multiplexer.execute_command("ECHO", f"reply-{i}"), 400, rng
        ),
        DEADLINE,
        "400 multiplexed commands, most cancelled",
    )
    done, _cancelled = split(outcomes)

    assert done == {i: f"reply-{i}".encode() for i in done}
    assert await queue.multiplexer.execute_command("ECHO", "last") == b"last"


async def test_depends_on_enqueues_cancelled_at_random_points_leave_only_whole_jobs(
    queue_on_pool_of: Callable[[int], Queue],
    make_worker: Callable[[], Worker],
    sync_redis: redis.Redis,
    figures: Figures,
) -> None:
    rng = random.Random(SEED)
    queue = queue_on_pool_of(2)
    finished = [await queue.enqueue(ECHO, f"parent-{i}") for i in range(5)]
    await burst(make_worker())
    waiting = [await queue.enqueue(ECHO, f"parent-{i}") for i in range(5, 10)]
    parents = [job.id for pair in zip(finished, waiting, strict=True) for job in pair]

    outcomes = await within(
        cancelled_at_random_points(
            [queue.enqueue(ECHO, f"child-{i}", depends_on=parents[i % 10]) for i in range(200)],
            rng,
        ),
        DEADLINE,
        "200 depends_on enqueues on a pool of 2, most cancelled",
    )
    done, cancelled = split(outcomes)
    figures.record("depends_on enqueues completed / cancelled", f"{len(done)} / {cancelled}")

    state = snapshot(sync_redis)
    assert {i: state.args(job.id) for i, job in done.items()} == {i: [f"child-{i}"] for i in done}
    assert {i: state.status(job.id) for i, job in done.items()} == {
        i: "queued" if i % 2 == 0 else "deferred" for i in done
    }
    assert half_written(state) == []


async def test_result_waits_cancelled_at_random_points_leave_the_pool_serving_right_replies(
    queue_on_pool_of: Callable[[int], Queue],
    make_worker: Callable[[], Worker],
    sync_redis: redis.Redis,
    figures: Figures,
) -> None:
    rng = random.Random(SEED)
    queue = queue_on_pool_of(5)
    jobs = await queue.enqueue_many(queue.prepare_data(ADD, (i, 1000)) for i in range(100))
    waits = [job.latest_result(timeout=20) for job in jobs]

    async with serving(make_worker(), sync_redis):
        outcomes = await within(
            cancelled_at_random_points(waits, rng), DEADLINE, "100 result waits, most cancelled"
        )
        done, cancelled = split(outcomes)
        figures.record("result waits completed / cancelled", f"{len(done)} / {cancelled}")
        again: list[Result | None] = await within(
            asyncio.gather(*(job.latest_result(timeout=20) for job in jobs)),
            DEADLINE,
            "100 result waits after the cancelled ones",
        )

    assert {i: r.return_value if r else None for i, r in done.items()} == {
        i: i + 1000 for i in done
    }
    assert [r.return_value if r else None for r in again] == [i + 1000 for i in range(100)]


async def test_queue_empty_racing_concurrent_enqueues_leaves_no_orphaned_hash(
    queue_on_pool_of: Callable[[int], Queue], sync_redis: redis.Redis
) -> None:
    rng = random.Random(SEED)
    queue = queue_on_pool_of(5)
    emptied = 0
    for round_ in range(20):
        calls = [
            after_random_steps(queue.enqueue(ECHO, f"call-{round_}-{i}"), random_steps(rng))
            for i in range(25)
        ]
        *_jobs, removed = await within(
            asyncio.gather(*calls, after_random_steps(queue.empty(), rng.randrange(10))),
            DEADLINE,
            "enqueues racing Queue.empty",
        )
        emptied += removed

    state = snapshot(sync_redis)
    orphans = [job_id for job_id in state.jobs if job_id not in state.queue]
    assert orphans == []
    assert emptied + len(state.queue) == 20 * 25
