"""Case 6 of issue 10: malformed jobs written by hand onto a queue.

A stray writer (another language's client, an old script, a hand-typed ``HSET``) can put
anything in Redis. Each test writes one bad job the way such a writer would, with raw
``HSET``/``RPUSH`` from a sync client, and a good job right behind it, onto the queue one
long-lived worker serves. The worker must stay up, fail each bad job with a message that
names the problem (``exc_string`` of one type-2 result), remove an id that has no hash
without writing anything, leave a job that has already ended as it was, ignore garbage on
its command channel, and finish every good job (``fault_contract.md``, "Malformed jobs").

Jobs are built like the hash of spec section 5.1, then one part is spoiled. Their function
is ``tests.worker_jobs.record``, which RPUSHes its value to a per-test trace list: a trace
of exactly ``["good"]`` shows the good job ran once and the bad one never ran.

The worker and its ``redis-server`` are shared by the module, to keep the module fast; a
test that leaves the worker dead or busy gets it replaced, on a flushed server, before the
next test, so one failure does not spread.
"""

from __future__ import annotations

import base64
import json
import pickle
import random
import zlib
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

import msgpack
import pytest
import redis

from ..apps.worker_support import Process, is_registered, our_worker, unique_name, wait_until
from ..redis_server import RedisServer

T = TypeVar("T")

QUEUE = "default"
RECORD = "tests.worker_jobs.record"
COUNT_OVERLAP = "tests.worker_jobs.count_overlap"
BAD_MODULES = "tests.faults.bad_modules"
TS_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
OUTCOME_SECONDS = 10.0  # deadline for one job's outcome (generous: the machine is shared)

Fields = dict[str, Any]
JobId = str | bytes


# -- the module's worker -----------------------------------------------------------------------


class Stage:
    """One worker process (``--heartbeat 1``) serving ``default`` on a private server."""

    def __init__(self, server: RedisServer, log_dir: Path) -> None:
        self.url = server.url
        self.client = redis.Redis.from_url(server.url)
        self.log_dir = log_dir
        self.process: Process | None = None
        self.name = ""
        self._log_offset = 0

    @property
    def channel(self) -> str:
        return f"rq:pubsub:{self.name}"

    def alive(self) -> bool:
        return self.process is not None and self.process.popen.poll() is None

    def idle(self) -> bool:
        """Nothing waiting, nothing claimed and not recorded, nothing booked in wip."""
        return (
            self.client.llen(f"rq:queue:{QUEUE}") == 0
            and self.client.scard(f"rq:worker:{self.name}:executions") == 0
            and self.client.zcard(f"rq:wip:{QUEUE}") == 0
        )

    def ready(self) -> None:
        """A live, idle, subscribed worker; a new one on a flushed server if need be."""
        if not (self.alive() and self.idle()):
            self.replace()
        self._log_offset = len(self.output())

    def replace(self) -> None:
        if self.process is not None:
            self.process.kill()
        self.client.flushall()
        self.name = unique_name("malformed")
        self.process = our_worker(self.log_dir, self.url, "--name", self.name, "--heartbeat", "1")
        wait_until(
            lambda: (
                not self.alive()
                or (
                    is_registered(self.client, self.name)
                    and dict(self.client.pubsub_numsub(self.channel)).get(self.channel.encode())
                )
            ),
            30,
            lambda: f"worker {self.name} to register and subscribe:\n{self.output()}",
        )
        assert self.alive(), f"worker {self.name} did not start:\n{self.output()}"

    def output(self) -> str:
        return "" if self.process is None else self.process.output()

    def log(self) -> str:
        """What the worker logged since the current test began."""
        return self.output()[self._log_offset :]

    def wait(self, predicate: Callable[[], T], what: str) -> T:
        """Poll ``predicate``; fail at the deadline, or at once if the worker dies."""
        value = wait_until(
            lambda: not self.alive() or predicate(),
            OUTCOME_SECONDS,
            lambda: f"{what}; the worker logged:\n{self.log()}",
        )
        assert self.alive(), f"the worker died waiting for {what}; it logged:\n{self.log()}"
        return value

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
        self.client.close()


@pytest.fixture(scope="module")
def stage(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stage]:
    server = RedisServer()
    server.start()
    shared = Stage(server, tmp_path_factory.mktemp("malformed-jobs"))
    try:
        yield shared
    finally:
        shared.stop()
        server.stop()


