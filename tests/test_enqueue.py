"""Queue: the enqueue write path of spec §5.1-5.3 and bad input, against a real redis-server."""

from __future__ import annotations

import asyncio
import json
import os
import re
import time
import uuid
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import msgpack  # type: ignore[import-untyped]
import pytest
import redis
from quart import Quart
from rq.utils import get_call_string

from aiorq_flask import (
    AsyncRQ,
    EnqueueData,
    InvalidJobError,
    Job,
    JobStatus,
    Queue,
    Retry,
    SerializationError,
)
from aiorq_flask.job import new_job_id

from . import job_funcs, tasks
from .redis_server import RedisServer, free_port

TS = re.compile(rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")
EMPTY_FIELDS = (
    b"success_callback_name",
    b"failure_callback_name",
    b"stopped_callback_name",
    b"started_at",
    b"ended_at",
    b"last_heartbeat",
    b"worker_name",
    b"group_id",
)
RQ_FIELDS = {
    b"status",
    b"created_at",
    b"data",
    *EMPTY_FIELDS,
    b"origin",
    b"description",
    b"enqueued_at",
    b"timeout",
}


@pytest.fixture
def queue(quart_rq: AsyncRQ) -> Queue:
    return quart_rq.queue


def command_calls(client: redis.Redis) -> Counter[str]:
    """Calls per command since the server started, from ``INFO commandstats``.

    Redis 7 counts each subcommand apart (``script|load``), 6.2 under its command
    (``script``): both are counted as the command, so one expectation holds on either.
    """
    calls: Counter[str] = Counter()
    for name, stats in client.info("commandstats").items():
        calls[name.removeprefix("cmdstat_").partition("|")[0]] += stats["calls"]
    return calls


def commands_sent(before: Counter[str], after: Counter[str]) -> dict[str, int]:
    """The commands other clients sent between two snapshots (our own INFO left out)."""
    delta = after - before
    del delta["info"]
    return dict(delta)


def parse_ts(value: bytes) -> datetime:
    return datetime.strptime(value.decode(), "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)


def assert_recent(moment: datetime) -> None:
    now = datetime.now(timezone.utc)
    assert now - timedelta(seconds=10) <= moment <= now


class Greeter:
    def greet(self) -> str:
        return "hello"


def nested_function_factory() -> Callable[[], int]:
    def nested() -> int:
        return 1

    return nested


# -- the job hash ------------------------------------------------------------------------


async def test_enqueue_writes_exactly_rqs_fifteen_job_fields(
    queue: Queue, sync_redis: redis.Redis
) -> None:
    job = await queue.enqueue(tasks.add, 1, 2)

    assert set(sync_redis.hgetall(f"rq:job:{job.id}")) == RQ_FIELDS


async def test_enqueue_writes_status_queued(queue: Queue, sync_redis: redis.Redis) -> None:
    job = await queue.enqueue(tasks.add, 1, 2)

    assert sync_redis.hget(f"rq:job:{job.id}", "status") == b"queued"


async def test_enqueue_writes_the_queue_name_as_origin(
    quart_rq: AsyncRQ, sync_redis: redis.Redis
) -> None:
    job = await quart_rq.get_queue("low").enqueue(tasks.add, 1, 2)

    assert sync_redis.hget(f"rq:job:{job.id}", "origin") == b"low"


async def test_enqueue_writes_rqs_default_timeout_of_180(
    queue: Queue, sync_redis: redis.Redis
) -> None:
    job = await queue.enqueue(tasks.add, 1, 2)

    assert sync_redis.hget(f"rq:job:{job.id}", "timeout") == b"180"


@pytest.mark.parametrize("field", [b"created_at", b"enqueued_at"])
async def test_enqueue_timestamps_use_rqs_format_in_utc(
    queue: Queue, sync_redis: redis.Redis, field: bytes
) -> None:
    job = await queue.enqueue(tasks.add, 1, 2)

    value = sync_redis.hget(f"rq:job:{job.id}", field)
    assert value is not None and TS.fullmatch(value)
    assert_recent(parse_ts(value))


async def test_enqueue_data_is_zlib_of_a_msgpack_array_of_func_none_args_kwargs(
    queue: Queue, sync_redis: redis.Redis
) -> None:
    job = await queue.enqueue(tasks.add, 1, 2, c=3)

    data = sync_redis.hget(f"rq:job:{job.id}", "data")
    assert data is not None and data.startswith(b"x\x9c")
    payload = [job.func_name, None, [1, 2], {"c": 3}]
    assert msgpack.unpackb(zlib.decompress(data), raw=False) == payload
    assert data == zlib.compress(msgpack.packb(payload, use_bin_type=True))


async def test_enqueue_data_matches_the_spec_example_bytes(
    queue: Queue, sync_redis: redis.Redis
) -> None:
    job = await queue.enqueue("rqtasks.add", 1, 2, c=3)

    assert sync_redis.hget(f"rq:job:{job.id}", "data") == (
        b"x\x9c\x9b\xb2\xba\xa8\xb0$\xb18\xbbX/1%\xe5\xc0$F\xa6\xc6\x85\xc9\xcc\x00f\xac\x08}"
    )


async def test_enqueue_stores_the_function_as_its_dotted_path(queue: Queue) -> None:
    job = await queue.enqueue(tasks.add, 1, 2)

    fetched = await Job.fetch(job.id, queue.connection)
    assert fetched.func_name == "tests.tasks.add"


async def test_enqueue_description_is_rqs_call_string(
    queue: Queue, sync_redis: redis.Redis
) -> None:
    args = ("x" * 100, 2)
    kwargs = {"zeta": [1, 2], "alpha": "a", "mid": "y" * 80}

    job = await queue.enqueue(tasks.echo, *args, **kwargs)

    expected = get_call_string("tests.tasks.echo", args, kwargs, max_length=75)
    assert expected is not None
    assert sync_redis.hget(f"rq:job:{job.id}", "description") == expected.encode()


async def test_enqueue_writes_empty_strings_for_unset_fields(
    queue: Queue, sync_redis: redis.Redis
) -> None:
    job = await queue.enqueue(tasks.add, 1, 2)

    mapping = sync_redis.hgetall(f"rq:job:{job.id}")
    assert {name: mapping[name] for name in EMPTY_FIELDS} == dict.fromkeys(EMPTY_FIELDS, b"")


async def test_enqueue_sets_no_ttl_on_the_job_hash_by_default(
    queue: Queue, sync_redis: redis.Redis
) -> None:
    job = await queue.enqueue(tasks.add, 1, 2)

    assert sync_redis.ttl(f"rq:job:{job.id}") == -1


async def test_enqueue_adds_the_queue_key_to_rq_queues(
    queue: Queue, sync_redis: redis.Redis
) -> None:
    await queue.enqueue(tasks.add, 1, 2)

    assert sync_redis.smembers("rq:queues") == {b"rq:queue:default"}


async def test_enqueue_appends_the_id_to_the_end_of_the_queue(
    queue: Queue, sync_redis: redis.Redis
) -> None:
    first = await queue.enqueue(tasks.add, 1, 2)
    second = await queue.enqueue(tasks.add, 3, 4)

    assert sync_redis.lrange("rq:queue:default", 0, -1) == [first.id.encode(), second.id.encode()]


async def test_enqueue_at_front_puts_the_id_first(queue: Queue, sync_redis: redis.Redis) -> None:
    first = await queue.enqueue(tasks.add, 1, 2)
    second = await queue.enqueue(tasks.add, 3, 4, at_front=True)

    assert sync_redis.lrange("rq:queue:default", 0, -1) == [second.id.encode(), first.id.encode()]


async def test_enqueue_returns_the_job_as_written(queue: Queue) -> None:
    job = await queue.enqueue(tasks.add, 1, 2, c=3)

    assert (job.func_name, job.args, job.kwargs) == ("tests.tasks.add", [1, 2], {"c": 3})
    assert (job.origin, job.status, job.timeout) == ("default", JobStatus.QUEUED, 180)
    assert job.description == "tests.tasks.add(1, 2, c=3)"


async def test_enqueue_generates_an_id_rq_accepts(queue: Queue) -> None:
    job = await queue.enqueue(tasks.add, 1, 2)

    assert re.fullmatch(r"[A-Za-z0-9_-]+", job.id)


def test_generated_ids_are_random_version_4_uuids_as_32_hex_digits() -> None:
    ids = [new_job_id() for _ in range(1000)]

    assert all(re.fullmatch(r"[0-9a-f]{32}", job_id) for job_id in ids)
    assert all(uuid.UUID(job_id).version == 4 for job_id in ids)
    assert all(uuid.UUID(job_id).variant == uuid.RFC_4122 for job_id in ids)
    assert len(set(ids)) == 1000


# -- round trips -----------------------------------------------------------------------


async def test_enqueue_sends_one_script_call_writing_hset_sadd_rpush(
    queue: Queue, sync_redis: redis.Redis
) -> None:
    await queue.enqueue(tasks.add, 0, 0)  # open the pooled connection, load the script
    before = command_calls(sync_redis)

    await queue.enqueue(tasks.add, 1, 2)

    sent = commands_sent(before, command_calls(sync_redis))
    assert sent == {"evalsha": 1, "hset": 1, "sadd": 1, "rpush": 1}


async def test_enqueue_many_of_100_jobs_sends_one_multi(
    queue: Queue, sync_redis: redis.Redis
) -> None:
    prepared = [queue.prepare_data(tasks.add, (i, i)) for i in range(100)]
    await queue.connection.ping()  # open the pooled connection first
    before = command_calls(sync_redis)

    await queue.enqueue_many(prepared)

    sent = commands_sent(before, command_calls(sync_redis))
    assert sent == {
        "multi": 1,
        "script": 1,  # SCRIPT LOAD
        "evalsha": 100,
        "hset": 100,
        "sadd": 100,
        "rpush": 100,
        "exec": 1,
    }


async def test_enqueue_many_writes_every_job_in_order(
    queue: Queue, sync_redis: redis.Redis
) -> None:
    prepared = [queue.prepare_data(tasks.add, (i, i)) for i in range(100)]

    jobs = await queue.enqueue_many(prepared)

    ids = [job.id.encode() for job in jobs]
    assert sync_redis.lrange("rq:queue:default", 0, -1) == ids
    assert all(sync_redis.hget(f"rq:job:{i.decode()}", "status") == b"queued" for i in ids)


async def test_enqueue_many_returns_jobs_with_their_arguments(queue: Queue) -> None:
    jobs = await queue.enqueue_many([queue.prepare_data(tasks.add, (i, 1)) for i in range(3)])

    assert [job.args for job in jobs] == [[0, 1], [1, 1], [2, 1]]


async def test_enqueue_many_writes_a_job_whose_parent_waits_as_deferred(
    queue: Queue, sync_redis: redis.Redis
) -> None:
    parent = await queue.enqueue(tasks.add, 1, 2)

    [child] = await queue.enqueue_many([queue.prepare_data(tasks.add, (1, 2), depends_on=parent)])

    assert child.status is JobStatus.DEFERRED
    assert sync_redis.hget(f"rq:job:{child.id}", "status") == b"deferred"
    assert sync_redis.zscore("rq:deferred:default", child.id) is not None


async def test_enqueue_many_s_jobs_stay_together_while_other_enqueues_run(
    queue: Queue, sync_redis: redis.Redis
) -> None:
    await queue.enqueue(tasks.add, 0, 0)  # connected: callers write in the order they run
    singles = [queue.enqueue(tasks.add, i, 0) for i in range(20)]
    prepared = [queue.prepare_data(tasks.add, (i, 1)) for i in range(100)]

    *_, batch = await asyncio.gather(*singles, queue.enqueue_many(prepared))

    ids = sync_redis.lrange("rq:queue:default", 0, -1)
    first = ids.index(batch[0].id.encode())
    assert ids[first : first + 100] == [job.id.encode() for job in batch]
    assert len(ids) == 121


async def test_enqueue_many_loads_its_script_in_the_same_multi(
    queue: Queue, sync_redis: redis.Redis
) -> None:
    await queue.enqueue(tasks.add, 0, 0)
    sync_redis.script_flush()

    jobs = await queue.enqueue_many([queue.prepare_data(tasks.add, (i, 1)) for i in range(3)])

    assert [job.status for job in jobs] == [JobStatus.QUEUED] * 3
    assert sync_redis.llen("rq:queue:default") == 4


async def test_enqueue_many_with_a_big_payload_writes_every_job(
    queue: Queue, sync_redis: redis.Redis
) -> None:
    big = os.urandom(2 << 20)  # incompressible: a big payload, so the pooled MULTI
    prepared = [queue.prepare_data(tasks.echo, (big,)), queue.prepare_data(tasks.add, (1, 2))]

    jobs = await queue.enqueue_many(prepared)

    assert sync_redis.lrange("rq:queue:default", 0, -1) == [job.id.encode() for job in jobs]
    assert sync_redis.hstrlen(f"rq:job:{jobs[0].id}", "data") > 0


async def test_a_big_job_s_handle_reads_its_arguments_and_data_as_stored(
    queue: Queue, sync_redis: redis.Redis
) -> None:
    big = os.urandom(2 << 20)

    job = await queue.enqueue(tasks.echo, big, n=1)

    assert job.args == [big] and job.kwargs == {"n": 1}
    assert bytes(job.data) == sync_redis.hget(f"rq:job:{job.id}", "data")


# -- bad input ---------------------------------------------------------------------------


async def test_unserializable_positional_argument_raises_serialization_error_naming_it(
    queue: Queue,
) -> None:
    with pytest.raises(SerializationError, match="positional argument 1") as caught:
        await queue.enqueue(tasks.echo, 1, object())

    assert isinstance(caught.value, TypeError)


async def test_unserializable_keyword_argument_raises_serialization_error_naming_it(
    queue: Queue,
) -> None:
    with pytest.raises(SerializationError, match="'callback'"):
        await queue.enqueue(tasks.echo, 1, callback=lambda: None)


async def test_unserializable_argument_writes_nothing(
    queue: Queue, sync_redis: redis.Redis
) -> None:
    await queue.enqueue(tasks.add, 1, 2)
    keys_before = sync_redis.dbsize()

    with pytest.raises(SerializationError):
        await queue.enqueue(tasks.echo, object())

    assert sync_redis.dbsize() == keys_before
    assert sync_redis.llen("rq:queue:default") == 1


@pytest.mark.parametrize("job_id", ["a:b", "with space", "", "slash/id", "caf\u00e9", "x\n"])
async def test_job_id_outside_rqs_alphabet_raises_value_error(
    queue: Queue, sync_redis: redis.Redis, job_id: str
) -> None:
    with pytest.raises(ValueError, match="job_id"):
        await queue.enqueue(tasks.add, 1, 2, job_id=job_id)

    assert sync_redis.dbsize() == 0


async def test_enqueue_of_a_lambda_raises_invalid_job_error(queue: Queue) -> None:
    with pytest.raises(InvalidJobError, match="lambda"):
        await queue.enqueue(lambda: 1)


async def test_enqueue_of_a_nested_function_raises_invalid_job_error(queue: Queue) -> None:
    with pytest.raises(InvalidJobError, match="nested function"):
        await queue.enqueue(nested_function_factory())


async def test_enqueue_of_a_function_defined_in_main_raises_invalid_job_error(
    queue: Queue,
) -> None:
    namespace: dict[str, Any] = {"__name__": "__main__"}
    exec("def job_in_main():\n    return 1\n", namespace)

    with pytest.raises(InvalidJobError, match="__main__"):
        await queue.enqueue(namespace["job_in_main"])


async def test_enqueue_of_a_bound_method_raises_invalid_job_error(queue: Queue) -> None:
    with pytest.raises(InvalidJobError, match="bound method"):
        await queue.enqueue(Greeter().greet)


async def test_invalid_function_writes_nothing(queue: Queue, sync_redis: redis.Redis) -> None:
    with pytest.raises(InvalidJobError):
        await queue.enqueue(lambda: 1)

    assert sync_redis.dbsize() == 0


async def test_enqueue_raises_redis_connection_error_when_nothing_listens(
    make_quart_app: Callable[..., Quart],
) -> None:
    app = make_quart_app(RQ_CONNECTION=f"redis://127.0.0.1:{free_port()}/0")
    rq = AsyncRQ(app)
    async with app.app_context():
        try:
            with pytest.raises(redis.ConnectionError):
                await rq.queue.enqueue(tasks.add, 1, 2)
        finally:
            await rq.state().pools.aclose()


@pytest.fixture
def stoppable_server(redis_server: RedisServer | None) -> Iterator[RedisServer]:
    """The session server, restarted (empty) after the test if the test stopped it."""
    if redis_server is None:
        pytest.skip("needs the private redis-server (AIORQ_TEST_REDIS_URL is set)")
    try:
        yield redis_server
    finally:
        if redis_server.process is None:
            redis_server.start()


async def test_enqueue_raises_redis_connection_error_when_redis_stops(
    queue: Queue, stoppable_server: RedisServer
) -> None:
    await queue.connection.ping()  # a pooled connection that the stop will break
    stoppable_server.stop()

    with pytest.raises(redis.ConnectionError):
        await queue.enqueue(tasks.add, 1, 2)


async def test_enqueue_works_again_once_redis_is_back(
    queue: Queue, stoppable_server: RedisServer, sync_redis: redis.Redis
) -> None:
    await queue.connection.ping()
    stoppable_server.stop()
    with pytest.raises(redis.ConnectionError):
        await queue.enqueue(tasks.add, 1, 2)
    stoppable_server.start()

    job = await queue.enqueue(tasks.add, 1, 2)

    assert sync_redis.lrange("rq:queue:default", 0, -1) == [job.id.encode()]


async def test_enqueue_many_writes_nothing_when_one_job_cannot_be_built(
    queue: Queue, sync_redis: redis.Redis
) -> None:
    def prepared() -> Iterator[EnqueueData]:
        yield queue.prepare_data(tasks.add, (1, 2))
        yield queue.prepare_data(tasks.add, (3, 4))
        yield queue.prepare_data(tasks.echo, (object(),))

    with pytest.raises(SerializationError, match="positional argument 0"):
        await queue.enqueue_many(prepared())

    assert sync_redis.dbsize() == 0


# -- Queue API ---------------------------------------------------------------------------


async def test_enqueue_call_passes_args_and_kwargs_to_the_function(queue: Queue) -> None:
    job = await queue.enqueue_call(tasks.echo, args=[1, 2], kwargs={"job_id": "not-an-option"})

    assert (job.args, job.kwargs) == ([1, 2], {"job_id": "not-an-option"})
    assert job.id != "not-an-option"


async def test_enqueue_call_applies_options(queue: Queue, sync_redis: redis.Redis) -> None:
    await queue.enqueue_call(
        tasks.add,
        args=(1, 2),
        job_id="call-1",
        job_timeout=30,
        result_ttl=10,
        description="adds",
        meta={"by": "test"},
    )

    mapping = sync_redis.hgetall("rq:job:call-1")
    assert (mapping[b"timeout"], mapping[b"result_ttl"], mapping[b"description"]) == (
        b"30",
        b"10",
        b"adds",
    )
    assert msgpack.unpackb(mapping[b"meta"], raw=False) == {"by": "test"}


async def test_enqueue_call_rejects_an_unknown_option_by_name(queue: Queue) -> None:
    with pytest.raises(TypeError, match="job_timeuot"):
        await queue.enqueue_call(tasks.add, (1, 2), job_timeuot=5)


async def test_enqueue_takes_rq_option_names_out_of_the_keyword_arguments(queue: Queue) -> None:
    job = await queue.enqueue(tasks.add, 1, 2, c=3, job_id="opt-1", job_timeout=5)

    assert (job.id, job.kwargs, job.timeout) == ("opt-1", {"c": 3}, 5)


async def test_enqueue_at_writes_a_scheduled_job_without_enqueued_at(
    queue: Queue, sync_redis: redis.Redis
) -> None:
    when = datetime.now(timezone.utc) + timedelta(hours=1)

    job = await queue.enqueue_at(when, tasks.add, 1, 2)

    mapping = sync_redis.hgetall(f"rq:job:{job.id}")
    assert mapping[b"status"] == b"scheduled"
    assert b"enqueued_at" not in mapping
    assert set(mapping) == RQ_FIELDS - {b"enqueued_at"}


async def test_enqueue_at_adds_the_id_to_the_scheduled_registry_with_the_due_epoch(
    queue: Queue, sync_redis: redis.Redis
) -> None:
    when = datetime(2031, 5, 6, 7, 8, 9, tzinfo=timezone.utc)

    job = await queue.enqueue_at(when, tasks.add, 1, 2)

    assert sync_redis.zrange("rq:scheduled:default", 0, -1, withscores=True) == [
        (job.id.encode(), when.timestamp())
    ]


async def test_enqueue_at_does_not_push_the_id_onto_the_queue(
    queue: Queue, sync_redis: redis.Redis
) -> None:
    await queue.enqueue_at(datetime.now(timezone.utc) + timedelta(hours=1), tasks.add, 1, 2)

    assert sync_redis.llen("rq:queue:default") == 0
    assert sync_redis.smembers("rq:queues") == {b"rq:queue:default"}


async def test_enqueue_at_reads_a_naive_datetime_as_utc(
    queue: Queue, sync_redis: redis.Redis
) -> None:
    job = await queue.enqueue_at(datetime(2031, 5, 6, 7, 8, 9), tasks.add, 1, 2)

    due = datetime(2031, 5, 6, 7, 8, 9, tzinfo=timezone.utc).timestamp()
    assert sync_redis.zscore("rq:scheduled:default", job.id) == due


async def test_enqueue_at_with_at_front_marks_the_job(
    queue: Queue, sync_redis: redis.Redis
) -> None:
    when = datetime.now(timezone.utc) + timedelta(hours=1)

    job = await queue.enqueue_at(when, tasks.add, 1, 2, at_front=True)

    assert sync_redis.hget(f"rq:job:{job.id}", "enqueue_at_front") == b"1"


@pytest.mark.parametrize("delay", [timedelta(minutes=10), 600, 600.0])
async def test_enqueue_in_schedules_the_job_after_the_delay(
    queue: Queue, sync_redis: redis.Redis, delay: timedelta | float
) -> None:
    before = time.time()

    job = await queue.enqueue_in(delay, tasks.add, 1, 2)

    score = sync_redis.zscore("rq:scheduled:default", job.id)
    assert score is not None and int(before) + 599 <= score <= time.time() + 601
    assert sync_redis.hget(f"rq:job:{job.id}", "status") == b"scheduled"


async def test_count_is_the_number_of_waiting_jobs(quart_rq: AsyncRQ) -> None:
    for i in range(3):
        await quart_rq.queue.enqueue(tasks.add, i, i)
    await quart_rq.get_queue("low").enqueue(tasks.add, 1, 1)

    assert await quart_rq.queue.count() == 3


async def test_count_of_an_unused_queue_is_zero(queue: Queue) -> None:
    assert await queue.count() == 0


async def test_job_ids_lists_waiting_ids_in_queue_order(queue: Queue) -> None:
    jobs = [await queue.enqueue(tasks.add, i, i) for i in range(4)]

    assert await queue.job_ids() == [job.id for job in jobs]


async def test_job_ids_takes_an_offset_and_a_length(queue: Queue) -> None:
    jobs = [await queue.enqueue(tasks.add, i, i) for i in range(5)]

    assert await queue.job_ids(offset=1, length=2) == [jobs[1].id, jobs[2].id]


async def test_fetch_job_returns_a_job_of_this_queue(queue: Queue) -> None:
    job = await queue.enqueue(tasks.add, 1, 2)

    fetched = await queue.fetch_job(job.id)

    assert fetched is not None
    assert (fetched.id, fetched.func_name, fetched.args) == (job.id, "tests.tasks.add", [1, 2])


async def test_fetch_job_returns_none_for_an_unknown_id(queue: Queue) -> None:
    assert await queue.fetch_job("no-such-job") is None


async def test_fetch_job_returns_none_for_a_job_of_another_queue(quart_rq: AsyncRQ) -> None:
    job = await quart_rq.get_queue("low").enqueue(tasks.add, 1, 2)

    assert await quart_rq.queue.fetch_job(job.id) is None


async def test_empty_deletes_waiting_ids_and_hashes_and_returns_how_many(
    quart_rq: AsyncRQ, sync_redis: redis.Redis
) -> None:
    jobs = [await quart_rq.queue.enqueue(tasks.add, i, i) for i in range(3)]
    other = await quart_rq.get_queue("low").enqueue(tasks.add, 1, 1)

    assert await quart_rq.queue.empty() == 3

    assert sync_redis.llen("rq:queue:default") == 0
    assert not any(sync_redis.exists(f"rq:job:{job.id}") for job in jobs)
    assert sync_redis.exists(f"rq:job:{other.id}")


# -- options -----------------------------------------------------------------------------


async def test_job_id_option_names_the_job_and_its_hash(
    queue: Queue, sync_redis: redis.Redis
) -> None:
    job = await queue.enqueue(tasks.add, 1, 2, job_id="my_job-1")

    assert job.id == "my_job-1"
    assert sync_redis.lrange("rq:queue:default", 0, -1) == [b"my_job-1"]
    assert sync_redis.hget("rq:job:my_job-1", "status") == b"queued"


@pytest.mark.parametrize("job_timeout", [60, "1m", "60s", timedelta(minutes=1)])
async def test_job_timeout_is_written_as_integer_seconds(
    queue: Queue, sync_redis: redis.Redis, job_timeout: int | str | timedelta
) -> None:
    job = await queue.enqueue(tasks.add, 1, 2, job_timeout=job_timeout)

    assert sync_redis.hget(f"rq:job:{job.id}", "timeout") == b"60"


async def test_job_timeout_that_is_not_a_duration_raises_invalid_job_error(queue: Queue) -> None:
    with pytest.raises(InvalidJobError, match="job_timeout"):
        await queue.enqueue(tasks.add, 1, 2, job_timeout="soon")


async def test_result_ttl_is_written(queue: Queue, sync_redis: redis.Redis) -> None:
    job = await queue.enqueue(tasks.add, 1, 2, result_ttl=42)

    assert sync_redis.hget(f"rq:job:{job.id}", "result_ttl") == b"42"


async def test_failure_ttl_is_written(queue: Queue, sync_redis: redis.Redis) -> None:
    job = await queue.enqueue(tasks.add, 1, 2, failure_ttl=timedelta(hours=1))

    assert sync_redis.hget(f"rq:job:{job.id}", "failure_ttl") == b"3600"


async def test_ttl_is_written_and_expires_the_job_hash(
    queue: Queue, sync_redis: redis.Redis
) -> None:
    job = await queue.enqueue(tasks.add, 1, 2, ttl=60)

    assert sync_redis.hget(f"rq:job:{job.id}", "ttl") == b"60"
    assert 0 < sync_redis.ttl(f"rq:job:{job.id}") <= 60


async def test_description_option_replaces_the_call_string(
    queue: Queue, sync_redis: redis.Redis
) -> None:
    job = await queue.enqueue(tasks.add, 1, 2, description="nightly totals")

    assert sync_redis.hget(f"rq:job:{job.id}", "description") == b"nightly totals"


async def test_meta_is_written_as_raw_msgpack(queue: Queue, sync_redis: redis.Redis) -> None:
    job = await queue.enqueue(tasks.add, 1, 2, meta={"user": 7, "tags": ["a"]})

    raw = sync_redis.hget(f"rq:job:{job.id}", "meta")
    assert raw is not None
    assert msgpack.unpackb(raw, raw=False) == {"user": 7, "tags": ["a"]}


async def test_unserializable_meta_raises_serialization_error_and_writes_nothing(
    queue: Queue, sync_redis: redis.Redis
) -> None:
    with pytest.raises(SerializationError):
        await queue.enqueue(tasks.add, 1, 2, meta={"handle": object()})

    assert sync_redis.dbsize() == 0


async def test_depends_on_an_unfinished_parent_defers_the_job(
    queue: Queue, sync_redis: redis.Redis
) -> None:
    parent = await queue.enqueue(tasks.add, 1, 2)

    child = await queue.enqueue(tasks.add, 3, 4, depends_on=parent)

    mapping = sync_redis.hgetall(f"rq:job:{child.id}")
    assert mapping[b"status"] == b"deferred"
    assert b"enqueued_at" not in mapping
    assert sync_redis.lrange("rq:queue:default", 0, -1) == [parent.id.encode()]


async def test_depends_on_writes_dependency_ids_and_dependency_id(
    queue: Queue, sync_redis: redis.Redis
) -> None:
    first = await queue.enqueue(tasks.add, 1, 2)
    second = await queue.enqueue(tasks.add, 1, 2)

    child = await queue.enqueue(tasks.add, 3, 4, depends_on=[first, second.id])

    mapping = sync_redis.hgetall(f"rq:job:{child.id}")
    assert json.loads(mapping[b"dependency_ids"]) == [first.id, second.id]
    assert mapping[b"dependency_id"] == first.id.encode()


async def test_deferred_job_is_in_the_deferred_registry_scored_now(
    queue: Queue, sync_redis: redis.Redis
) -> None:
    parent = await queue.enqueue(tasks.add, 1, 2)
    before = int(time.time())

    child = await queue.enqueue(tasks.add, 3, 4, depends_on=parent)

    score = sync_redis.zscore("rq:deferred:default", child.id)
    assert score is not None and before <= score <= time.time()


async def test_deferred_job_is_in_the_parents_dependents_set(
    queue: Queue, sync_redis: redis.Redis
) -> None:
    parent = await queue.enqueue(tasks.add, 1, 2)

    child = await queue.enqueue(tasks.add, 3, 4, depends_on=parent.id)

    assert sync_redis.smembers(f"rq:job:{parent.id}:dependents") == {child.id.encode()}


async def test_deferred_job_lists_its_parents_under_the_double_colon_key(
    queue: Queue, sync_redis: redis.Redis
) -> None:
    parent = await queue.enqueue(tasks.add, 1, 2)

    child = await queue.enqueue(tasks.add, 3, 4, depends_on=parent)

    assert sync_redis.smembers(f"rq:job::{child.id}:dependencies") == {parent.id.encode()}


async def test_depends_on_a_finished_parent_queues_the_job(
    quart_rq: AsyncRQ, sync_redis: redis.Redis
) -> None:
    parent = await quart_rq.queue.enqueue(tasks.add, 1, 2)
    await quart_rq.make_worker().work(burst=True)
    assert await parent.get_status() is JobStatus.FINISHED

    child = await quart_rq.queue.enqueue(tasks.add, 3, 4, depends_on=parent)

    assert sync_redis.hget(f"rq:job:{child.id}", "status") == b"queued"
    assert sync_redis.lrange("rq:queue:default", 0, -1) == [child.id.encode()]
    assert sync_redis.zcard("rq:deferred:default") == 0


async def test_deferred_job_is_queued_when_its_parent_finishes_on_our_worker(
    quart_rq: AsyncRQ, sync_redis: redis.Redis
) -> None:
    parent = await quart_rq.get_queue("high").enqueue(tasks.add, 1, 2)
    child = await quart_rq.get_queue("low").enqueue(tasks.add, 3, 4, depends_on=parent)

    await quart_rq.make_worker(queues=["high"]).work(burst=True)

    assert sync_redis.hget(f"rq:job:{child.id}", "status") == b"queued"
    assert sync_redis.lrange("rq:queue:low", 0, -1) == [child.id.encode()]
    assert sync_redis.zcard("rq:deferred:low") == 0


async def test_deferred_job_with_at_front_is_marked_enqueue_at_front(
    queue: Queue, sync_redis: redis.Redis
) -> None:
    parent = await queue.enqueue(tasks.add, 1, 2)

    child = await queue.enqueue(tasks.add, 3, 4, depends_on=parent, at_front=True)

    assert sync_redis.hget(f"rq:job:{child.id}", "enqueue_at_front") == b"1"


async def test_deferred_job_with_at_front_goes_to_the_front_when_released(
    quart_rq: AsyncRQ, sync_redis: redis.Redis
) -> None:
    low = quart_rq.get_queue("low")
    waiting = await low.enqueue(tasks.add, 1, 1)
    parent = await quart_rq.get_queue("high").enqueue(tasks.add, 1, 2)
    child = await low.enqueue(tasks.add, 3, 4, depends_on=parent, at_front=True)

    await quart_rq.make_worker(queues=["high"]).work(burst=True)

    assert sync_redis.lrange("rq:queue:low", 0, -1) == [child.id.encode(), waiting.id.encode()]


async def test_depends_on_checks_and_writes_in_one_script_call_without_a_pooled_connection(
    make_quart_app: Callable[..., Quart], redis_url: str, sync_redis: redis.Redis
) -> None:
    app = make_quart_app(RQ_CONNECTION=f"{redis_url}?max_connections=1")
    rq = AsyncRQ(app)
    async with app.app_context():
        parent = await rq.queue.enqueue(tasks.add, 1, 2)
        # The pool's only connection is held by a blocking read for the whole call.
        hold = asyncio.create_task(rq.queue.connection.blpop(["nothing-comes"], timeout=2))
        await asyncio.sleep(0.05)
        child = await asyncio.wait_for(rq.queue.enqueue(tasks.add, 3, 4, depends_on=parent), 1)
        hold.cancel()
        await rq.state().pools.aclose()

    assert sync_redis.hget(f"rq:job:{child.id}", "status") == b"deferred"
    assert sync_redis.smembers(f"rq:job:{parent.id}:dependents") == {child.id.encode()}


async def test_retry_writes_retries_left_and_intervals_as_json(
    queue: Queue, sync_redis: redis.Redis
) -> None:
    job = await queue.enqueue(tasks.add, 1, 2, retry=Retry(3, [1, 2]))

    mapping = sync_redis.hgetall(f"rq:job:{job.id}")
    assert (mapping[b"retries_left"], mapping[b"retry_intervals"]) == (b"3", b"[1, 2]")


async def test_retry_with_one_interval_writes_a_one_item_list(
    queue: Queue, sync_redis: redis.Redis
) -> None:
    job = await queue.enqueue(tasks.add, 1, 2, retry=Retry(2))

    assert sync_redis.hget(f"rq:job:{job.id}", "retry_intervals") == b"[0]"


async def test_callbacks_are_written_as_dotted_paths_with_timeouts(
    queue: Queue, sync_redis: redis.Redis
) -> None:
    job = await queue.enqueue(
        tasks.add,
        1,
        2,
        on_success=job_funcs.on_success,
        on_failure=(job_funcs.on_failure, 5),
        on_stopped="tests.job_funcs.on_stopped",
    )

    mapping = sync_redis.hgetall(f"rq:job:{job.id}")
    assert {k: v for k, v in mapping.items() if b"callback" in k} == {
        b"success_callback_name": b"tests.job_funcs.on_success",
        b"success_callback_timeout": b"60",
        b"failure_callback_name": b"tests.job_funcs.on_failure",
        b"failure_callback_timeout": b"5",
        b"stopped_callback_name": b"tests.job_funcs.on_stopped",
        b"stopped_callback_timeout": b"60",
    }
