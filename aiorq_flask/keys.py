"""Every Redis key name aiorq_flask reads or writes, in one place.

The names are RQ's own (``../shared/spec/rq-data-model.md`` §2), so stock rq tools see
our queues, jobs, registries and workers. The prefix is rq 3.0's: ``RQ_KEY_PREFIX`` from
the environment when this module is first imported (default ``rq``), checked the way rq
checks it, so a stock rq worker started with the same variable shares our keys.

Python builds keys with the functions below; the Lua scripts get the same names from a
preamble rendered from ``TEMPLATES`` when they load (``lua_preamble``), so no script spells
a key of its own.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable

PREFIX = os.environ.get("RQ_KEY_PREFIX", "rq")
if not re.fullmatch(r"[A-Za-z0-9_.:{}-]+", PREFIX):
    raise ValueError(
        f"RQ_KEY_PREFIX={PREFIX!r} is not valid: rq allows only letters, digits and _ . : - {{ }}"
    )

# Each key: its name in the Lua preamble's KEY table, and its text with {0}, {1} where the
# job id, queue name, worker name or execution id goes. The double colon of dependencies
# is rq's: it appends ":<id>:dependencies" to "<prefix>:job:".
TEMPLATES: dict[str, str] = {
    "queues": "{p}:queues",
    "workers": "{p}:workers",
    "suspended": "{p}:suspended",
    "queue": "{p}:queue:{0}",
    "job": "{p}:job:{0}",
    "dependents": "{p}:job:{0}:dependents",
    "dependencies": "{p}:job::{0}:dependencies",
    "results": "{p}:results:{0}",
    "execution": "{p}:execution:{0}:{1}",
    "executions": "{p}:executions:{0}",
    "wip": "{p}:wip:{0}",
    "finished": "{p}:finished:{0}",
    "failed": "{p}:failed:{0}",
    "deferred": "{p}:deferred:{0}",
    "scheduled": "{p}:scheduled:{0}",
    "canceled": "{p}:canceled:{0}",
    "worker": "{p}:worker:{0}",
    "workers_on": "{p}:workers:{0}",
    "worker_executions": "{p}:worker:{0}:executions",
    "pubsub": "{p}:pubsub:{0}",
    "scheduler": "{p}:scheduler:{0}",
    "scheduler_lock": "{p}:scheduler-lock:{0}",
    # rq 3.0's concurrency limits (rq/rate_limit.py): the known limit keys; per key its
    # config hash, the jobs holding a slot and the jobs waiting for one.
    "rl_keys": "{p}:rl-keys",
    "rate_limit": "{p}:rl:{0}",
    "rl_allowed": "{p}:rl:{0}:allowed",
    "rl_waiting": "{p}:rl:{0}:rate_limited",
    # ours: a periodic job's last enqueued tick (rq's own cron keeps no such record)
    "cron": "{p}:cron:{0}",
}

_ESCAPED = PREFIX.replace("{", "{{").replace("}", "}}")  # rq allows braces (hash tags)
_T = {name: template.replace("{p}", _ESCAPED) for name, template in TEMPLATES.items()}
QUEUES = _T["queues"].format()
WORKERS = _T["workers"].format()
SUSPENDED = _T["suspended"].format()


def queue(name: str) -> str:
    return _T["queue"].format(name)


def job(job_id: str) -> str:
    return _T["job"].format(job_id)


def dependents(job_id: str) -> str:
    return _T["dependents"].format(job_id)


def dependencies(job_id: str) -> str:
    return _T["dependencies"].format(job_id)


def results(job_id: str) -> str:
    return _T["results"].format(job_id)


def wip(name: str) -> str:
    return _T["wip"].format(name)


def finished(name: str) -> str:
    return _T["finished"].format(name)


def failed(name: str) -> str:
    return _T["failed"].format(name)


def deferred(name: str) -> str:
    return _T["deferred"].format(name)


def scheduled(name: str) -> str:
    return _T["scheduled"].format(name)


def canceled(name: str) -> str:
    return _T["canceled"].format(name)


def worker(name: str) -> str:
    return _T["worker"].format(name)


def workers_on(queue_name: str) -> str:
    return _T["workers_on"].format(queue_name)


def worker_executions(name: str) -> str:
    return _T["worker_executions"].format(name)


def pubsub(worker_name: str) -> str:
    return _T["pubsub"].format(worker_name)


def scheduler(name: str) -> str:
    return _T["scheduler"].format(name)


def rl_keys() -> str:
    return _T["rl_keys"].format()


def rate_limit(key: str) -> str:
    return _T["rate_limit"].format(key)


def rl_allowed(key: str) -> str:
    return _T["rl_allowed"].format(key)


def rl_waiting(key: str) -> str:
    return _T["rl_waiting"].format(key)


def cron(name: str) -> str:
    return _T["cron"].format(name)


def lua_preamble(names: Iterable[str] | None = None) -> str:
    """The Lua ``KEY`` table: each template (of ``names``, or all) as a constant or a
    function of its parts. A script runs its preamble at every call: it gets only the
    keys it uses."""
    lines = ["local KEY = {}"]
    wanted = set(TEMPLATES if names is None else names)
    for name, template in TEMPLATES.items():
        if name not in wanted:
            continue
        parts: list[str] = []  # Lua expressions, joined with ..
        params: set[str] = set()
        text = ""  # literal text not yet in parts: the prefix and the template's own
        for token in re.split(r"(\{\d\})", template.replace("{p}", PREFIX)):
            if re.fullmatch(r"\{\d\}", token):
                parts += [lua_text(text)] if text else []
                text = ""
                params.add(f"a{token[1]}")
                parts.append(f"a{token[1]}")
            else:
                text += token
        parts += [lua_text(text)] if text else []
        value = " .. ".join(parts)
        if params:
            value = f"function({', '.join(sorted(params))}) return {value} end"
        lines.append(f"KEY.{name} = {value}")
    return "\n".join(lines) + "\n"


def lua_text(text: str) -> str:
    """``text`` as a Lua string literal."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def executions(job_id: str) -> str:
    return _T["executions"].format(job_id)


def execution(job_id: str, execution_id: str) -> str:
    return _T["execution"].format(job_id, execution_id)