@pytest.fixture
def worker(stage: Stage) -> Stage:
    stage.ready()
    return stage


@pytest.fixture
def trace() -> str:
    return unique_name("trace")


# -- writing jobs by hand ----------------------------------------------------------------------


def now_ts() -> str:
    return datetime.now(timezone.utc).strftime(TS_FORMAT)


def random_bytes(size: int) -> bytes:
    return random.Random(size).randbytes(size)


def call_data(func: Any, args: Any, kwargs: Any) -> bytes:
    """``data`` as rq writes it with msgpack: zlib of ``[func, None, args, kwargs]``."""
    return zlib.compress(msgpack.packb([func, None, args, kwargs], use_bin_type=True))


BIG = 2 << 20  # a payload over 1 MiB: read on a connection of its own, as it arrives
BIN32 = b"\xc6" + BIG.to_bytes(4, "big")  # msgpack's header of a BIG-byte bytes value


def big_call(*parts: bytes) -> bytes:
    """A big ``data`` field as our enqueue writes one (plain msgpack, not compressed),
    made of ``parts`` after the array-of-four marker."""
    return b"\x94" + b"".join(parts)


def job_fields(func: str, *args: Any) -> Fields:
    """A good hash (spec section 5.1) for the call ``func(*args)``."""
    now = now_ts()
    return {
        "status": "queued",
        "created_at": now,
        "data": call_data(func, list(args), {}),
        "success_callback_name": "",
        "failure_callback_name": "",
        "stopped_callback_name": "",
        "started_at": "",
        "ended_at": "",
        "last_heartbeat": "",
        "worker_name": "",
        "group_id": "",
        "origin": QUEUE,
        "description": f"{func}({', '.join(repr(a) for a in args)})",
        "enqueued_at": now,
        "timeout": "180",
    }


def recording(url: str, trace: str, value: str, *, func: str = RECORD) -> Fields:
    """A good job that RPUSHes ``value`` to the list ``trace`` (by default)."""
    return job_fields(func, url, trace, value)


def spoiled(fields: Fields, **changes: Any) -> Fields:
    """``fields`` with ``changes`` applied; a change to None removes that field."""
    result = dict(fields)
    for name, value in changes.items():
        if value is None:
            result.pop(name, None)
        else:
            result[name] = value
    return result


def raw(job_id: JobId) -> bytes:
    return job_id if isinstance(job_id, bytes) else job_id.encode()


def job_key(job_id: JobId) -> bytes:
    return b"rq:job:" + raw(job_id)


def results_key(job_id: JobId) -> bytes:
    return b"rq:results:" + raw(job_id)


def push(client: redis.Redis, *jobs: tuple[JobId, Fields | None]) -> None:
    """Write each hash (None: none) and push the ids onto the queue in order, in one MULTI."""
    with client.pipeline(transaction=True) as pipe:
        for job_id, fields in jobs:
            if fields is not None:
                pipe.hset(job_key(job_id), mapping=fields)
        pipe.sadd("rq:queues", f"rq:queue:{QUEUE}")
        pipe.rpush(f"rq:queue:{QUEUE}", *(raw(job_id) for job_id, _ in jobs))
        pipe.execute()


def push_bad_then_good(worker: Stage, trace: str, bad_id: JobId, bad: Fields | None) -> str:
    """Push the bad job, then a good one behind it; return the good job's id."""
    good_id = unique_name("good")
    push(worker.client, (bad_id, bad), (good_id, recording(worker.url, trace, "good")))
    return good_id


# -- reading the outcome -----------------------------------------------------------------------


def message_of(exc_string: str) -> str:
    """The exception lines of a traceback text: what it says, without its frames (whose
    source lines would name fields such as ``data`` by chance)."""
    lines = exc_string.splitlines()
    return "\n".join(
        line for line in lines if line.strip() and not line.startswith((" ", "Traceback ("))
    )


