"""Which job functions a worker may import and call: ``RQ_WORKER_ALLOWED_MODULES``.

Anyone who can write to the Redis a worker reads can name any dotted path in a job, and
a worker that imports whatever it is told runs ``os.system`` as readily as the app's own
jobs. With an allowlist, a job (or a callback) whose function lies outside it is failed
unread and unimported.

The rule: a path lies within a prefix when it *is* the prefix or continues it after a
dot. ``myapp.tasks`` allows ``myapp.tasks.send`` and ``myapp.tasks.sub.f``, never
``myapp.tasks_evil.f``. The app's ``@rq.job`` functions are allowed by their exact path.
A function's path is checked before anything is imported, and what it resolves to is
checked again after: ``myapp.tasks.os.system`` (``os`` imported by ``myapp.tasks``) lies
within ``myapp.tasks`` by name but is ``os.system``, defined outside, and is refused.
Without an allowlist (``None``) every importable function may run, as in rq.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any

from .errors import ConfigError, InvalidJobError

SETTING = "RQ_WORKER_ALLOWED_MODULES"
OPTION = "--allow-module"


class NotAllowedError(InvalidJobError):
    """A job names a function (or callback) outside the worker's allowlist: the worker
    fails the job without importing or calling it, and never retries it."""


def within(path: str, prefix: str) -> bool:
    """Whether the dotted ``path`` is ``prefix`` or lies below it (module-boundary aware)."""
    return path == prefix or path.startswith(prefix + ".")


def module_prefixes(value: Any, source: str) -> tuple[str, ...]:
    """Validate a list of module prefixes (``source`` names the key or option at fault).

    Raises ``ConfigError`` for anything but a list or tuple of dotted Python names.
    """
    if not isinstance(value, (list, tuple)):
        raise ConfigError(
            f"{source} = {value!r} is not a list; use a list of module prefixes such as "
            "['myapp.tasks'] (each allows the functions in that module and below it)"
        )
    for prefix in value:
        if not (isinstance(prefix, str) and all(part.isidentifier() for part in prefix.split("."))):
            raise ConfigError(
                f"{source} = {value!r} holds {prefix!r}, which is not a dotted module "
                "path; use names such as 'myapp.tasks' (no wildcards, no trailing dot)"
            )
    return tuple(value)


def _defined_at(func: Any) -> str | None:
    """Where ``func`` is defined, as a dotted path (``module.qualname``), if it says."""
    module = getattr(func, "__module__", None)
    name = getattr(func, "__qualname__", None) or getattr(func, "__name__", None)
    if not isinstance(module, str) or not isinstance(name, str):
        return None
    return f"{module}.{name}"


@dataclass(frozen=True)
class Allowlist:
    """The functions a worker may run: those within ``prefixes``, and ``decorated``
    (the app's ``@rq.job`` paths, a live set: decorated later still counts). ``prefixes``
    None: no allowlist, everything importable may run."""

    prefixes: tuple[str, ...] | None
    decorated: Collection[str] = field(default_factory=frozenset)

    @property
    def rule(self) -> str:
        """The rule in words, for the messages of refused jobs."""
        shown = ", ".join(repr(prefix) for prefix in self.prefixes or ())
        return (
            f"the worker runs only functions within {SETTING} / {OPTION} "
            f"({shown or 'none listed'}) and the app's @rq.job functions"
        )

    def allows(self, path: str) -> bool:
        if self.prefixes is None or path in self.decorated:
            return True
        return any(within(path, prefix) for prefix in self.prefixes)

    def check(self, path: str, what: str = "job function") -> None:
        """Raise ``NotAllowedError`` (naming ``what``, the path and the rule) if ``path``
        lies outside; call it before importing anything for ``path``."""
        if not self.allows(path):
            raise NotAllowedError(f"{what} {path!r} is not allowed: {self.rule}; not imported")

    def check_defined(self, path: str, func: Any, what: str = "job function") -> None:
        """Raise ``NotAllowedError`` unless ``func`` (what ``path`` resolved to) is itself
        defined within the allowlist, so an allowed module's imports cannot be reached
        through it."""
        if self.prefixes is None:
            return
        defined = _defined_at(func)
        if defined is None or not self.allows(defined):
            raise NotAllowedError(
                f"{what} {path!r} resolves to {defined or repr(func)}, which is not allowed: "
                f"{self.rule}; not run"
            )

    def resolve(
        self, path: str, importer: Callable[[str], Callable[..., Any]], what: str = "job function"
    ) -> Callable[..., Any]:
        """``importer(path)``, between the two checks."""
        self.check(path, what)
        func = importer(path)
        self.check_defined(path, func, what)
        return func
