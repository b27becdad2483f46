"""``aiorq info``: every connection of the app, its queues' jobs by state and its workers.

``--json`` prints the same for scripts; ``--interval N`` prints it again every N seconds,
in place on a terminal (one JSON document a line with ``--json``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from typing import Any

import anyio

from .. import keys
from .._state import AppState
from ..queue import Queue
from ._app import app_state
from ._status import (
    STATES,
    ConnectionStatus,
    QueueStatus,
    WorkerStatus,
    extra_queue_names,
    queue_counts,
    where,
    workers,
)

HELP = "queues by job state and workers, per connection"
_HOME_AND_CLEAR = "\x1b[H\x1b[2J"
SHOWN_JOBS = 4  # running job ids shown per worker


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--connection", help="only this connection (default: all)")
    parser.add_argument("--json", action="store_true", help="print JSON for scripts")
    parser.add_argument(
        "--interval", type=float, metavar="N", help="print again every N seconds until Ctrl-C"
    )


def run(app: Any, options: argparse.Namespace) -> None:
    state = app_state(app)
    names = list(state.plan.connections)
    if options.connection is not None:
        state.plan.queues_on(options.connection)  # ConfigError naming the connections
        names = [options.connection]
    if options.interval is not None and options.interval <= 0:
        raise ValueError(f"--interval must be above 0, not {options.interval:g}")
    anyio.run(_report, state, names, options)


async def _report(state: AppState, names: list[str], options: argparse.Namespace) -> None:
    redraw = options.interval is not None and sys.stdout.isatty() and not options.json
    try:
        while True:
            found = [await collect(state, name) for name in names]
            text = to_json(found) if options.json else render(found)
            print((_HOME_AND_CLEAR if redraw else "") + text, flush=True)
            if options.interval is None:
                return
            await anyio.sleep(options.interval)
    finally:
        await state.pools.aclose()


async def collect(state: AppState, connection: str) -> ConnectionStatus:
    """One connection's status: configured queues first, then any other in ``rq:queues``."""
    plan = state.plan
    configured = plan.queues_on(connection)
    client = state.pools.client(connection)
    queues = [QueueStatus(name, await queue_counts(state.get_queue(name))) for name in configured]
    for name in await extra_queue_names(client, plan.queues):
        queue = Queue(name, connection, state.pools)
        queues.append(QueueStatus(name, await queue_counts(queue), configured=False))
    return ConnectionStatus(
        name=connection,
        where=where(plan.connections[connection]),
        suspended=bool(await client.exists(keys.SUSPENDED)),
        queues=queues,
        workers=await workers(client, [q.name for q in queues]),
    )


def to_json(found: list[ConnectionStatus]) -> str:
    return json.dumps({"connections": [dataclasses.asdict(c) for c in found]})


def render(found: list[ConnectionStatus]) -> str:
    """The report as text: a table of queues and a line per worker, per connection."""
    lines: list[str] = []
    for status in found:
        flag = (
            "  SUSPENDED (rq:suspended set: workers take no new jobs)" if status.suspended else ""
        )
        lines.append(f"connection {status.name!r} ({status.where}){flag}")
        lines += _queue_table(status.queues)
        lines.append(f"  {len(status.workers)} worker(s)")
        lines += [f"    {line}" for worker in status.workers for line in _worker_lines(worker)]
        lines.append("")
    return "\n".join(lines).rstrip("\n")


def _queue_table(queues: list[QueueStatus]) -> list[str]:
    width = max([5, *(len(q.name) + (0 if q.configured else 2) for q in queues)])
    header = "  " + "queue".ljust(width) + "".join(s.rjust(11) for s in STATES)
    rows = []
    for queue in queues:
        name = queue.name if queue.configured else f"({queue.name})"
        rows.append(
            "  " + name.ljust(width) + "".join(str(queue.counts[s]).rjust(11) for s in STATES)
        )
    return [header, *rows]


def _worker_lines(worker: WorkerStatus) -> list[str]:
    age = "never" if worker.heartbeat_age is None else f"{worker.heartbeat_age:.1f}s ago"
    lines = [
        f"worker {worker.name}: {worker.state} on {','.join(worker.queues)}, heartbeat {age}, "
        f"{worker.successful} succeeded, {worker.failed} failed ({worker.hostname}, "
        f"pid {worker.pid})"
    ]
    if worker.current_jobs:
        shown = ", ".join(worker.current_jobs[:SHOWN_JOBS])
        more = len(worker.current_jobs) - SHOWN_JOBS
        lines.append(
            f"  running {len(worker.current_jobs)}: {shown}" + (f" +{more}" if more > 0 else "")
        )
    return lines
