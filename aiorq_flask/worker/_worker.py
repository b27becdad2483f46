"""The asyncio worker: one process serves every queue of one connection.

A few cooperating tasks around one stop request:

- the fetch loop claims waiting jobs (several per round trip, queues in priority order,
  popped and booked in ``rq:wip`` in one Lua call) and blocks while all queues are empty;
- each job runs as its own task: ``async def`` on the loop, plain functions in threads;
- the finisher writes outcomes, batching whatever has ended into one round trip;
- upkeep: heartbeat, sweep (rescue jobs of dead workers), scheduler (due scheduled jobs
  and periodic jobs; off with ``scheduler=False``), and the pub/sub listener for rq's
  stop-job command.
"""

from __future__ import annotations

import asyncio
import collections
import enum
import functools
import json
import logging
import signal
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio
import redis
from anyio.abc import TaskGroup
from redis.asyncio import Redis

from .. import _hooks, _scripts, keys
from .._call_reader import read_call
from .._connections import block_slice, dedicated_client
from .._multiplexer import Multiplexer
from .._redis_errors import is_transient
from .._scripts import Claimed, Outcome
from ..allowlist import OPTION, SETTING, Allowlist, NotAllowedError, module_prefixes
from ..current import running
from ..errors import (
    ConfigError,
    DeserializationError,
    InvalidJobError,
    NoSuchJobError,
    UnsupportedServerError,
)
from ..execution import (
    Deadline,
    app_context,
    call,
    encode_exc_string,
    encode_retry,
    encode_return_value,
    format_exception,
    import_function,
    is_retry,
    run_callback,
)
from ..job import (
    DEFAULT_FAILURE_TTL,
    DEFAULT_RESULT_TTL,
    Job,
    epoch_ts,
    now_ts,
    validate_job_id,
)
from ..outcomes import Ended, record
from ..payload import BIG_DATA, Call
from . import _bookkeeping
from ._cron import PASS_SECONDS, CronPass
from ._loops import Backoff, RedisHealth, every
from ._server_version import check_server

if TYPE_CHECKING:
    from .._state import AppState

log = logging.getLogger("aiorq_flask.worker")

PEEK_SECONDS = 2.0  # how long one idle wait blocks before the fetch loop looks again
CALLBACKS = (
    ("success callback", "success_callback_name"),
    ("failure callback", "failure_callback_name"),
    ("stopped callback", "stopped_callback_name"),
)


class WorkerState(enum.Enum):
    """Where a worker is in its life; ``worker.state`` says it in one word."""

    STARTING = "starting"  # registering (waiting for Redis if it is down)
    SERVING = "serving"  # claiming and running jobs
    STOPPING = "stopping"  # asked to stop: no more claims; running jobs get the grace period
    DRAINED = "drained"  # every job ended (or went back); the last outcomes being recorded
    STOPPED = "stopped"  # deregistered


@dataclass
class Execution:
    """One job this worker has claimed and not yet recorded the end of."""

    raw_id: bytes  # the id as stored: any bytes a writer pushed, sent back as they are
    job_id: str  # the id as text, for logs and rq's commands
    exec_id: str
    origin: bytes  # the queue it was booked under in rq:wip
    job: Job | None  # None: the worker cannot read the job (``problem`` says why), or its
    # big payload is still to be read (``unread`` holds the rest of its hash)
    problem: str | None = None
    unread: list[bytes] | None = None
    started_at: float = field(default_factory=time.time)
    task: asyncio.Task[None] | None = None
    cancel_reason: str | None = None  # "stopped" (stop-job), "requeue" (shutdown)
    ended: bool = False  # its outcome is known, and on its way to finish.lua
    successor: Execution | None = None  # a second claim of its job, decided once recorded

    @property
    def timeout(self) -> int:
        return self.job.timeout if self.job is not None else 0


def ended(execution: Execution, status: Outcome, payload: str = "") -> Ended:
    """How ``execution`` ended, for ``outcomes.record``."""
    return Ended(
        execution.raw_id, execution.exec_id, execution.origin, status, payload, execution.started_at
    )