def assert_failed_naming(worker: Stage, job_id: JobId, *names: str) -> None:
    """The job ended ``failed``: in ``rq:failed:default``, out of ``rq:wip:default``, with one
    type-2 result whose message names each of ``names``."""
    client = worker.client
    worker.wait(
        lambda: client.hget(job_key(job_id), "status") == b"failed",
        f"job {job_id!r} to fail (status {client.hget(job_key(job_id), 'status')!r})",
    )
    entries = client.xrange(results_key(job_id))
    assert len(entries) == 1, f"job {job_id!r} has {len(entries)} results, not 1: {entries}"
    fields = entries[0][1]
    assert fields[b"type"] == b"2", f"job {job_id!r}'s result is not a failure: {fields}"
    text = zlib.decompress(base64.b64decode(fields[b"exc_string"])).decode(errors="replace")
    for name in names:
        assert name in message_of(text), (
            f"the failure of {job_id!r} does not name {name!r}:\n{text}"
        )
    assert client.zscore(f"rq:failed:{QUEUE}", raw(job_id)) is not None
    wip = client.zrange(f"rq:wip:{QUEUE}", 0, -1)
    assert not [m for m in wip if m.startswith(raw(job_id) + b":")], f"left in wip: {wip}"


def assert_good_job_served(worker: Stage, trace: str, good_id: str) -> None:
    """The good job behind the bad one finished, it alone ran, and the worker is still up."""
    worker.wait(
        lambda: worker.client.hget(job_key(good_id), "status") == b"finished",
        f"the good job {good_id} to finish",
    )
    assert worker.client.lrange(trace, 0, -1) == [b"good"]
    assert worker.alive(), f"the worker exited:\n{worker.log()}"


# -- the control -------------------------------------------------------------------------------


def test_a_hand_written_good_job_finishes(worker: Stage, trace: str) -> None:
    """The hash these tests spoil is a good job as it stands."""
    good_id = unique_name("good")
    push(worker.client, (good_id, recording(worker.url, trace, "good")))

    assert_good_job_served(worker, trace, good_id)


# -- data --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"\x00\xffneither zlib nor msgpack\xc1", id="garbage-bytes"),
        pytest.param(zlib.compress(msgpack.packb({"func": RECORD})), id="msgpack-map"),
        pytest.param(zlib.compress(msgpack.packb([RECORD, None, []])), id="msgpack-3-items"),
        pytest.param(call_data(42, [], {}), id="function-not-a-string"),
        pytest.param(call_data(RECORD, "abc", {}), id="args-not-a-list"),
        pytest.param(call_data(RECORD, [], [1, 2]), id="kwargs-not-a-map"),
        pytest.param(b"", id="empty"),
        pytest.param(None, id="absent"),
        pytest.param(big_call(b"\xc1" * BIG), id="big-never-used-byte"),
        pytest.param(
            big_call(msgpack.packb(RECORD), b"\xc0\x91", BIN32, bytes(BIG // 2)),
            id="big-truncated",
        ),
        pytest.param(
            big_call(msgpack.packb(RECORD), b"\xc0\x91", BIN32, bytes(BIG), b"\x80", b"\x01"),
            id="big-trailing-bytes",
        ),
        pytest.param(
            big_call(msgpack.packb(RECORD), b"\xc0\x90\x81\x01", BIN32, bytes(BIG)),
            id="big-keyword-name-not-a-str",
        ),
        pytest.param(
            big_call(msgpack.packb(RECORD), b"\xc0\x91\xdb", BIG.to_bytes(4, "big"), b"\xff" * BIG),
            id="big-str-not-utf8",
        ),
        pytest.param(zlib.compress(random_bytes(BIG), 0), id="big-compressed-not-msgpack"),
    ],
)
def test_job_whose_data_cannot_be_read_fails_naming_data(
    worker: Stage, trace: str, data: bytes | None
) -> None:
    bad_id = unique_name("bad")
    bad = spoiled(recording(worker.url, trace, "bad"), data=data)

    good_id = push_bad_then_good(worker, trace, bad_id, bad)

    assert_failed_naming(worker, bad_id, "data")
    assert_good_job_served(worker, trace, good_id)


# -- functions ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "func",
    [
        pytest.param(f"{BAD_MODULES}.plain.no_such_function", id="unknown-function"),
        pytest.param(f"{BAD_MODULES}.no_such_module.job", id="unknown-module"),
        pytest.param(f"{BAD_MODULES}.plain.NOT_A_FUNCTION", id="not-callable"),
        pytest.param(f"{BAD_MODULES}.raises_on_import.job", id="module-raises-at-import"),
        pytest.param(f"{BAD_MODULES}.exits_on_import.job", id="module-exits-at-import"),
    ],
)
def test_job_whose_function_cannot_be_imported_fails_naming_it(
    worker: Stage, trace: str, func: str
) -> None:
    bad_id = unique_name("bad")

    good_id = push_bad_then_good(
        worker, trace, bad_id, recording(worker.url, trace, "bad", func=func)
    )

    assert_failed_naming(worker, bad_id, func)
    assert_good_job_served(worker, trace, good_id)


