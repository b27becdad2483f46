"""The asyncio worker: one process serves every queue of one connection.

A few cooperating tasks around one stop request:

- the fetch loop claims waiting jobs (several per round trip, queues in priority order,
  popped and booked in ``rq:wip`` in one Lua call) and blocks while all queues are empty;
- each job runs as its own task: ``async def`` on the loop, plain functions in threads;
- the finisher writes outcomes, batching whatever has ended into one round trip;
- upkeep: heartbeat, sweep (rescue jobs of dead workers), scheduler, and the pub/sub
  listener for rq's stop-job command.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import signal
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio
import redis
from anyio.abc import TaskGroup
from redis.asyncio import Redis

from .. import _scripts, keys
from .._connections import block_slice, dedicated_client
from .._multiplexer import Multiplexer
from ..errors import ConfigError, InvalidJobError, JobTimeoutError
from ..execution import (
    app_context,
    call,
    encode_exc_string,
    encode_return_value,
    format_exception,
    import_function,
    run_callback,
)
from ..job import (
    DEFAULT_FAILURE_TTL,
    DEFAULT_RESULT_TTL,
    Job,
    epoch_ts,
    parse_timeout,
)
from ..payload import decode_data
from ..serializer import MsgpackSerializer
from . import _bookkeeping
from ._loops import REDIS_ERRORS, Backoff, every

if TYPE_CHECKING:
    from .._extension import AppState

log = logging.getLogger("aiorq_flask.worker")

PEEK_SECONDS = 2.0  # how long one idle wait blocks before the fetch loop looks again


@dataclass
class Execution:
    """One job this worker has claimed and not yet recorded the end of."""

    job_id: str
    exec_id: str
    origin: str
    data: bytes | None  # None: the hash was gone or had no data when claimed
    timeout: int
    callbacks: tuple[bytes | None, bytes | None, bytes | None]  # success, failure, stopped
    started_at: float = field(default_factory=time.time)
    task: asyncio.Task[None] | None = None
    cancel_reason: str | None = None  # "timeout", "stopped" (stop-job), "requeue" (shutdown)


@dataclass(frozen=True)
class Outcome:
    execution: Execution
    status: str  # finished | failed | stopped | requeue
    payload: str = ""


class Worker:
    """Serves the queues of one resolved connection until stopped.

    ``await worker.work()`` runs until SIGTERM/SIGINT (when run in the main thread),
    ``worker.request_stop()``, rq's shutdown command, or, with ``burst=True``, until the
    queues are empty and every claimed job has been recorded.
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
    ) -> None:
        served = state.plan.queues_on(connection)
        if queues is None:
            queues = list(served)
        for queue in queues:
            if queue not in served:
                raise ConfigError(
                    f"queue {queue!r} is not served by connection {connection!r} "
                    f"(it serves: {', '.join(served)})"
                )
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
        self.wip_ttl = _bookkeeping.wip_ttl(heartbeat)
        self._pools = state.pools
        self._queue_keys = [keys.queue(q) for q in self.queues]
        self._running: dict[str, Execution] = {}
        self._claimed_total = 0
        self._ended: list[Outcome] = []
        self._active = 0  # jobs whose task runs
        # Claimed ahead, to start the moment a slot frees instead of one claim round trip
        # later. Booked as started (in rq:wip, so never lost); a stop puts them back.
        self._ready: collections.deque[Execution] = collections.deque()
        self._accepting = True
        self._stopping = False
        self.processed = 0

    def __repr__(self) -> str:
        return f"<Worker {self.name} on {self.connection_name!r}: {', '.join(self.queues)}>"

    @property
    def redis(self) -> Redis:
        return self._pools.client(self.connection_name)

    @property
    def multiplexer(self) -> Multiplexer:
        """The connection shared by the worker's script calls (claim, finish, upkeep)."""
        return self._pools.multiplexer(self.connection_name)

    # -- lifecycle ---------------------------------------------------------------------

    async def work(self, burst: bool = False) -> None:
        """Register, serve until stopped, put back unfinished jobs, deregister."""
        # anyio primitives belong to a running loop: made here, not in __init__.
        self._limiter = anyio.CapacityLimiter(self.concurrency)
        self._room = anyio.Event()
        self._idle = anyio.Event()
        self._ended_event = anyio.Event()
        self._fetch_scope = anyio.CancelScope()
        await _bookkeeping.register(self.redis, self.name, self.queues, self.heartbeat)
        log.info(
            "worker %s serving %s on %r", self.name, ", ".join(self.queues), self.connection_name
        )
        try:
            async with anyio.create_task_group() as upkeep:
                self._start_upkeep(upkeep)
                async with anyio.create_task_group() as recording:
                    recording.start_soon(self._finish_loop)
                    with self._fetch_scope:
                        await self._fetch_loop(burst)
                    await self._drain()
                    self._accepting = False
                    self._ended_event.set()
                upkeep.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                await _bookkeeping.deregister(self.redis, self.multiplexer, self.name, self.queues)
        log.info("worker %s stopped after %d jobs", self.name, self.processed)

    def request_stop(self) -> None:
        """Stop taking jobs; running ones get the grace period, then are put back."""
        if self._stopping:
            log.warning("second stop request: putting back running jobs now")
            self.grace_period = 0
            self._cancel_running("requeue")
        self._stopping = True
        self._fetch_scope.cancel()

    def _start_upkeep(self, group: TaskGroup) -> None:
        group.start_soon(every, self.heartbeat, self._send_heartbeat)
        group.start_soon(every, self.heartbeat / 2, self._sweep)
        group.start_soon(every, 1.0, self._schedule)
        group.start_soon(self._listen_for_commands)
        if threading.current_thread() is threading.main_thread():
            group.start_soon(self._handle_signals)

    async def _drain(self) -> None:
        """Put back jobs claimed ahead; wait for running jobs up to the grace period, then
        cancel and put back the rest."""
        while self._ready and self._stopping:
            execution = self._ready.popleft()
            execution.cancel_reason = execution.cancel_reason or "requeue"
            self._ended.append(await self._cancelled(execution))
            self._ended_event.set()
        if self._running and self._stopping:
            log.info("waiting up to %gs for %d running jobs", self.grace_period, len(self._running))
            with anyio.move_on_after(self.grace_period):
                await self._wait_idle()
            self._cancel_running("requeue")
        await self._wait_idle()

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
        backoff = Backoff()
        drained = False  # the last claim took fewer jobs than it had room for
        while not self._reached_max_jobs():
            room = self.concurrency + self.prefetch - self._active - len(self._ready)
            if self.max_jobs is not None:
                room = min(room, self.max_jobs - self._claimed_total)
            if room <= 0:
                self._room = anyio.Event()
                await self._room.wait()
                continue
            try:
                if drained and not burst:
                    # The queues were empty a moment ago: wait (returns at once if a job
                    # came meanwhile) rather than spend a round trip on another claim.
                    await self._wait_for_jobs()
                with anyio.CancelScope(shield=True):  # a claim in flight must be seen
                    claimed = await self._claim(room)
                if claimed is None:  # rq suspend
                    if burst:
                        return
                    await anyio.sleep(1)
                    continue
                drained = len(claimed) < room
                if not claimed and burst:
                    if not self._running:
                        return
                    self._room = anyio.Event()
                    await self._room.wait()
            except REDIS_ERRORS as error:
                await backoff.wait(f"fetching jobs failed: {error!r}")
                continue
            backoff.reset()
            self._ready.extend(claimed)
            self._start_ready()

    def _start_ready(self) -> None:
        """Start claimed jobs while there are free slots."""
        loop = asyncio.get_running_loop()
        while self._ready and self._active < self.concurrency:
            execution = self._ready.popleft()
            self._active += 1
            # Plain tasks: a job is the hot path, and an asyncio task costs a fifth of a
            # task-group child. The map of executions is what shutdown and stop-job
            # cancel; a timer handle is each job's timeout.
            execution.task = loop.create_task(self._run(execution))

    def _reached_max_jobs(self) -> bool:
        return self.max_jobs is not None and self._claimed_total >= self.max_jobs

    async def _claim(self, room: int) -> list[Execution] | None:
        """Claim up to ``room`` jobs; None while rq's suspend flag is set."""
        now = time.time()
        exec_prefix = uuid.uuid4().hex[:24]
        args = [self.name, room, repr(now), epoch_ts(now), self.wip_ttl, exec_prefix]
        replies = await _scripts.CLAIM(self.multiplexer, self._queue_keys, args)
        if replies == -1:
            return None
        claimed = []
        for job_id, exec_id, origin, fields in replies:
            data, timeout, *callbacks = fields or (None, None, None, None, None)
            execution = Execution(
                job_id=job_id.decode(),
                exec_id=exec_id.decode(),
                origin=origin.decode(),
                data=data,
                timeout=parse_timeout(timeout),
                callbacks=(callbacks[0] or None, callbacks[1] or None, callbacks[2] or None),
                started_at=now,
            )
            self._running[execution.exec_id] = execution
            claimed.append(execution)
        self._claimed_total += len(claimed)
        return claimed

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
        except REDIS_ERRORS as error:
            errors.append(error)
            found = b""
        if found is not None and scope is not None:
            scope.cancel()

    # -- running ---------------------------------------------------------------------------

    async def _run(self, execution: Execution) -> None:
        """Run one job (unless it was stopped before it started), hand on its outcome,
        and give its slot to the next claimed job."""
        if execution.cancel_reason is None:
            outcome = await self._perform(execution)
        else:
            outcome = await self._cancelled(execution)
        self._ended.append(outcome)
        self._ended_event.set()
        self._active -= 1  # its slot is free now; the outcome is written in the background
        self._start_ready()
        self._room.set()

    async def _perform(self, execution: Execution) -> Outcome:
        """Call the job in the app context, under its timeout.

        Timeout, rq's stop-job command and shutdown all cancel the job's task;
        ``cancel_reason`` tells them apart.
        """
        timer = None
        if execution.timeout > 0:
            loop = asyncio.get_running_loop()
            timer = loop.call_later(execution.timeout, self._cancel, execution, "timeout")
        try:
            async with app_context(self.app):
                try:
                    value = await self._call(execution)
                except asyncio.CancelledError:
                    return await self._cancelled(execution)
                except Exception as error:
                    return await self._failed(execution, error)
                return await self._succeeded(execution, value)
        except BaseException as error:  # a bug of ours: never leave a job unrecorded
            log.exception("job %s could not be recorded", execution.job_id)
            return Outcome(execution, "failed", encode_exc_string(format_exception(error)))
        finally:
            if timer is not None:
                timer.cancel()

    async def _cancelled(self, execution: Execution) -> Outcome:
        reason = execution.cancel_reason
        if reason == "stopped":
            return await self._stopped(execution)
        if reason == "timeout":
            error = JobTimeoutError(f"job exceeded its timeout of {execution.timeout} seconds")
            return await self._failed(execution, error)
        return Outcome(execution, "requeue")  # shutdown, or a cancel from outside

    async def _call(self, execution: Execution) -> Any:
        if execution.data is None:
            raise InvalidJobError(
                f"job {execution.job_id!r} has no hash (or no 'data' field) in Redis"
            )
        func_name, args, kwargs = decode_data(execution.data)
        return await call(import_function(func_name), args, kwargs, self._limiter)

    async def _succeeded(self, execution: Execution, value: Any) -> Outcome:
        callback = execution.callbacks[0]
        if callback is not None:
            job = await Job.fetch(execution.job_id, self.redis)
            try:
                await run_callback(callback, job.success_callback_timeout, job, self.redis, value)
            except Exception as error:
                return await self._failed(execution, error)
        return Outcome(execution, "finished", encode_return_value(value))

    async def _failed(self, execution: Execution, error: BaseException) -> Outcome:
        log.warning("job %s failed: %r", execution.job_id, error)
        callback = execution.callbacks[1]
        if callback is not None:
            await self._run_callback_safely(
                execution, callback, "failure", type(error), error, error.__traceback__
            )
        return Outcome(execution, "failed", encode_exc_string(format_exception(error)))

    async def _stopped(self, execution: Execution) -> Outcome:
        callback = execution.callbacks[2]
        if callback is not None:
            await self._run_callback_safely(execution, callback, "stopped")
        text = "Job stopped by user, work-horse terminated."
        return Outcome(execution, "stopped", encode_exc_string(text))

    async def _run_callback_safely(
        self, execution: Execution, callback: bytes, kind: str, *args: Any
    ) -> None:
        try:
            job = await Job.fetch(execution.job_id, self.redis)
            timeout = getattr(job, f"{kind}_callback_timeout")
            await run_callback(callback, timeout, job, self.redis, *args)
        except Exception:
            log.exception("%s callback of job %s failed", kind, execution.job_id)

    # -- recording outcomes ------------------------------------------------------------------

    async def _finish_loop(self) -> None:
        """Record ended jobs, all that ended since the last write in one round trip."""
        backoff = Backoff()
        while self._accepting or self._ended:
            if not self._ended:
                self._ended_event = anyio.Event()
                await self._ended_event.wait()
                continue
            batch, self._ended = self._ended, []
            while True:
                try:
                    with anyio.CancelScope(shield=True):
                        await self._record(batch)
                    break
                except REDIS_ERRORS as error:
                    await backoff.wait(f"recording {len(batch)} job outcomes failed: {error!r}")
            backoff.reset()

    async def _record(self, batch: list[Outcome]) -> None:
        now = time.time()
        ts = epoch_ts(now)
        executions = [
            [
                o.execution.job_id,
                o.execution.exec_id,
                o.execution.origin,
                o.status,
                o.payload,
                repr(o.execution.started_at),
                repr(max(now - o.execution.started_at, 0.0)),
            ]
            for o in batch
        ]
        args = [
            self.name,
            repr(now),
            ts,
            self.result_ttl,
            self.failure_ttl,
            MsgpackSerializer.dumps(executions),
        ]
        results = await _scripts.FINISH(self.multiplexer, [], args)
        for outcome, written in zip(batch, results, strict=True):
            execution = outcome.execution
            log.debug("job %s: %s", execution.job_id, written.decode())
            self._running.pop(execution.exec_id, None)
        self.processed += len(batch)
        self._room.set()  # a burst worker waits for outcomes before it looks again
        if not self._running:
            self._idle.set()

    # -- upkeep --------------------------------------------------------------------------------

    async def _send_heartbeat(self) -> None:
        busy = bool(self._running)
        running = list(self._running.values())
        await _bookkeeping.heartbeat(self.multiplexer, self.name, running, self.heartbeat, busy)

    async def _sweep(self) -> None:
        requeued, failed = await _bookkeeping.sweep(self.multiplexer, self.queues, self.failure_ttl)
        if requeued or failed:
            log.warning("rescued jobs of dead workers: %d requeued, %d failed", requeued, failed)

    async def _schedule(self) -> None:
        moved = await _bookkeeping.schedule(self.multiplexer, self.name, self.queues)
        if moved:
            log.info("scheduler moved %d due jobs onto their queues", moved)

    async def _listen_for_commands(self) -> None:
        """rq's worker commands on ``rq:pubsub:<name>``: stop-job, shutdown, kill-horse."""
        backoff = Backoff()
        while True:
            try:
                async with dedicated_client(self.redis) as client, client.pubsub() as pubsub:
                    await pubsub.subscribe(keys.pubsub(self.name))
                    backoff.reset()
                    async for message in pubsub.listen():
                        if message["type"] == "message":
                            self._on_command(message["data"])
            except REDIS_ERRORS as error:
                await backoff.wait(f"command channel lost: {error!r}")

    def _on_command(self, raw: bytes) -> None:
        try:
            command = json.loads(raw)
        except ValueError:
            log.warning("ignoring malformed command %r", raw)
            return
        name = command.get("command")
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