def read_claimed(
    raw_id: bytes,
    fields: list[bytes],
    connection: Redis,
    allowlist: Allowlist | None = None,
    call: Call | None = None,
) -> tuple[Job | None, str | None]:
    """Decode a claimed job's hash as rq would read it, and check its callbacks against
    ``allowlist`` (the function is checked before it is imported, in ``_call``):
    ``(job, None)``, or ``(None, why)`` if it cannot be read or must not run. ``call``:
    its ``data`` field, already decoded as it was read (a big one: ``_read_big_data``)."""
    job_id = raw_id.decode("utf-8", "backslashreplace")
    try:
        validate_job_id(job_id)
        mapping = dict(zip(fields[::2], fields[1::2], strict=True))
        if not mapping.get(b"origin"):
            raise InvalidJobError(f"job {job_id!r} has no 'origin' field")
        job = Job.from_hash(job_id, mapping, connection, call)
    except (InvalidJobError, NoSuchJobError) as error:
        return None, f"the worker cannot read this job: {error}"
    try:
        for what, attribute in CALLBACKS:
            if allowlist is not None and getattr(job, attribute):
                allowlist.check(getattr(job, attribute), what)
    except NotAllowedError as error:
        return None, f"the worker did not run this job: {error}"
    return job, None


def _served(state: AppState, connection: str, queues: list[str] | None) -> list[str]:
    """``queues`` (all of the connection's by default), each checked to be served by it."""
    served = state.plan.queues_on(connection)
    for queue in queues or ():
        if queue not in served:
            raise ConfigError(
                f"queue {queue!r} is not served by connection {connection!r} "
                f"(it serves: {', '.join(served)})"
            )
    return list(served) if queues is None else queues


def _allowlist(state: AppState, allow_modules: Sequence[str]) -> Allowlist:
    """The config's ``RQ_WORKER_ALLOWED_MODULES`` and the worker's ``--allow-module``
    prefixes together (None if neither is set), and the app's ``@rq.job`` functions."""
    prefixes = state.plan.allowed_modules
    if allow_modules:
        prefixes = (*(prefixes or ()), *module_prefixes(list(allow_modules), OPTION))
    return Allowlist(prefixes, state.job_functions)


