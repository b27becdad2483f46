"""``aiorq health``: a container probe. Exit 0 only if a worker serving the connection has
beaten recently; one line either way.

A worker beats every half ``--heartbeat`` (10 s by default, so every 5 s). The default
``--max-age`` of 8 s leaves a live worker 3 s of slack for a late beat, and reports a
killed one within 8 s: under one heartbeat interval. A worker run with another
``--heartbeat`` wants ``--max-age`` of about 0.8 times it.

It loads the app to read its config (the one import it needs) and sends two round trips.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from ._app import FAILURE, app_state, fail
from ._status import workers

HELP = "exit 0 only if a worker of the connection has a fresh heartbeat"
DEFAULT_MAX_AGE = 8.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--connection", default="default", help="the connection to check")
    parser.add_argument(
        "--max-age",
        type=float,
        default=DEFAULT_MAX_AGE,
        metavar="S",
        help=f"seconds a heartbeat stays fresh (default {DEFAULT_MAX_AGE:g}: for workers "
        "with the default --heartbeat 10, which beat every 5 s)",
    )


def run(app: Any, options: argparse.Namespace) -> None:
    if options.max_age <= 0:
        raise ValueError(f"--max-age must be above 0, not {options.max_age:g}")
    state = app_state(app)
    queues = state.plan.queues_on(options.connection)  # ConfigError naming the connections

    async def check() -> str | None:
        try:
            found = await workers(state.pools.client(options.connection), queues)
        finally:
            await state.pools.aclose()
        ages = [(w.heartbeat_age, w.name) for w in found if w.heartbeat_age is not None]
        if ages and ages[0][0] <= options.max_age:
            return f"ok: worker {ages[0][1]} beat {ages[0][0]:.1f}s ago"
        last = f"; the newest beat {ages[0][0]:.1f}s ago" if ages else ""
        fail(
            f"no worker serving connection {options.connection!r} has beaten in the last "
            f"{options.max_age:g}s{last}",
            FAILURE,
        )

    print(asyncio.run(check()))  # not anyio.run: its backend module alone costs a probe ~40 ms
