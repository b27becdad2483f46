"""``flask rq <command>`` / ``quart rq <command>``: the app's CLI group, registered by
``AsyncRQ.init_app``. Each command takes the options of ``python -m aiorq_flask
<command>`` but ``--app``: the framework has loaded the app already.

Plain click commands, never wrapped in Quart's ``asyncio.run``: each command runs its
own event loop.
"""

from __future__ import annotations

import argparse
from typing import Any

from ..worker.cli import add_worker_options, run_worker
from ._main import COMMANDS, run_command

_PASS_THROUGH: dict[str, Any] = {
    "context_settings": {"ignore_unknown_options": True, "help_option_names": []},
    "add_help_option": False,
}


def register_cli(app: Any) -> None:
    """Add the ``rq`` group to the app's CLI (skipped when click is not installed)."""
    try:
        import click
    except ImportError:  # neither Flask nor Quart CLI installed
        return
    prog = f"{type(app).__name__.lower()} rq"

    @click.group("rq", help="aiorq_flask commands.")
    def rq_group() -> None:
        pass

    @rq_group.command("worker", help="Run an asyncio worker (see --help).", **_PASS_THROUGH)
    @click.argument("args", nargs=-1, type=click.UNPROCESSED)
    def worker_command(args: tuple[str, ...]) -> None:
        parser = argparse.ArgumentParser(prog=f"{prog} worker")
        add_worker_options(parser)
        run_worker(app, parser.parse_args(list(args)))

    for name, command in COMMANDS.items():
        rq_group.add_command(_command(app, prog, name, command.help))
    app.cli.add_command(rq_group)


def _command(app: Any, prog: str, name: str, help: str) -> Any:
    import click

    @click.command(name, help=f"{help[0].upper()}{help[1:]} (see --help).", **_PASS_THROUGH)
    @click.argument("args", nargs=-1, type=click.UNPROCESSED)
    def command(args: tuple[str, ...]) -> None:
        parser = argparse.ArgumentParser(prog=f"{prog} {name}", description=help)
        COMMANDS[name].add_arguments(parser)
        run_command(name, app, parser.parse_args(list(args)))

    return command