# -- payloads ----------------------------------------------------------------------------------


class _CreatesFile:
    """Unpickling this calls ``open(path, "w")``: the file appearing shows it was unpickled."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (self.path, "w"))


def test_pickle_payload_fails_naming_data_and_never_runs(worker: Stage, trace: str) -> None:
    """rq's default serializer is pickle; this worker reads msgpack only."""
    bad_id = unique_name("bad")
    payload = zlib.compress(pickle.dumps((RECORD, None, [worker.url, trace, "bad"], {})))

    good_id = push_bad_then_good(
        worker, trace, bad_id, spoiled(recording(worker.url, trace, "bad"), data=payload)
    )

    assert_failed_naming(worker, bad_id, "data")
    assert_good_job_served(worker, trace, good_id)


def test_malicious_pickle_is_never_unpickled(worker: Stage, trace: str, tmp_path: Path) -> None:
    marker = tmp_path / "unpickled"
    payload = pickle.dumps((RECORD, None, [worker.url, trace, _CreatesFile(marker)], {}))
    armed = tmp_path / "armed"
    pickle.loads(pickle.dumps(_CreatesFile(armed))).close()
    assert armed.exists(), "the payload would not have shown an unpickling"
    bad_id = unique_name("bad")

    good_id = push_bad_then_good(
        worker, trace, bad_id, spoiled(recording(worker.url, trace, "bad"), data=payload)
    )

    assert_failed_naming(worker, bad_id, "data")
    assert_good_job_served(worker, trace, good_id)
    assert not marker.exists(), "the worker unpickled the job's data"


# -- hashes ------------------------------------------------------------------------------------


def test_id_without_a_hash_leaves_the_queue_and_nothing_is_written(
    worker: Stage, trace: str
) -> None:
    missing_id = unique_name("missing")

    good_id = push_bad_then_good(worker, trace, missing_id, None)

    assert_good_job_served(worker, trace, good_id)
    worker.wait(worker.idle, "the worker to be done with every id it took")
    assert worker.client.keys(f"*{missing_id}*") == []
    assert worker.client.zscore(f"rq:failed:{QUEUE}", missing_id) is None
    assert worker.client.lpos(f"rq:queue:{QUEUE}", missing_id) is None


def test_hash_without_origin_fails_in_the_queue_it_was_taken_from(
    worker: Stage, trace: str
) -> None:
    bad_id = unique_name("bad")
    bad = spoiled(recording(worker.url, trace, "bad"), origin=None)

    good_id = push_bad_then_good(worker, trace, bad_id, bad)

    assert_failed_naming(worker, bad_id, "origin")
    assert_good_job_served(worker, trace, good_id)


# -- fields ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        pytest.param({"created_at": "yesterday"}, "created_at", id="created_at-not-a-time"),
        pytest.param(
            {"enqueued_at": "2026-11-28T23:29:17+00:00"}, "enqueued_at", id="enqueued_at-offset"
        ),
        pytest.param({"timeout": "soon"}, "timeout", id="timeout-soon"),
        pytest.param({"timeout": "1.5"}, "timeout", id="timeout-1.5"),
        pytest.param({"result_ttl": "forever"}, "result_ttl", id="result_ttl-not-a-number"),
        pytest.param({"failure_ttl": "never"}, "failure_ttl", id="failure_ttl-not-a-number"),
        pytest.param(
            {"retries_left": "2", "retry_intervals": "[1, 2"},
            "retry_intervals",
            id="retry_intervals-bad-json",
        ),
        pytest.param({"status": "bogus"}, "status", id="status-unknown"),
    ],
)
def test_job_with_an_unreadable_field_fails_naming_the_field(
    worker: Stage, trace: str, changes: Fields, field: str
) -> None:
    bad_id = unique_name("bad")

    good_id = push_bad_then_good(
        worker, trace, bad_id, spoiled(recording(worker.url, trace, "bad"), **changes)
    )

    assert_failed_naming(worker, bad_id, field)
    assert_good_job_served(worker, trace, good_id)


TERMINAL = {"finished": "finished", "failed": "failed", "stopped": "failed", "canceled": "canceled"}


