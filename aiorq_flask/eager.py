"""Eager mode (``RQ_ASYNC = False``, or unset in a testing app): run a job at enqueue.

The job is awaited on the caller's loop (a plain function in a thread, so the loop never
blocks) under the same timeout as on a worker, and its outcome is recorded through the
same path as a worker's: the job hash, its status and the results stream end as a worker
would leave them. A failing job does not raise at the call site; its result records the
failure. Retries and repeats are a worker's business: an eager job runs once.
"""

from __future__ import annotations

import dataclasses
import time
import uuid

from ._multiplexer import Multiplexer
from ._scripts import Outcome
from .execution import (
    Deadline,
    call,
    encode_exc_string,
    encode_return_value,
    format_exception,
    import_function,
)
from .job import DEFAULT_FAILURE_TTL, DEFAULT_RESULT_TTL, now_ts
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


async def run_eagerly(data: EnqueueData, multiplexer: Multiplexer, origin: str) -> str:
    """Run the job ``data`` (written as started) and record its outcome; return its status."""
    started = time.time()
    try:
        func = import_function(data.func_name)
        with Deadline(data.timeout):
            value = await call(func, data.args, data.kwargs)
        status, payload = Outcome.FINISHED, encode_return_value(value)
    except Exception as error:
        status, payload = Outcome.FAILED, encode_exc_string(format_exception(error))
    ended = Ended(data.job_id.encode(), uuid.uuid4().hex, origin.encode(), status, payload, started)
    await record(multiplexer, "", [ended], DEFAULT_RESULT_TTL, DEFAULT_FAILURE_TTL)
    return status.value
