"""The worker's command line: ``python -m aiorq_flask.worker`` and ``flask|quart rq worker``.

Both parse the same options and end in ``run_worker``. The app is imported once per
worker process; the state its ``AsyncRQ`` built (``_state.state_of``) supplies the config,
pools and queues.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from typing import Any, NoReturn

import anyio

from .._state import AppState, state_of
from ..errors import ConfigError, UnsupportedServerError
from ._worker import Worker

APP_ENV_VARS = ("QUART_APP", "FLASK_APP")
USAGE_ERROR = 2  # exit status for a command line or config the worker cannot start with
_APP_NAMES = ("app", "application", "create_app", "make_app")


def fail(message: str) -> NoReturn:
    """End the command with one line on stderr and exit status 2, no traceback."""
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(USAGE_ERROR)


def load_app(spec: str | None) -> Any:
    """Import ``module:attribute`` (an app, or a factory called with no arguments).

    Without a spec, ``QUART_APP`` then ``FLASK_APP`` are used. Exits (status 2) with a
    line naming what could not be found, or the config error the app raised.
    """
    spec = spec or next((os.environ[v] for v in APP_ENV_VARS if os.environ.get(v)), None)
    if not spec:
        fail("no app given: pass --app module:app (or set QUART_APP / FLASK_APP)")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    module_name, _, attribute = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        fail(f"cannot import the app module {module_name!r}: {error}")
    except ConfigError as error:
        fail(f"the app's config: {error}")
    names = [attribute] if attribute else list(_APP_NAMES)
    for name in names:
        found = getattr(module, name.removesuffix("()"), None)
        if found is None:
            continue
        try:
            app = found if hasattr(found, "extensions") else found()
        except ConfigError as error:
            fail(f"the app's config: {error}")
        if hasattr(app, "extensions"):
            return app
    fail(f"no Flask or Quart app found in {spec!r} (looked for {', '.join(names)})")


def app_state(app: Any) -> AppState:
    """What the app's ``AsyncRQ`` built for it; exits (status 2) if it has none."""
    try:
        return state_of(app)
    except RuntimeError as error:
        fail(str(error))


def add_worker_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--connection", default="default", help="the resolved connection to serve")
    parser.add_argument("--queues", help="comma-separated subset of its queues, in priority order")
    parser.add_argument("--concurrency", type=int, default=10, help="jobs running at once")
    parser.add_argument("--burst", action="store_true", help="exit once the queues are empty")
    parser.add_argument("--max-jobs", type=int, help="exit after this many jobs")
    parser.add_argument(
        "--prefetch", type=int, help="jobs claimed ahead of free slots (default: concurrency/10)"
    )
    parser.add_argument("--name", help="worker name (default: a random hex id)")
    parser.add_argument("--heartbeat", type=float, default=10.0, help="seconds between heartbeats")
    parser.add_argument(
        "--grace-period", type=float, default=30.0, help="seconds running jobs get at shutdown"
    )
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR")
    parser.add_argument(
        "--allow-module",
        action="append",
        default=[],
        metavar="PREFIX",
        help="run only job functions within this module prefix (repeatable; added to "
        "RQ_WORKER_ALLOWED_MODULES): 'myapp.tasks' allows 'myapp.tasks.send' and "
        "'myapp.tasks.sub.f', not 'myapp.tasks_evil.f'",
    )


def run_worker(app: Any, options: argparse.Namespace) -> None:
    """Build the worker from parsed options and run it on a new event loop until it stops."""
    logging.basicConfig(
        level=options.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    queues = options.queues.split(",") if options.queues else None
    try:
        worker = Worker(
            app_state(app),
            connection=options.connection,
            queues=queues,
            concurrency=options.concurrency,
            name=options.name,
            max_jobs=options.max_jobs,
            prefetch=options.prefetch,
            heartbeat=options.heartbeat,
            grace_period=options.grace_period,
            allow_modules=options.allow_module,
        )
    except (ConfigError, ValueError) as error:
        fail(str(error))
    try:
        anyio.run(worker.work, options.burst)
    except UnsupportedServerError as error:
        fail(str(error))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m aiorq_flask.worker",
        description="Run an asyncio worker for every queue of one connection.",
    )
    parser.add_argument(
        "--app", help="module:app or module:factory (default: $QUART_APP, $FLASK_APP)"
    )
    add_worker_options(parser)
    options = parser.parse_args(argv)
    run_worker(load_app(options.app), options)


def register_cli(app: Any) -> None:
    """Add ``rq worker`` to the app's CLI (``flask rq worker``, ``quart rq worker``).

    A plain click command, never wrapped in Quart's ``asyncio.run``: the worker runs its
    own event loop.
    """
    try:
        import click
    except ImportError:  # neither Flask nor Quart CLI installed
        return

    @click.group("rq", help="aiorq_flask commands.")
    def rq_group() -> None:
        pass

    @rq_group.command(
        "worker",
        context_settings={"ignore_unknown_options": True, "help_option_names": []},
        add_help_option=False,
    )
    @click.argument("args", nargs=-1, type=click.UNPROCESSED)
    def worker_command(args: tuple[str, ...]) -> None:
        """Run an asyncio worker (options: see python -m aiorq_flask.worker --help)."""
        parser = argparse.ArgumentParser(prog=f"{type(app).__name__.lower()} rq worker")
        add_worker_options(parser)
        run_worker(app, parser.parse_args(list(args)))

    app.cli.add_command(rq_group)