@pytest.mark.parametrize("ended", list(TERMINAL))
def test_job_that_already_ended_is_not_run_again_and_left_as_it_was(
    worker: Stage, trace: str, ended: str
) -> None:
    client = worker.client
    done_id = unique_name("done")
    now = now_ts()
    done = spoiled(
        recording(worker.url, trace, "bad"),
        status=ended,
        started_at=now,
        ended_at=now,
        worker_name="an-earlier-worker",
    )
    if ended == "finished":
        result = {"type": "1", "return_value": base64.b64encode(msgpack.packb("bad"))}
    else:
        result = {"type": "2", "exc_string": base64.b64encode(zlib.compress(b"earlier"))}
    client.hset(job_key(done_id), mapping=done)
    client.expire(job_key(done_id), 500)
    client.xadd(results_key(done_id), {"worker_name": "an-earlier-worker", **result})
    client.expire(results_key(done_id), 500)
    registry = f"rq:{TERMINAL[ended]}:{QUEUE}"
    client.zadd(registry, {done_id: 1_900_000_000})
    before = (client.hgetall(job_key(done_id)), client.xrange(results_key(done_id)))

    good_id = push_bad_then_good(worker, trace, done_id, None)

    assert_good_job_served(worker, trace, good_id)
    worker.wait(worker.idle, "the worker to be done with every id it took")
    after = (client.hgetall(job_key(done_id)), client.xrange(results_key(done_id)))
    assert after == before
    assert client.ttl(job_key(done_id)) > 0 and client.ttl(results_key(done_id)) > 0
    assert client.zscore(registry, done_id) == 1_900_000_000
    assert client.lpos(f"rq:queue:{QUEUE}", done_id) is None
    assert done_id in worker.log(), "no warning names the skipped job"


# -- ids ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "shape",
    [
        pytest.param("bad:{}", id="colon"),
        pytest.param("bad/{}", id="slash"),
        pytest.param("bad {}", id="space"),
        pytest.param("bad-é-{}", id="non-ascii"),
        pytest.param(b"bad-\xff\xfe-{}", id="non-utf8"),
    ],
)
def test_job_with_an_invalid_id_fails_naming_the_id(
    worker: Stage, trace: str, shape: str | bytes
) -> None:
    tag = unique_name("id")
    bad_id: JobId = (
        shape.replace(b"{}", tag.encode()) if isinstance(shape, bytes) else shape.format(tag)
    )

    good_id = push_bad_then_good(worker, trace, bad_id, recording(worker.url, trace, "bad"))

    # A non-UTF-8 id cannot appear as itself in a text message: its readable part must.
    assert_failed_naming(worker, bad_id, bad_id if isinstance(bad_id, str) else tag)
    assert_good_job_served(worker, trace, good_id)


# -- commands ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "garbage",
    [
        pytest.param(b"stop-job please", id="not-json"),
        pytest.param(b"\xff\xfe\x00{", id="not-utf8"),
        pytest.param(b'["stop-job", "x"]', id="json-list"),
        pytest.param(b'"shutdown"', id="json-string"),
        pytest.param(b"null", id="json-null"),
        pytest.param(b'{"command": 7}', id="command-a-number"),
        pytest.param(b'{"command": "stop-job", "job_id": 12345}', id="job_id-a-number"),
        pytest.param(b'{"command": "stop-job", "job_id": {"id": "x"}}', id="job_id-an-object"),
    ],
)
def test_garbage_on_the_command_channel_is_ignored(
    worker: Stage, trace: str, garbage: bytes
) -> None:
    """The worker keeps listening: a stop-job sent after the garbage still stops its job."""
    client = worker.client
    long_id = unique_name("long")
    # count_overlap(url, key, seconds) INCRs <key>:now as it starts, then sleeps.
    push(client, (long_id, job_fields(COUNT_OVERLAP, worker.url, trace, 30)))
    worker.wait(lambda: client.get(f"{trace}:now") == b"1", "the long job to be running")
    worker.wait(
        lambda: client.pubsub_numsub(worker.channel)[0][1] == 1,
        "the worker to subscribe to its command channel",
    )

    assert client.publish(worker.channel, garbage) == 1, "the worker is not subscribed"
    client.publish(worker.channel, json.dumps({"command": "stop-job", "job_id": long_id}))

    worker.wait(
        lambda: client.hget(job_key(long_id), "status") == b"stopped",
        "the stop-job command sent after the garbage to stop the job",
    )
    good_id = unique_name("good")
    push(client, (good_id, recording(worker.url, trace, "good")))
    assert_good_job_served(worker, trace, good_id)
