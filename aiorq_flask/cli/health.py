"""``aiorq health``: a container probe. Exit 0 only if a worker serving the connection has
beaten recently; one line either way.

A worker beats every half ``--heartbeat`` (10 s by default, so every 5 s). The default
``--max-age`` of 8 s leaves a live worker 3 s of slack for a late beat, and reports a
killed one within 8 s: under one heartbeat interval. A worker run with another
``--heartbeat`` wants ``--max-age`` of about 0.8 times it.

It loads the app to read its config and sends two round trips. Importing an app (and its
web framework) can take most of a second; ``--config module`` reads the ``RQ_*`` settings
from a plain module instead (the one the app loads them from, as Flask's
``config.from_object`` does), so the probe imports nothing of the app beyond them.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import os
import sys
from typing import Any

from .._config import plan_from_config
from .._connections import ConnectionPools
from ._app import FAILURE, app_state, fail
from ._status import workers

HELP = "exit 0 only if a worker of the connection has a fresh heartbeat"
DEFAULT_MAX_AGE = 8.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--connection", default="default", help="the connection to check")
    parser.add_argument(
        "--config",
        metavar="MODULE",
        help="read the RQ_* settings from this module (or module:object) instead of "
        "loading the app: a faster probe",
    )
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
    if options.config:
        plan = plan_from_config(settings(options.config))
        pools = ConnectionPools(plan.connections, plan.client_class)
    else:
        state = app_state(app)
        plan, pools = state.plan, state.pools
    queues = plan.queues_on(options.connection)  # ConfigError naming the connections

    async def check() -> str | None:
        try:
            found = await workers(pools.client(options.connection), queues)
        finally:
            await pools.aclose()
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


def settings(spec: str) -> dict[str, Any]:
    """The upper-case names of module ``spec`` (or of ``module:object``), as Flask's
    ``config.from_object`` reads them."""
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    module_name, _, attribute = spec.partition(":")
    try:
        source: Any = importlib.import_module(module_name)
    except ImportError as error:
        fail(f"cannot import the config module {module_name!r}: {error}")
    if attribute:
        source = getattr(source, attribute, None)
        if source is None:
            fail(f"no {attribute!r} in the config module {module_name!r}")
    return {name: getattr(source, name) for name in dir(source) if name.isupper()}
