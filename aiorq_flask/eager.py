"""Eager mode (``RQ_ASYNC = False``, or unset in a testing app): run a job at enqueue.

The job is awaited on the caller's loop (a plain function in a thread, so the loop never
blocks) under the same timeout as on a worker, and its outcome is recorded through the
same path as a worker's: the job hash, its status and the results stream end as a worker
would leave them. A failing job does not raise at the call site; its result records the
failure. Retries and repeats are a worker's business: an eager job runs once. Inside
it, ``get_current_job()`` is its handle, as on a worker.
"""

from __future__ import annotations

import dataclasses
import time
import uuid

from ._multiplexer import Multiplexer
from ._scripts import Outcome
from .current import running
from .execution import (
    Deadline,
    call,
    encode_exc_string,
    encode_retry,
    encode_return_value,
    format_exception,
    import_function,
    is_retry,
)
from .job import DEFAULT_FAILURE_TTL, DEFAULT_RESULT_TTL, Job, now_ts
from .outcomes import Ended, record
from .prepare import EnqueueData

# Fields that ask a worker to run a job again: an eager job runs once.
_WORKERS_BUSINESS = ("retries_left", "retry_intervals", "repeats_left", "repeat_intervals")


def as_started(data: EnqueueData) -> EnqueueData:
    """``data`` as it is written for running now: started, with no retries or repeats."""
    started = now_ts()
    kept = {k: v for k, v in data.fields.items() if k not in _WORKERS_BUSINESS}
    return dataclasses.replace(
        data, retry=None, fields={**kept, "started_at": started, "last_heartbeat": started}
    )


async def run_eagerly(data: EnqueueData, multiplexer: Multiplexer, job: Job) -> str:
    """Run the job ``data`` (written as started; ``job`` is its handle, the current job
    while it runs) and record its outcome; return its status. A returned ``Retry`` ends
    it failed, as one past its ``max`` does on a worker."""
    started = time.time()
    try:
        func = import_function(data.func_name)
        with Deadline(data.timeout), running(job):
            value = await call(func, data.args, data.kwargs)
        if is_retry(value):
            status, payload = Outcome.RETRY, encode_retry(value, most=0)
        else:
            status, payload = Outcome.FINISHED, encode_return_value(value)
    except Exception as error:
        status, payload = Outcome.FAILED, encode_exc_string(format_exception(error))
    origin = job.origin.encode()
    ended = Ended(data.job_id.encode(), uuid.uuid4().hex, origin, status, payload, started)
    await record(multiplexer, "", [ended], DEFAULT_RESULT_TTL, DEFAULT_FAILURE_TTL)
    return status.value
