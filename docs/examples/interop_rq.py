"""Stock rq 3.0 and aiorq_flask on the same jobs: rq reads ours, and enqueues for us."""

from __future__ import annotations

from redis import Redis
from rq import Queue
from rq.job import Job

from aiorq_flask.serializer import MsgpackSerializer


def add(a: int, b: int) -> int:
    return a + b


def status_seen_by_rq(url: str, job_id: str) -> str:
    """What stock rq says about a job aiorq_flask enqueued."""
    with Redis.from_url(url) as connection:
        job = Job.fetch(job_id, connection=connection, serializer=MsgpackSerializer)
        return job.get_status().value


def enqueue_with_rq(url: str) -> str:
    """A job enqueued by stock rq, with the msgpack serializer: our worker runs it."""
    with Redis.from_url(url) as connection:
        queue = Queue("default", connection=connection, serializer=MsgpackSerializer)
        return queue.enqueue(add, 2, 3).id
