"""What the worker tests share: worker subprocesses, polling, and reading rq's records.

Reads go straight to the Redis keys of spec/rq-data-model.md (not through aiorq_flask's
own ``Job``), so the worker is judged against the format, not against itself.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import redis
from quart import Quart

from aiorq_flask import AsyncRQ
from aiorq_flask.serializer import MsgpackSerializer
from aiorq_flask.worker import Worker

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
APP = "tests.apps.worker_app:app"
SERIALIZER = "aiorq_flask.serializer.MsgpackSerializer"

T = TypeVar("T")


def other_db_url(url: str) -> str:
    """``url`` with the next database number: a second connection on the same server."""
    parts = urlsplit(url)
    db = int(parts.path.strip("/") or 0)
    return urlunsplit(parts._replace(path=f"/{db + 1}"))


def unique_name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


# -- polling ----------------------------------------------------------------------------------


def _timed_out(timeout: float, what: str | Callable[[], str]) -> AssertionError:
    return AssertionError(
        f"timed out after {timeout:g}s waiting for {what if isinstance(what, str) else what()}"
    )


def wait_until(
    predicate: Callable[[], T], timeout: float = 10.0, what: str | Callable[[], str] = "it"
) -> T:
    """Poll ``predicate`` until it returns something truthy; AssertionError at the deadline
    (``what`` may be a function, called then, to show e.g. a process's output)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise _timed_out(timeout, what)
        time.sleep(0.02)


async def async_wait_until(
    predicate: Callable[[], T], timeout: float = 10.0, what: str | Callable[[], str] = "it"
) -> T:
    """``wait_until`` for tests whose worker runs on the same event loop."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise _timed_out(timeout, what)
        await asyncio.sleep(0.02)


async def within(awaitable: Awaitable[T], timeout: float, what: str) -> T:
    try:
        return await asyncio.wait_for(awaitable, timeout)
    except TimeoutError:
        raise AssertionError(f"timed out after {timeout:g}s waiting for {what}") from None


# -- enqueueing from sync tests ---------------------------------------------------------------


def enqueue_calls(
    redis_url: str,
    func: str,
    calls: Sequence[Sequence[Any]],
    queue: str = "default",
    **options: Any,
) -> list[str]:
    """Enqueue ``func(*args)`` for each ``args`` in ``calls`` through aiorq_flask, in one
    round trip, on a throwaway app and event loop. Returns the job ids in order."""

    async def enqueue() -> list[str]:
        app = Quart(__name__)
        app.config.update(RQ_CONNECTION=redis_url, RQ_QUEUES=[queue], RQ_ASYNC=True)
        state = AsyncRQ(app).state(app)
        target = state.get_queue(queue)
        try:
            jobs = await target.enqueue_many(
                target.prepare_data(func, args, **options) for args in calls
            )
        finally:
            await state.pools.aclose()
        return [job.id for job in jobs]

    return asyncio.run(enqueue())


def enqueue_jobs(
    redis_url: str,
    func: str,
    args: Sequence[Any] = (),
    *,
    count: int = 1,
    queue: str = "default",
    **options: Any,
) -> list[str]:
    """Enqueue ``count`` identical calls (see ``enqueue_calls``)."""
    return enqueue_calls(redis_url, func, [args] * count, queue, **options)


# -- in-process workers --------------------------------------------------------------------------


@asynccontextmanager
async def serving(worker: Worker, client: redis.Redis) -> AsyncIterator[asyncio.Task[None]]:
    """Run ``worker.work()`` as a task on this loop until the block ends, then stop it.

    A failure of the block is raised with the worker's own failure (if any) as a note
    (on Python 3.10, which has no notes, printed to stderr, which pytest shows).
    """
    task = asyncio.create_task(worker.work())
    try:
        await async_wait_until(
            lambda: task.done() or is_registered(client, worker.name), what="worker registration"
        )
        if task.done():
            task.result()  # the worker failed to start: show why
        yield task
    except BaseException as error:
        worker.request_stop()
        try:
            await within(task, 30, "the worker to stop")
        except BaseException as worker_error:
            note = f"the worker failed too: {worker_error!r}"
            if sys.version_info >= (3, 11):
                error.add_note(note)
            else:
                print(note, file=sys.stderr)
        raise
    worker.request_stop()
    await within(task, 30, "the worker to stop")


async def burst(worker: Worker) -> None:
    await within(worker.work(burst=True), 30, "the burst worker to finish")


# -- reading rq's records ---------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """The newest entry of ``rq:results:<id>``, decoded as spec §4 says."""

    type: int
    worker_name: str
    return_value: Any
    exc_string: str | None
    fields: dict[str, str]


def _text(raw: bytes | str) -> str:
    """A reply as text; the test clients (no ``decode_responses``) reply with bytes."""
    return raw.decode() if isinstance(raw, bytes) else raw


def latest_result(client: redis.Redis, job_id: str) -> Outcome | None:
    entries = client.xrevrange(f"rq:results:{job_id}", count=1)
    if not entries:
        return None
    entry_id, raw_fields = entries[0]
    assert raw_fields is not None, f"rq:results:{job_id} entry {entry_id!r} has no fields"
    fields = {_text(k): _text(v) for k, v in raw_fields.items()}
    raw_value = fields.get("return_value")
    raw_exc = fields.get("exc_string")
    return Outcome(
        type=int(fields["type"]),
        worker_name=fields.get("worker_name", ""),
        return_value=None
        if raw_value is None
        else MsgpackSerializer.loads(base64.b64decode(raw_value)),
        exc_string=None if raw_exc is None else zlib.decompress(base64.b64decode(raw_exc)).decode(),
        fields=fields,
    )


def status(client: redis.Redis, job_id: str) -> str | None:
    raw = client.hget(f"rq:job:{job_id}", "status")
    return None if raw is None else _text(raw)


def statuses(client: redis.Redis, job_ids: Sequence[str]) -> list[str | None]:
    with client.pipeline(transaction=False) as pipe:
        for job_id in job_ids:
            pipe.hget(f"rq:job:{job_id}", "status")
        return [None if raw is None else _text(raw) for raw in pipe.execute()]


def all_have_status(client: redis.Redis, job_ids: Sequence[str], wanted: str) -> bool:
    return all(s == wanted for s in statuses(client, job_ids))


def is_registered(client: redis.Redis, worker_name: str) -> bool:
    return bool(client.sismember("rq:workers", f"rq:worker:{worker_name}"))


# -- subprocesses -----------------------------------------------------------------------------


class Process:
    """A subprocess in its own process group, output in a file; killed (group) on exit."""

    def __init__(self, argv: Sequence[str], env: dict[str, str], log_path: Path) -> None:
        self.argv = list(argv)
        self.log_path = log_path
        with open(log_path, "wb") as log:
            self.popen = subprocess.Popen(
                self.argv,
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_output(self, text: str, timeout: float = 10.0) -> None:
        wait_until(
            lambda: text in self.output() or self.popen.poll() is not None,
            timeout,
            lambda: f"{text!r} in the output of {self.argv}:\n{self.output()}",
        )
        assert text in self.output(), f"process ended before printing {text!r}:\n{self.output()}"

    def wait(self, timeout: float) -> int:
        """The exit status; AssertionError (with the output) if still running at the deadline."""
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"{self.argv} still running after {timeout:g}s:\n{self.output()}"
            ) from None

    def signal(self, signum: int) -> None:
        self.popen.send_signal(signum)

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen.wait(10)

    def __enter__(self) -> Process:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.kill()


def worker_env(
    redis_url: str, queues: str = "default", email_url: str | None = None
) -> dict[str, str]:
    env = dict(os.environ)
    env.update(WORKER_APP_REDIS_URL=redis_url, WORKER_APP_QUEUES=queues, PYTHONUNBUFFERED="1")
    env.pop("WORKER_APP_EMAIL_URL", None)
    if email_url is not None:
        env["WORKER_APP_EMAIL_URL"] = email_url
    return env


def our_worker(
    log_dir: Path,
    redis_url: str,
    *options: str,
    queues: str = "default",
    email_url: str | None = None,
) -> Process:
    """``python -m aiorq_flask.worker --app tests.apps.worker_app:app <options>``."""
    argv = [sys.executable, "-m", "aiorq_flask.worker", "--app", APP, *options]
    log_path = log_dir / f"worker-{uuid.uuid4().hex[:8]}.log"
    return Process(argv, worker_env(redis_url, queues, email_url), log_path)


def stock_worker(log_dir: Path, redis_url: str, name: str, *queues: str) -> Process:
    """A stock ``rq worker`` (rq 3.0) with our serializer, one job at a time, no fork."""
    argv = [
        str(BIN / "rq"),
        "worker",
        "--url",
        redis_url,
        "--serializer",
        SERIALIZER,
        "--worker-class",
        "rq.worker.SimpleWorker",
        "--name",
        name,
        *queues,
    ]
    return Process(argv, worker_env(redis_url), log_dir / f"{name}.log")
