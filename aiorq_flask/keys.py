"""Every Redis key name aiorq_flask reads or writes, in one place.

The names are RQ's own (``../shared/spec/rq-data-model.md`` §2), so stock rq tools see
our queues, jobs, registries and workers. Python code spells no key outside this module.
The Lua scripts in ``scripts/`` build the keys they reach from a job id or a queue name
inside the script (``rq:job:<id>``, ``rq:wip:<q>``, ``rq:execution:<id>:<exec>``, ...),
since a script cannot call back here; they use the same names.
"""

from __future__ import annotations

PREFIX = "rq:"
QUEUES = "rq:queues"
WORKERS = "rq:workers"
SUSPENDED = "rq:suspended"


def queue(name: str) -> str:
    return f"rq:queue:{name}"


def job(job_id: str) -> str:
    return f"rq:job:{job_id}"


def dependents(job_id: str) -> str:
    return f"rq:job:{job_id}:dependents"


def dependencies(job_id: str) -> str:
    # The double colon is rq's: it appends ":<id>:dependencies" to "rq:job:".
    return f"rq:job::{job_id}:dependencies"


def results(job_id: str) -> str:
    return f"rq:results:{job_id}"


def finished(name: str) -> str:
    return f"rq:finished:{name}"


def failed(name: str) -> str:
    return f"rq:failed:{name}"


def deferred(name: str) -> str:
    return f"rq:deferred:{name}"


def scheduled(name: str) -> str:
    return f"rq:scheduled:{name}"


def canceled(name: str) -> str:
    return f"rq:canceled:{name}"


def worker(name: str) -> str:
    return f"rq:worker:{name}"


def workers_on(queue_name: str) -> str:
    return f"rq:workers:{queue_name}"


def worker_executions(name: str) -> str:
    return f"rq:worker:{name}:executions"


def pubsub(worker_name: str) -> str:
    return f"rq:pubsub:{worker_name}"


def scheduler(name: str) -> str:
    return f"rq:scheduler:{name}"
