"""The Lua scripts in ``scripts/``, called by SHA with a reload after a Redis restart.

A script runs atomically, so each multi-key step (claim, finish, sweep, schedule) is one
round trip and can never be seen half done. ``EVALSHA`` sends only the 40-byte hash; a
``NOSCRIPT`` reply (Redis restarted, script cache flushed) means nothing ran, so loading
the script and calling again is safe.

Each script is loaded behind a preamble rendered from Python: the ``KEY`` table from
``keys.py``, the ``STATUS`` table from ``JobStatus``, the ``OUTCOME`` table from
``Outcome``, and ``REPLY``, which builds the script's reply from named fields in
the order of the named tuple that decodes it. So no script spells a key, a status or the
order of its reply. Scripts that record outcomes also get ``scripts/lib/outcomes.lua``;
those that may let a rate-limited job through, ``scripts/lib/rate_limit.lua``.
"""

from __future__ import annotations

import enum
import hashlib
import re
from collections.abc import Sequence
from importlib import resources
from typing import Any, NamedTuple

import msgpack  # type: ignore[import-untyped]
from redis.exceptions import NoScriptError

from . import keys
from ._multiplexer import Multiplexer
from .job import JobStatus
from .prepare import CALL_FIELDS, EMPTY_FIELDS


def pack_argument(value: Any) -> bytes:
    """One msgpack argument for a script to ``cmsgpack.unpack``.

    Redis's cmsgpack knows no bin type, so bytes travel as msgpack strings: a Lua string
    is bytes either way, and ids that are not UTF-8 reach the script as they are.
    """
    packed: bytes = msgpack.packb(value, use_bin_type=False)
    return packed


class Outcome(str, enum.Enum):
    """How an execution ended, as the worker and eager mode tell ``finish.lua``."""

    FINISHED = JobStatus.FINISHED.value
    FAILED = JobStatus.FAILED.value
    STOPPED = JobStatus.STOPPED.value
    INVALID = "invalid"  # the worker cannot read the job: failed, never retried
    REQUEUE = "requeue"  # worker shutdown: back to the front of its queue
    RELEASE = "release"  # a second claim of a job the worker runs already: unbooked
    RETRY = "retry"  # the job returned a Retry (rq 3.0): runs again, or fails past its max


class Claimed(NamedTuple):
    """One id ``claim.lua`` popped."""

    id: bytes
    execution_id: bytes | None  # None: dropped, unbooked (``why`` says why)
    origin: bytes  # the queue it was booked under, or why it was dropped
    hash: list[bytes] | None  # the job hash as it was, field, value, ...
    left_out: int  # 1: its big ``data`` was left out of ``hash``
    size: int  # the length of its ``data`` field (HSTRLEN), read or not


class Beat(NamedTuple):
    """What one ``heartbeat.lua`` found."""

    registered_again: int  # the worker hash had lost its birth: written again in full
    taken_back: int  # jobs a sweep requeued while the worker was away, taken back
    run_elsewhere: int  # running here, and started by another worker too
    orphans_requeued: int  # claimed by a claim whose reply was lost, put back


class Swept(NamedTuple):
    """What one ``sweep.lua`` did."""

    requeued: int
    failed: int
    abandoned: list[Any]  # per rescued job: its id, its queue, 1 if requeued (0: failed)


def _read(path: str) -> str:
    return resources.files(__package__).joinpath(f"scripts/{path}.lua").read_text()


def preamble(reply: type[tuple[Any, ...]] | None = None, body: str | None = None) -> str:
    """The Lua a script is loaded behind (see the module's docstring). Given the script's
    ``body``, only the keys and tables it uses: a script runs its preamble at every call
    (an enqueue per job)."""

    def used(name: str) -> bool:
        return body is None or re.search(rf"\b{name}\b", body) is not None

    key_names = None if body is None else set(re.findall(r"\bKEY\.(\w+)", body))
    lines = [keys.lua_preamble(key_names)]
    for table, members in (("STATUS", JobStatus), ("OUTCOME", Outcome)):
        if used(table):
            items = ", ".join(f"{m.name} = {m.value!r}" for m in members)
            lines.append(f"local {table} = {{{items}}}\n")
    if reply is not None:
        fields = ", ".join(f"reply.{name}" for name in reply._fields)  # type: ignore[attr-defined]
        lines.append(f"local function REPLY(reply) return {{{fields}}} end\n")
    return "".join(lines)


def new_job_fields() -> str:
    """``enqueue.lua``'s ``NEW_JOB(status, at)``: the hash fields of a new job in one table
    constructor (``at``: where the values of ``CALL_FIELDS`` begin in ARGV), ``AT``, each
    call field's offset from there, and ``CALL_COUNT``. Rendered from ``prepare.py``'s names."""
    pairs = ["'status', status"]
    pairs += [f"{keys.lua_text(n)}, ARGV[at + {i}]" for i, n in enumerate(CALL_FIELDS)]
    pairs += [f"{keys.lua_text(n)}, ''" for n in EMPTY_FIELDS]
    offsets = ", ".join(f"{n} = {i}" for i, n in enumerate(CALL_FIELDS))
    return (
        f"local AT, CALL_COUNT = {{{offsets}}}, {len(CALL_FIELDS)}\n"
        f"local function NEW_JOB(status, at) return {{{', '.join(pairs)}}} end\n"
    )


class Script:
    """One Lua file, called with ``await script(multiplexer, keys, args)``; a transaction
    holding calls of it sends ``SCRIPT LOAD`` of ``source`` first, inside its MULTI, so no
    call in it can meet ``NOSCRIPT``."""

    def __init__(
        self,
        name: str,
        reply: type[tuple[Any, ...]] | None = None,
        libraries: tuple[str, ...] = (),
        extra: str = "",
    ) -> None:
        self.name = name
        body = "\n".join([*(_read(f"lib/{lib}") for lib in libraries), _read(name)])
        parts = [preamble(reply, body), extra, body]
        self.source = "\n".join(parts)
        self.sha = hashlib.sha1(self.source.encode()).hexdigest()

    def command(self, keys: Sequence[Any], args: Sequence[Any]) -> tuple[Any, ...]:
        """This script's call, as a command for a batch (``Multiplexer.transaction``)."""
        return ("EVALSHA", self.sha, len(keys), *keys, *args)

    async def __call__(self, redis: Multiplexer, keys: list[str], args: list[Any]) -> Any:
        try:
            return await redis.evalsha(self.sha, len(keys), *keys, *args)
        except NoScriptError:
            await redis.script_load(self.source)
            return await redis.evalsha(self.sha, len(keys), *keys, *args)


ENQUEUE = Script("enqueue", extra=new_job_fields())
CRON = Script("enqueue", libraries=("cron",), extra=new_job_fields())  # a tick's enqueue
CLAIM = Script("claim", reply=Claimed)
FINISH = Script("finish", libraries=("rate_limit", "outcomes", "repeat"))
HEARTBEAT = Script("heartbeat", reply=Beat, libraries=("rate_limit", "outcomes"))
SWEEP = Script("sweep", reply=Swept, libraries=("rate_limit", "rate_limit_clean", "outcomes"))
SCHEDULE = Script("schedule", libraries=("rate_limit",))
RATE_LIMIT = Script("rate_limit", libraries=("rate_limit",))
RELEASE_LOCKS = Script("release_locks")
EMPTY = Script("empty")
