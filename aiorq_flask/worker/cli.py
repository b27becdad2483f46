"""The worker's command line: ``python -m aiorq_flask.worker`` (``aiorq worker``) and
``flask|quart rq worker``.

All parse the same options and end in ``run_worker``. The app is imported once per
worker process (``cli._app.load_app``); the state its ``AsyncRQ`` built supplies the
config, pools and queues.
"""

from __future__ import annotations

import argparse
import logging
from typing import Any

import anyio

from ..cli._app import APP_HELP, app_state, fail, load_app
from ..errors import ConfigError, UnsupportedServerError, WorkerStartupError
from ._worker import Worker


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
    parser.add_argument(
        "--no-scheduler",
        action="store_true",
        help="run no scheduler here: no periodic jobs, no moving due scheduled jobs and "
        "delayed retries onto their queues (leave that to other workers)",
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
    parser.add_argument(
        "--metrics-port",
        type=int,
        metavar="PORT",
        help="serve Prometheus metrics at http://0.0.0.0:PORT/metrics (the prometheus extra)",
    )


def serve_metrics(app: Any, port: int) -> None:
    """``--metrics-port``: serve the app's job metrics, or exit with one line saying why not."""
    try:
        from .. import metrics
    except ImportError as error:
        if error.name != "prometheus_client":
            raise
        fail("--metrics-port needs prometheus-client: pip install 'aiorq-flask[prometheus]'")
    try:
        metrics.serve(app, port)
    except OSError as error:
        fail(f"--metrics-port {port}: {error.strerror or error}")


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
            scheduler=not options.no_scheduler,
        )
    except (ConfigError, ValueError) as error:
        fail(str(error))
    if options.metrics_port is not None:
        serve_metrics(app, options.metrics_port)
    try:
        anyio.run(worker.work, options.burst)
    except (WorkerStartupError, UnsupportedServerError) as error:  # tracebacks at DEBUG
        fail(str(error))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m aiorq_flask.worker",
        description="Run an asyncio worker for every queue of one connection.",
    )
    parser.add_argument("--app", help=APP_HELP)
    add_worker_options(parser)
    options = parser.parse_args(argv)
    run_worker(load_app(options.app), options)