class Worker:
    """Serves the queues of one resolved connection until stopped.

    ``await worker.work()`` runs until SIGTERM/SIGINT (when run in the main thread),
    ``worker.request_stop()``, rq's shutdown command, or, with ``burst=True``, until the
    queues are empty and every claimed job has been recorded. Cancelling ``work()`` puts
    the jobs it runs back on their queues.

    It runs only the functions ``RQ_WORKER_ALLOWED_MODULES`` and ``allow_modules`` allow
    (see ``aiorq_flask.allowlist``), or any function when neither is set. With
    ``scheduler=False`` it enqueues no periodic job and moves no due scheduled job or
    delayed retry onto its queue (``--no-scheduler``).

    It runs the app's lifecycle hooks (``AsyncRQ.worker_startup`` and the others: a failing
    startup hook raises ``WorkerStartupError`` from ``work()``) and sends the job signals
    of ``aiorq_flask.signals``.
    """

    def __init__(
        self,
        state: AppState,
        connection: str = "default",
        *,
        queues: list[str] | None = None,
        concurrency: int = 10,
        name: str | None = None,
        max_jobs: int | None = None,
        prefetch: int | None = None,
        heartbeat: float = 10.0,
        grace_period: float = 30.0,
        result_ttl: int = DEFAULT_RESULT_TTL,
        failure_ttl: int = DEFAULT_FAILURE_TTL,
        allow_modules: Sequence[str] = (),
        scheduler: bool = True,
    ) -> None:
        queues = _served(state, connection, queues)
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, not {concurrency!r}")
        if prefetch is None:
            prefetch = concurrency // 10
        if prefetch < 0:
            raise ValueError(f"prefetch must not be negative, not {prefetch!r}")
        self.app = state.app
        self.connection_name = connection
        self.queues = tuple(queues)
        self.name = name or uuid.uuid4().hex
        self.concurrency = concurrency
        self.prefetch = prefetch
        self.max_jobs = max_jobs
        self.heartbeat = heartbeat
        self.grace_period = grace_period
        self.result_ttl = result_ttl
        self.failure_ttl = failure_ttl
        self.allowlist = _allowlist(state, allow_modules)
        self.max_job_bytes = state.plan.max_job_bytes
        self.wip_ttl = _bookkeeping.wip_ttl(heartbeat)
        self.scheduler, self._crons = scheduler, CronPass.serving(state, self.queues)
        self._pools = state.pools
        self._hooks = state.hooks
        self._queue_keys = [keys.queue(q) for q in self.queues]
        self._registration = _bookkeeping.registration(self.name, self.queues, now_ts())
        self._health = RedisHealth()
        self._running: dict[str, Execution] = {}
        self._claimed_total = 0
        self._ended: list[Ended] = []
        self._active = 0  # jobs whose task runs
        # Claimed ahead, to start the moment a slot frees instead of one claim round trip
        # later. Booked as started (in rq:wip, so never lost); a stop puts them back.
        self._ready: collections.deque[Execution] = collections.deque()
        self.state = WorkerState.STARTING
        self.processed = 0
        self.refusal: UnsupportedServerError | None = None  # the server is too old

    def __repr__(self) -> str:
        return f"<Worker {self.name} on {self.connection_name!r}: {', '.join(self.queues)}>"

    @property
    def redis(self) -> Redis:
        return self._pools.client(self.connection_name)

    @property
    def multiplexer(self) -> Multiplexer:
        """The connection shared by the worker's script calls (claim, finish, upkeep)."""
        return self._pools.multiplexer(self.connection_name)

    @property
    def busy(self) -> int:
        """How many of its ``concurrency`` slots run a job now."""
        return self._active

    # -- lifecycle ---------------------------------------------------------------------

    async def work(self, burst: bool = False) -> None:
        """Register, serve until stopped, put back unfinished jobs, deregister.

        Raises ``UnsupportedServerError``, before registering, on a Redis older than 6.2.
        """
        # anyio primitives belong to a running loop: made here, not in __init__.
        self._limiter = anyio.CapacityLimiter(self.concurrency)
        self._room = anyio.Event()
        self._idle = anyio.Event()
        self._ended_event = anyio.Event()
        self._fetch_scope = anyio.CancelScope()
        # A heartbeat tells claimed-but-lost executions from held ones: never during a claim.
        self._claiming = anyio.Lock()
        registered = started = False
        try:
            await _hooks.startup(self._hooks, self.app, self)  # raises WorkerStartupError
            started = True
            async with anyio.create_task_group() as upkeep:
                if threading.current_thread() is threading.main_thread():
                    upkeep.start_soon(self._handle_signals)
                with self._fetch_scope:  # a stop while Redis is still down ends here
                    registered = await self._register()
                if registered and self.state is WorkerState.STARTING:
                    self.state = WorkerState.SERVING
                    log.info(
                        "worker %s serving %s on %r",
                        self.name,
                        ", ".join(self.queues),
                        self.connection_name,
                    )
                    self._start_upkeep(upkeep)
                    await self._serve(burst)
                upkeep.cancel_scope.cancel()
        finally:
            if registered:
                with anyio.CancelScope(shield=True):
                    await self._put_back_the_rest()
                    await self._deregister()
            if started:
                with anyio.CancelScope(shield=True):
                    await _hooks.shutdown(self._hooks, self.app, self)
            self.state = WorkerState.STOPPED
        if self.refusal is not None:
            raise self.refusal
        log.info("worker %s stopped after %d jobs", self.name, self.processed)

    async def _serve(self, burst: bool) -> None:
        """Claim and run jobs until stopped (or the burst is over), then drain."""
        if self.allowlist.prefixes is None:
            log.warning(
                "%s is not set: this worker imports and runs any function a job in Redis "
                "names; list your job modules in it (or pass %s)",
                SETTING,
                OPTION,
            )
        self._fetch_scope = anyio.CancelScope()
        async with anyio.create_task_group() as recording:
            recording.start_soon(self._finish_loop)
            with self._fetch_scope:
                await self._fetch_loop(burst)
            await self._drain()
            self.state = WorkerState.DRAINED
            self._ended_event.set()

    def request_stop(self) -> None:
        """Stop taking jobs; running ones get the grace period, then are put back."""
        if self.state is WorkerState.STOPPING:
            log.warning("second stop request: putting back running jobs now")
            self.grace_period = 0
            self._cancel_running("requeue")
        if self.state in (WorkerState.STARTING, WorkerState.SERVING):
            self.state = WorkerState.STOPPING
        self._fetch_scope.cancel()

    async def _register(self) -> bool:
        """Check the server's version, then register, waiting out Redis being down and a
        namesake's registration. False, with ``self.refusal`` set, if the server is too old."""
        backoff = Backoff(self._health)
        while True:
            try:
                await check_server(self.redis, self.connection_name)
                await _bookkeeping.register(
                    self.redis, self.name, self.queues, self.heartbeat, self._registration
                )
            except UnsupportedServerError as error:
                self.refusal = error
                return False
            except _bookkeeping.NameTaken as error:
                log.warning(
                    "%s: waiting for it to end or expire (a killed worker's does within "
                    "three heartbeats)",
                    error,
                )
                await anyio.sleep(self.heartbeat)
                continue
            except Exception as error:
                await backoff.wait(error, "registering the worker")
                continue
            self._health.answered()
            return True

    async def _deregister(self) -> None:
        with anyio.move_on_after(5):
            backoff = Backoff(self._health)
            while True:
                try:
                    await _bookkeeping.deregister(
                        self.redis, self.multiplexer, self.name, self.queues
                    )
                    return
                except Exception as error:
                    await backoff.wait(error, "deregistering the worker")
        log.warning("could not deregister; the registration expires by itself")

    def _start_upkeep(self, group: TaskGroup) -> None:
        group.start_soon(every, self.heartbeat / 2, self._upkeep, self._health)
        if self.scheduler:
            group.start_soon(every, 1.0, self._schedule, self._health)
            if self._crons.jobs:
                group.start_soon(every, PASS_SECONDS, self._cron, self._health)
        group.start_soon(self._listen_for_commands)

    async def _drain(self) -> None:
        """Put back jobs claimed ahead; wait for running jobs up to the grace period, then
        cancel and put back the rest."""
        stopping = self.state is WorkerState.STOPPING  # else: the burst or max-jobs is done
        while self._ready and stopping:
            execution = self._ready.popleft()
            execution.cancel_reason = execution.cancel_reason or "requeue"
            self._ended_one(await self._cancelled(execution))
        if self._running and stopping:
            log.info("waiting up to %gs for %d running jobs", self.grace_period, len(self._running))
            with anyio.move_on_after(self.grace_period):
                await self._wait_idle()
            self._cancel_running("requeue")
        await self._wait_idle()

    async def _put_back_the_rest(self) -> None:
        """After ``work()`` was cancelled from outside: cancel the jobs still running, put
        them and the jobs claimed ahead back on their queues, and record what ended."""
        if not self._running and not self._ended:
            return
        self._cancel_running("requeue")
        while self._ready:
            execution = self._ready.popleft()
            self._ended_one(ended(execution, Outcome.REQUEUE))
        tasks = [e.task for e in self._running.values() if e.task is not None]
        if tasks:
            await asyncio.wait(tasks, timeout=self.grace_period or None)
        with anyio.move_on_after(10):
            backoff = Backoff(self._health)
            while self._ended:
                batch, self._ended = self._ended, []
                try:
                    await self._record(batch)
                except Exception as error:
                    self._ended = batch + self._ended
                    await backoff.wait(error, "putting back running jobs")
        if self._running:
            log.warning("%d jobs could not be put back: a sweep will", len(self._running))

    async def _wait_idle(self) -> None:
        while self._running:
            self._idle = anyio.Event()
            await self._idle.wait()

    def _cancel_running(self, reason: str) -> None:
        for execution in self._running.values():
            self._cancel(execution, reason)

    @staticmethod
    def _cancel(execution: Execution, reason: str) -> None:
        if execution.cancel_reason is None:
            execution.cancel_reason = reason
            if execution.task is not None:
                execution.task.cancel()

    async def _handle_signals(self) -> None:
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for signum in signals:
                log.info("received %s", signal.Signals(signum).name)
                self.request_stop()

    # -- fetching ------------------------------------------------------------------------

    async def _fetch_loop(self, burst: bool) -> None:
        backoff = Backoff(self._health)
        drained = False  # the last claim took fewer jobs than it had room for
        recovering = False  # a step failed: re-assert the worker's bookings first
        while not self._reached_max_jobs():
            room = self.concurrency + self.prefetch - self._active - len(self._ready)
            if self.max_jobs is not None:
                room = min(room, self.max_jobs - self._claimed_total)
            if room <= 0:
                self._room = anyio.Event()
                await self._room.wait()
                continue
            try:
                if recovering:
                    await self._beat()
                    recovering = False
                if drained and not burst:
                    # The queues were empty a moment ago: wait (returns at once if a job
                    # came meanwhile) rather than spend a round trip on another claim.
                    await self._wait_for_jobs()
                async with self._claiming:
                    with anyio.CancelScope(shield=True):  # a claim in flight must be seen
                        popped = await self._claim(room)
                if popped is None:  # rq suspend
                    if burst:
                        return
                    await anyio.sleep(1)
                    continue
                drained = popped < room
                if not popped and burst:
                    if not self._running:
                        return
                    self._room = anyio.Event()
                    await self._room.wait()
            except Exception as error:
                recovering = True
                await backoff.wait(error, "claiming jobs")
                continue
            backoff.reset()
            self._start_ready()

    def _start_ready(self) -> None:
        """Start claimed jobs while there are free slots."""
        loop = asyncio.get_running_loop()
        while self._ready and self._active < self.concurrency:
            execution = self._ready.popleft()
            self._active += 1
            # Plain tasks, owned by the map of executions (which shutdown, stop-job and a
            # cancelled work() cancel), not children of a task group: a job is the hot
            # path, and an anyio task-group child costs 34 us where a task costs 6.
            execution.task = loop.create_task(self._run(execution))

    def _reached_max_jobs(self) -> bool:
        return self.max_jobs is not None and self._claimed_total >= self.max_jobs

    async def _claim(self, room: int) -> int | None:
        """Claim up to ``room`` jobs for ``_ready``; return how many ids it took off the
        queues (dropped ones too), or None while rq's suspend flag is set."""
        now = time.time()
        exec_prefix = uuid.uuid4().hex[:24]
        big = min(BIG_DATA, self.max_job_bytes)  # a payload past the limit is never sent
        args = [self.name, room, repr(now), epoch_ts(now), self.wip_ttl, exec_prefix, big]
        replies = await _scripts.CLAIM(self.multiplexer, self._queue_keys, [*args, *self.queues])
        if replies == -1:
            return None
        held = {e.raw_id: e for e in self._running.values()} if replies else {}
        for claimed in map(Claimed._make, replies):
            raw_id, exec_id, origin = claimed.id, claimed.execution_id, claimed.origin
            if exec_id is None:
                self._dropped(raw_id, origin)
                continue
            job_id = raw_id.decode("utf-8", "backslashreplace")
            execution = Execution(
                raw_id=raw_id,
                job_id=job_id,
                exec_id=exec_id.decode(),
                origin=origin,
                job=None,
                started_at=now,
            )
            self._read(execution, claimed)
            self._running[execution.exec_id] = execution
            earlier = held.get(raw_id)
            if earlier is not None and not earlier.ended:
                # A sweep took this worker for dead and requeued a job it still runs:
                # that run goes on, and this second booking is let go unrun.
                log.warning("job %r came back while it runs here: not run twice", job_id)
                self._ended_one(ended(execution, Outcome.RELEASE))
                continue
            if earlier is not None:
                # It ended here, and came back before its outcome was recorded (a failover
                # lost the claim, or a sweep requeued it): decided once that outcome is
                # recorded (``_follow``).
                earlier.successor = execution
                continue
            self._ready.append(execution)
            self._claimed_total += 1
        return len(replies)

    def _read(self, execution: Execution, claimed: Claimed) -> None:
        """Decode a claimed job, or leave its big payload for ``_read_big_data``, or fail
        a payload above ``RQ_MAX_JOB_BYTES`` unread."""
        fields = claimed.hash or []
        if claimed.size > self.max_job_bytes:
            execution.problem = (
                f"the worker did not read this job: its payload is {claimed.size:,} bytes, "
                f"above RQ_MAX_JOB_BYTES = {self.max_job_bytes:,}"
            )
        elif claimed.left_out:
            execution.unread = fields
        else:
            execution.job, execution.problem = read_claimed(
                execution.raw_id, fields, self.redis, self.allowlist
            )

    @staticmethod
    def _dropped(raw_id: bytes, why: bytes) -> None:
        job_id = raw_id.decode("utf-8", "backslashreplace")
        if why == b"missing":
            log.warning("dropped id %r from its queue: its job hash is gone", job_id)
        else:
            log.warning(
                "dropped id %r from its queue: the job is already %s, not run again",
                job_id,
                why.decode("utf-8", "backslashreplace"),
            )

    async def _wait_for_jobs(self) -> None:
        """Block until a queue holds a job, without taking it.

        ``BLMOVE q q LEFT LEFT`` pops the head and pushes it straight back in one atomic
        step: it blocks like a pop but leaves the list as it was, so nothing is ever held
        only here. One such wait per queue; the first to return ends the others.
        """
        errors: list[Exception] = []
        if len(self._queue_keys) == 1:  # the common case: no task group on the hot path
            await self._peek(self._queue_keys[0], None, errors)
        else:
            async with anyio.create_task_group() as waits:
                for key in self._queue_keys:
                    waits.start_soon(self._peek, key, waits.cancel_scope, errors)
        if errors:
            raise errors[0]

    async def _peek(
        self, key: str, scope: anyio.CancelScope | None, errors: list[Exception]
    ) -> None:
        try:
            client = self.redis
            wait = block_slice(client, PEEK_SECONDS)
            # Redis takes fractional seconds here; redis-py's stub says int.
            found = await client.blmove(key, key, timeout=wait, src="LEFT", dest="LEFT")  # type: ignore[arg-type]
        except redis.TimeoutError:
            return  # the client's read timeout beat the block: the fetch loop looks again
        except Exception as error:
            errors.append(error)
            found = b""
        if found is not None and scope is not None:
            scope.cancel()

    # -- running ---------------------------------------------------------------------------

    async def _run(self, execution: Execution) -> None:
        """Run one job (unless it cannot be read, or was stopped before it started), hand
        on its outcome, and give its slot to the next claimed job. Never raises."""
        try:
            if execution.unread is not None:
                await self._read_big_data(execution)
            if execution.problem is not None:
                log.warning("job %r failed: %s", execution.job_id, execution.problem)
                outcome = ended(execution, Outcome.INVALID, encode_exc_string(execution.problem))
            elif execution.cancel_reason is None:
                outcome = await self._perform(execution)
            else:
                outcome = await self._cancelled(execution)
        except BaseException as error:  # cancelled in a callback, or a bug of ours
            if not isinstance(error, asyncio.CancelledError):
                log.exception("job %r: running it failed", execution.job_id)
            text = encode_exc_string(format_exception(error))
            failed = execution.cancel_reason != "requeue"
            outcome = ended(execution, Outcome.FAILED if failed else Outcome.REQUEUE, text)
        self._ended_one(outcome)
        self._active -= 1  # its slot is free now; the outcome is written in the background
        self._start_ready()
        self._room.set()

    async def _read_big_data(self, execution: Execution) -> None:
        """Read the job of a big payload, which ``claim.lua`` leaves out, with a plain
        ``HGET`` on a connection of its own, in a thread (``_bulk``): neither this loop's
        running jobs nor other replies wait behind it."""
        assert execution.unread is not None
        fields, execution.unread = execution.unread, None
        try:
            validate_job_id(execution.job_id)
        except InvalidJobError as error:
            execution.problem = f"the worker cannot read this job: {error}"
            return
        try:
            read = ("HGET", keys.job(execution.job_id), "data")
            call = await self.multiplexer.read_field(read, read_call)
        except DeserializationError as error:
            execution.problem = f"the worker cannot read this job: {error}"
            return
        except Exception as error:
            if not is_transient(error):
                raise
            log.warning(
                "job %s: reading its payload failed (%r): put back", execution.job_id, error
            )
            execution.cancel_reason = "requeue"
            return
        execution.job, execution.problem = read_claimed(
            execution.raw_id, fields, self.redis, self.allowlist, call
        )

    def _ended_one(self, outcome: Ended) -> None:
        self._running[outcome.exec_id].ended = True
        self._ended.append(outcome)
        self._ended_event.set()

    async def _perform(self, execution: Execution) -> Ended:
        """Call the job in the app context, under its timeout (``Deadline``: a timeout
        fails it with ``JobTimeoutError``). rq's stop-job command and shutdown cancel the
        job's task; ``cancel_reason`` tells them apart. A job's ``sys.exit()`` is its
        failure; a function outside the allowlist fails it unrun, never retried.
        The lifecycle hooks run around it (``_hooks.around_job``)."""
        assert execution.job is not None
        async with app_context(self.app):
            if not _hooks.around_jobs(self._hooks):
                return await self._attempt(execution)
            attempt = functools.partial(self._attempt, execution)
            cancelled = functools.partial(self._cancelled, execution)
            return await _hooks.around_job(self._hooks, self.app, execution.job, attempt, cancelled)

    async def _attempt(self, execution: Execution) -> Ended:
        """Call the job (in its app context) and tell how it ended."""
        try:
            with Deadline(execution.timeout), running(execution.job):
                value = await self._call(execution)
        except asyncio.CancelledError:
            return await self._cancelled(execution)
        except NotAllowedError as error:
            log.warning("job %r failed: %s", execution.job_id, error)
            return ended(execution, Outcome.INVALID, encode_exc_string(str(error)))
        except (Exception, SystemExit) as error:
            return await self._failed(execution, error)
        return await self._succeeded(execution, value)

    async def _cancelled(self, execution: Execution) -> Ended:
        if execution.cancel_reason == "stopped":
            return await self._stopped(execution)
        return ended(execution, Outcome.REQUEUE)  # shutdown, or a cancel from outside

    async def _call(self, execution: Execution) -> Any:
        job = execution.job
        assert job is not None
        func = self.allowlist.resolve(job.func_name, import_function)
        return await call(func, job.args, job.kwargs, self._limiter)

    async def _succeeded(self, execution: Execution, value: Any) -> Ended:
        job = execution.job
        assert job is not None
        if is_retry(value):  # as rq 3.0: no success callback, run again or fail
            return ended(execution, Outcome.RETRY, encode_retry(value))
        if job.success_callback_name:
            try:
                callback = self.allowlist.resolve(
                    job.success_callback_name, import_function, "success callback"
                )
                await run_callback(callback, job.success_callback_timeout, job, self.redis, value)
            except Exception as error:
                return await self._failed(execution, error)
        return ended(execution, Outcome.FINISHED, encode_return_value(value))

    async def _failed(self, execution: Execution, error: BaseException) -> Ended:
        log.warning("job %s failed: %r", execution.job_id, error)
        job = execution.job
        if job is not None and job.failure_callback_name:
            await self._run_callback_safely(
                job,
                "failure callback",
                job.failure_callback_name,
                job.failure_callback_timeout,
                type(error),
                error,
                error.__traceback__,
            )
        return ended(execution, Outcome.FAILED, encode_exc_string(format_exception(error)))

    async def _stopped(self, execution: Execution) -> Ended:
        job = execution.job
        if job is not None and job.stopped_callback_name:
            await self._run_callback_safely(
                job, "stopped callback", job.stopped_callback_name, job.stopped_callback_timeout
            )
        text = "Job stopped by user, work-horse terminated."
        return ended(execution, Outcome.STOPPED, encode_exc_string(text))

    async def _run_callback_safely(
        self, job: Job, what: str, callback: str, seconds: int, *args: Any
    ) -> None:
        try:
            func = self.allowlist.resolve(callback, import_function, what)
            await run_callback(func, seconds, job, self.redis, *args)
        except Exception:
            log.exception("callback %s of job %s failed", callback, job.id)

    # -- recording outcomes ------------------------------------------------------------------

    async def _finish_loop(self) -> None:
        """Record ended jobs, all that ended since the last write in one round trip.

        A batch whose reply was lost is sent again (finish.lua records an execution once).
        A batch that fails for another reason than Redis trouble is sent one outcome at a
        time, so an outcome finish.lua cannot write never holds up the others.
        """
        backoff = Backoff(self._health)
        while self.state is not WorkerState.DRAINED or self._ended:
            if not self._ended:
                self._ended_event = anyio.Event()
                await self._ended_event.wait()
                continue
            batch, self._ended = self._ended, []
            try:
                with anyio.CancelScope(shield=True):
                    await self._record(batch)
            except Exception as error:
                if is_transient(error) or len(batch) == 1:
                    self._ended = batch + self._ended
                    await backoff.wait(error, f"recording {len(batch)} job outcomes")
                else:
                    await self._record_one_by_one(batch, backoff)
                continue
            backoff.reset()

    async def _record_one_by_one(self, batch: list[Ended], backoff: Backoff) -> None:
        """Record each outcome alone; the ones that still fail wait for the next round."""
        for outcome in batch:
            try:
                with anyio.CancelScope(shield=True):
                    await self._record([outcome])
            except Exception as error:
                self._ended.append(outcome)
                await backoff.wait(error, f"recording the outcome of job {outcome.raw_id!r}")

    async def _record(self, batch: list[Ended]) -> None:
        written = await record(
            self.multiplexer, self.name, batch, self.result_ttl, self.failure_ttl
        )
        for outcome, what in zip(batch, written, strict=True):
            log.debug("job %r: %s", outcome.raw_id, what.decode())
            execution = self._running.pop(outcome.exec_id, None)
            _hooks.recorded(self.app, outcome, what, execution.job if execution else None)
            if execution is not None and execution.successor is not None:
                self._follow(outcome, what == b"recorded", execution)
        self.processed += len(batch)
        self._room.set()  # a burst worker waits for outcomes before it looks again
        if not self._running:
            self._idle.set()

    def _follow(self, outcome: Ended, lost: bool, first: Execution) -> None:
        """Decide a second claim of a job that ended here, now that the first outcome was
        recorded (``lost``: its booking was not found, so nothing was written).

        Written: the second claim is let go (a retry the outcome asked for is queued
        anew). Lost with a final outcome (the failover lost the first claim): the second
        booking records it, and the job does not run again. Lost otherwise (a failure
        with retries left, a shutdown): the second claim runs, as the retry would.
        """
        successor = first.successor
        assert successor is not None
        retries_left = first.job.retries_left if first.job is not None else None
        retryable = outcome.status is Outcome.FAILED and bool(retries_left)
        if not lost or outcome.status is Outcome.RELEASE:
            self._ended_one(ended(successor, Outcome.RELEASE))
        elif outcome.status is Outcome.REQUEUE or retryable:
            if self.state is WorkerState.STOPPING:
                self._ended_one(ended(successor, Outcome.REQUEUE))
            else:
                self._ready.append(successor)
                self._claimed_total += 1
                self._start_ready()
        else:
            log.warning("job %r: its first claim was lost; its outcome stands", outcome.raw_id)
            self._ended_one(ended(successor, outcome.status, outcome.payload))

    # -- upkeep --------------------------------------------------------------------------------

    async def _upkeep(self) -> None:
        """Heartbeat, then (once Redis has been steady long enough for every live worker to
        have re-registered after an outage) rescue the jobs of dead workers."""
        await self._beat()
        if self._health.settled_for(2 * self.heartbeat + Backoff.LONGEST):
            await self._sweep()

    async def _beat(self) -> None:
        async with self._claiming:
            beat = await _bookkeeping.heartbeat(
                self.multiplexer,
                self.name,
                self._registration,
                self.queues,
                list(self._running.values()),
                self.heartbeat,
            )
        self._health.answered()
        if beat.registered_again:
            log.warning(
                "worker %s was not registered (expired, or data lost): registered again", self.name
            )
        if beat.taken_back:
            log.warning("took back %d running jobs a sweep had requeued", beat.taken_back)
        if beat.run_elsewhere:
            log.error("%d running jobs were started by another worker too", beat.run_elsewhere)
        if beat.orphans_requeued:
            log.warning(
                "put back %d jobs claimed by a claim whose reply was lost", beat.orphans_requeued
            )

    async def _sweep(self) -> None:
        swept = await _bookkeeping.sweep(self.multiplexer, self.queues, self.failure_ttl)
        if swept.requeued or swept.failed:
            log.warning(
                "rescued jobs of dead workers: %d requeued, %d failed", swept.requeued, swept.failed
            )
            _hooks.abandoned(self.app, swept.abandoned)

    async def _schedule(self) -> None:
        moved = await _bookkeeping.schedule(self.multiplexer, self.name, self.queues)
        if moved:
            log.info("scheduler moved %d due jobs onto their queues", moved)

    async def _cron(self) -> None:
        await self._crons.run()

    async def _listen_for_commands(self) -> None:
        """rq's worker commands on ``rq:pubsub:<name>``: stop-job, shutdown, kill-horse.

        The subscription has a connection of its own: held for the worker's life, it
        would otherwise leave the steps that need a pooled connection one fewer.
        """
        backoff = Backoff(self._health)
        while True:
            try:
                async with dedicated_client(self.redis) as client, client.pubsub() as pubsub:
                    await pubsub.subscribe(keys.pubsub(self.name))
                    backoff.reset()
                    async for message in pubsub.listen():
                        if message["type"] == "message":
                            self._on_command(message["data"])
            except Exception as error:
                await backoff.wait(error, "listening for rq commands")

    def _on_command(self, raw: bytes) -> None:
        try:
            command = json.loads(raw)
        except ValueError:
            command = None
        name = command.get("command") if isinstance(command, dict) else None
        if not isinstance(name, str):
            log.warning("ignoring a malformed command: %r", raw[:200])
            return
        log.info("received command %s", command)
        if name == "shutdown":
            self.request_stop()
        elif name == "kill-horse":
            self._cancel_running("stopped")
        elif name in ("stop-job", "stop-execution"):
            for execution in self._running.values():
                if (
                    execution.job_id == command.get("job_id")
                    and command.get("execution_id", execution.exec_id) == execution.exec_id
                ):
                    self._cancel(execution, "stopped")
