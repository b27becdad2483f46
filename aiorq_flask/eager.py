"""Eager mode (``RQ_ASYNC = False``, or unset in a testing app): run a job at enqueue.

The job is awaited on the caller's loop (a plain function in a thread, so the loop never
blocks) and leaves the state a worker would: the job hash, its status and the results
stream. A failing job does not raise at the call site; its result records the failure.
Retries are a worker's business: an eager job runs once.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from typing import TYPE_CHECKING

from . import _scripts
from .errors import NoSuchJobError
from .execution import (
    call_with_timeout,
    encode_exc_string,
    encode_return_value,
    format_exception,
    import_function,
)
from .job import DEFAULT_FAILURE_TTL, DEFAULT_RESULT_TTL, Job, JobStatus, now_ts

if TYPE_CHECKING:
    from .queue import EnqueueData, Queue


async def run_eagerly(queue: Queue, data: EnqueueData) -> Job:
    connection = queue.connection
    started = now_ts()
    data = dataclasses.replace(
        data,
        retry=None,
        fields={
            **{
                k: v for k, v in data.fields.items() if k not in ("retries_left", "retry_intervals")
            },
            "started_at": started,
            "last_heartbeat": started,
        },
    )
    await queue._write(data, JobStatus.STARTED)
    started_at = time.time()
    try:
        func = import_function(data.func_name)
        value = await call_with_timeout(func, data.args, data.kwargs, data.timeout)
        status, payload = "finished", encode_return_value(value)
    except Exception as error:
        status, payload = "failed", encode_exc_string(format_exception(error))
    now = time.time()
    await _scripts.FINISH(
        queue.multiplexer,
        [],
        [
            "",
            repr(now),
            now_ts(),
            DEFAULT_RESULT_TTL,
            DEFAULT_FAILURE_TTL,
            _scripts.pack_argument(
                [
                    [
                        data.job_id,
                        uuid.uuid4().hex,
                        queue.name,
                        status,
                        payload,
                        repr(started_at),
                        repr(now - started_at),
                    ]
                ]
            ),
        ],
    )
    try:
        return await Job.fetch(data.job_id, connection)
    except NoSuchJobError:  # result_ttl=0: the finished job was deleted, as a worker does
        return queue._job(data, connection, JobStatus(status))
