"""Prometheus metrics of an app's jobs (the ``prometheus`` extra: ``prometheus-client``).

``python -m aiorq_flask.worker ... --metrics-port 9100`` serves them at ``/metrics``; in
code, ``instrument(app)`` collects them into a registry of your own. They are wired
through the app's lifecycle hooks and job signals, like any app's own instrumentation:

- ``aiorq_jobs_total{queue, outcome}``: jobs this process saw end (``finished``,
  ``failed``, ``stopped``, ``invalid``, ``retried``), and dead workers' jobs its sweep
  rescued (``abandoned``).
- ``aiorq_job_duration_seconds{queue}``: how long each job ran, hooks included.
- ``aiorq_queue_depth{queue}``: jobs waiting in each queue the worker serves, read from
  Redis (one round trip on the worker's loop) at each scrape.
- ``aiorq_worker_busy_slots`` and ``aiorq_worker_slots``: jobs running now, and how many
  may (``--concurrency``).
- ``aiorq_jobs_enqueued_total{queue}``: jobs this process enqueued (an app serving web
  requests exposes its registry the way it serves other metrics).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from . import keys, signals
from ._state import state_of
from .job import Job
from .outcomes import Ended

if TYPE_CHECKING:
    from .worker import Worker

log = logging.getLogger("aiorq_flask.metrics")

SCRAPE_TIMEOUT = 2.0  # how long a scrape waits for the queue depths before leaving them out
_OUTCOMES = ("finished", "failed", "retried", "abandoned")  # shown at 0 from the start
_started: ContextVar[float] = ContextVar("aiorq_job_started")  # per job task


class JobMetrics(Collector):
    """The metrics of one app's jobs; ``instrument`` builds and installs one."""

    def __init__(self, app: Any, registry: CollectorRegistry) -> None:
        self.app = app
        self.registry = registry
        self.jobs = Counter(
            "aiorq_jobs",
            "Jobs ended, by queue and outcome",
            ["queue", "outcome"],
            registry=registry,
        )
        self.duration = Histogram(
            "aiorq_job_duration_seconds", "How long each job ran", ["queue"], registry=registry
        )
        self.enqueued = Counter(
            "aiorq_jobs_enqueued", "Jobs enqueued by this process", ["queue"], registry=registry
        )
        self._worker: Worker | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        registry.register(self)

    def install(self) -> None:
        """Add the hooks to the app's state and connect the signals (for this app only)."""
        hooks = state_of(self.app).hooks
        hooks.worker_startup.append(self.worker_started)
        hooks.worker_shutdown.append(self.worker_stopped)
        hooks.before_job.append(self.before_job)
        hooks.after_job.append(self.after_job)
        for signal, receiver in (
            (signals.job_finished, self.on_ended),
            (signals.job_failed, self.on_ended),
            (signals.job_retried, self.on_retried),
            (signals.job_abandoned, self.on_abandoned),
            (signals.job_enqueued, self.on_enqueued),
        ):
            signal.connect(receiver, sender=self.app, weak=False)

    # -- hooks -------------------------------------------------------------------------

    def worker_started(self, worker: Worker) -> None:
        self._worker, self._loop = worker, asyncio.get_running_loop()
        for queue in worker.queues:
            self.duration.labels(queue)
            for outcome in _OUTCOMES:
                self.jobs.labels(queue, outcome)

    def worker_stopped(self, worker: Worker) -> None:
        self._worker = self._loop = None

    def before_job(self, job: Job) -> None:
        _started.set(time.perf_counter())

    def after_job(self, job: Job, outcome: Ended) -> None:
        started = _started.get(None)
        if started is not None:
            self.duration.labels(job.origin).observe(time.perf_counter() - started)

    # -- signal receivers ------------------------------------------------------------

    def on_ended(self, app: Any, job: Job | None, outcome: Ended, **extra: Any) -> None:
        self.jobs.labels(_queue_of(job, outcome), outcome.status.value).inc()

    def on_retried(self, app: Any, job: Job | None, outcome: Ended, **extra: Any) -> None:
        self.jobs.labels(_queue_of(job, outcome), "retried").inc()

    def on_abandoned(self, app: Any, queue: str, **extra: Any) -> None:
        self.jobs.labels(queue, "abandoned").inc()

    def on_enqueued(self, app: Any, job: Job, **extra: Any) -> None:
        self.enqueued.labels(job.origin).inc()

    # -- read at each scrape (in the metrics server's thread) -------------------------

    def describe(self) -> Iterable[Metric]:
        return list(self._gauges())

    def collect(self) -> Iterable[Metric]:
        worker = self._worker
        depth, busy, slots = self._gauges()
        if worker is not None:
            busy.add_metric([], worker.busy)
            slots.add_metric([], worker.concurrency)
            for queue, count in self._depths(worker).items():
                depth.add_metric([queue], count)
        return [depth, busy, slots]

    @staticmethod
    def _gauges() -> tuple[GaugeMetricFamily, GaugeMetricFamily, GaugeMetricFamily]:
        return (
            GaugeMetricFamily("aiorq_queue_depth", "Jobs waiting in the queue", labels=["queue"]),
            GaugeMetricFamily("aiorq_worker_busy_slots", "Jobs the worker runs now"),
            GaugeMetricFamily("aiorq_worker_slots", "Jobs the worker may run at once"),
        )

    def _depths(self, worker: Worker) -> dict[str, int]:
        """The length of each queue the worker serves, read on the worker's loop; empty
        if it does not answer within ``SCRAPE_TIMEOUT`` (the scrape shows no depth)."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return {}
        future = asyncio.run_coroutine_threadsafe(_read_depths(worker), loop)
        try:
            return future.result(SCRAPE_TIMEOUT)
        except Exception as error:
            future.cancel()
            log.warning("reading the queue depths for a scrape failed: %r", error)
            return {}


async def _read_depths(worker: Worker) -> dict[str, int]:
    async with worker.redis.pipeline(transaction=False) as pipe:
        for queue in worker.queues:
            pipe.llen(keys.queue(queue))
        counts = await pipe.execute()
    return dict(zip(worker.queues, map(int, counts), strict=True))


def _queue_of(job: Job | None, outcome: Ended) -> str:
    return job.origin if job is not None else outcome.origin.decode("utf-8", "backslashreplace")


def instrument(app: Any, registry: CollectorRegistry | None = None) -> JobMetrics:
    """Collect the metrics of ``app``'s jobs (its ``AsyncRQ`` must be registered) into
    ``registry`` (a new one by default: ``instrument(app).registry``)."""
    metrics = JobMetrics(app, registry if registry is not None else CollectorRegistry())
    metrics.install()
    return metrics


def serve(app: Any, port: int, addr: str = "0.0.0.0") -> JobMetrics:
    """``instrument(app)`` and serve its registry at ``http://addr:port/metrics`` from a
    daemon thread. Raises ``OSError`` if the port cannot be bound."""
    metrics = JobMetrics(app, CollectorRegistry())
    start_http_server(port, addr, registry=metrics.registry)
    metrics.install()
    return metrics
