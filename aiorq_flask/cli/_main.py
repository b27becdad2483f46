"""``python -m aiorq_flask <command>`` (the ``aiorq`` script), and the same commands
for ``flask rq`` / ``quart rq`` (``run_command`` with the app the framework loaded).

Every command ends with one line and an exit status, never a traceback: 2 for a command
line or config it cannot start with (as the worker), 1 when the work itself failed
(Redis unreachable, no such job, no fresh worker).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from redis.exceptions import RedisError

from ..errors import ConfigError, InvalidJobOperation, NoSuchJobError
from . import control, dashboard, health, info
from ._app import APP_HELP, FAILURE, fail, load_app


class Command(NamedTuple):
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[Any, argparse.Namespace], None]


COMMANDS: dict[str, Command] = {
    "info": Command(info.HELP, info.add_arguments, info.run),
    "health": Command(health.HELP, health.add_arguments, health.run),
    "suspend": Command(
        "workers finish their jobs and take no new ones",
        control.add_suspend_arguments,
        control.suspend,
    ),
    "resume": Command("undo suspend", control.add_resume_arguments, control.resume),
    "requeue": Command(
        "put failed jobs back on their queues", control.add_requeue_arguments, control.requeue
    ),
    "empty": Command(
        "delete the jobs waiting in queues", control.add_empty_arguments, control.empty
    ),
    "cancel": Command("cancel a job", control.add_cancel_arguments, control.cancel),
    "dashboard": Command(dashboard.HELP, dashboard.add_arguments, dashboard.run),
}
WORKER_HELP = "run a worker (options: python -m aiorq_flask.worker --help)"


def parser(prog: str, with_app: bool = True) -> argparse.ArgumentParser:
    """The command line: one subcommand per ``COMMANDS`` entry, plus ``worker``."""
    top = argparse.ArgumentParser(prog=prog, description="Operate aiorq_flask queues and workers.")
    commands = top.add_subparsers(dest="command", metavar="COMMAND", required=True)
    commands.add_parser("worker", help=WORKER_HELP, add_help=False)
    for name, command in COMMANDS.items():
        sub = commands.add_parser(name, help=command.help, description=command.help)
        if with_app:
            sub.add_argument("--app", help=APP_HELP)
        command.add_arguments(sub)
    return top


def run_command(name: str, app: Any, options: argparse.Namespace) -> None:
    """Run one command on ``app``; its errors end it with one line (see the module)."""
    try:
        COMMANDS[name].run(app, options)
    except ConfigError as error:
        fail(f"the app's config: {error}")
    except KeyError as error:
        fail(str(error.args[0]))
    except (NoSuchJobError, InvalidJobOperation) as error:
        fail(str(error), FAILURE)
    except ValueError as error:
        fail(str(error))
    except RedisError as error:
        fail(f"Redis: {error}", FAILURE)
    except KeyboardInterrupt:
        raise SystemExit(130) from None
    except BrokenPipeError:  # e.g. piped into head: the reader has all it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise SystemExit(FAILURE) from None


def main(argv: Sequence[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["worker"]:
        from ..worker.cli import main as worker_main

        worker_main(args[1:])
        return
    options = parser("aiorq").parse_args(args)
    needs_app = not getattr(options, "config", None)  # health --config reads a module only
    run_command(options.command, load_app(options.app) if needs_app else None, options)
