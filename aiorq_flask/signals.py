"""Signals for a job's events, to attach metrics or tracing to: blinker's, as Flask's own.

Each is sent with the app as sender, so ``job_finished.connect(f, sender=app)`` hears
one app only; a receiver takes the sender and keyword arguments::

    from aiorq_flask.signals import job_failed

    @job_failed.connect
    def count_failure(app, job, outcome, **extra):
        failures.labels(outcome.origin.decode()).inc()

Receivers are plain functions, called synchronously on the sender's event loop: keep
them quick (an ``async def`` receiver, or one that raises, is logged with its traceback
and skipped; the job goes on). With nothing connected a signal costs one dict lookup.

- ``job_enqueued`` (the app, from ``enqueue*`` and ``enqueue_many``): ``job``, as written
  (queued, deferred or scheduled). Eager mode sends no signal.
- ``job_started`` (the worker, in the job's task and app context, before the
  ``before_job`` hooks): ``job``.
- ``job_finished``, ``job_failed``, ``job_retried`` (the worker, once the outcome is in
  Redis): ``job`` and ``outcome`` (``outcomes.Ended``). A failed job's ``outcome.status``
  is ``failed``, ``stopped`` or ``invalid`` (the worker could not read it, and then
  ``job`` is None, or must not run it); a retried one failed (``outcome.status`` is
  ``failed``) with retries left, and is queued or scheduled again.
- ``job_abandoned`` (the worker whose sweep found a dead worker's job): ``job_id``,
  ``queue`` and ``requeued`` (False: its retries were used up, so it failed).
"""

from __future__ import annotations

import inspect
import logging
from typing import Any

from blinker import NamedSignal, Namespace

log = logging.getLogger("aiorq_flask.signals")

_signals = Namespace()

job_enqueued = _signals.signal("job-enqueued", doc="A job was written by an enqueue call.")
job_started = _signals.signal("job-started", doc="A worker starts running a job.")
job_finished = _signals.signal("job-finished", doc="A job succeeded; its result is in Redis.")
job_failed = _signals.signal("job-failed", doc="A job failed, was stopped, or was unreadable.")
job_retried = _signals.signal("job-retried", doc="A failed job was queued for another try.")
job_abandoned = _signals.signal("job-abandoned", doc="A dead worker's job was rescued.")


def send(signal: NamedSignal, sender: Any, **kwargs: Any) -> None:
    """Send ``signal`` to its receivers; one that fails is logged, never raised, so a
    receiver's bug cannot fail an enqueue already written nor stop a worker. Callers
    check ``signal.receivers`` first, so an unused signal costs nothing more."""
    for receiver in signal.receivers_for(sender):
        try:
            if inspect.iscoroutinefunction(receiver):
                raise TypeError("signal receivers must be plain functions, not async def")
            receiver(sender, **kwargs)
        except Exception:
            log.exception("receiver %r of signal %r failed", receiver, signal.name)
