"""What ``AsyncRQ.init_app`` builds for one app, and how the rest of the package finds it.

The extension owns the per-app states; the worker and its command line only need to
reach an app's state, so they import this module, never the extension.
"""

from __future__ import annotations

import weakref
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from ._hooks import Hooks

if TYPE_CHECKING:
    from ._config import Plan
    from ._connections import ConnectionPools
    from .cron import CronJob
    from .queue import Queue

EXTENSION_KEY = "aiorq"  # the extension's name in ``app.extensions``


@dataclass
class AppState:
    """What ``init_app`` built for one app: the plan, its pools, its queues, and the paths
    of the functions its extension decorated with ``@rq.job`` or registered as periodic
    jobs (a live set, which a worker's allowlist always lets run), and those periodic jobs.

    It holds its app weakly: the state is the value of a ``WeakKeyDictionary`` keyed by
    that app, and a strong reference would keep the app alive forever.
    """

    app_ref: weakref.ref[Any]
    plan: Plan
    pools: ConnectionPools
    queues: dict[str, Queue]
    job_functions: Collection[str] = field(default_factory=frozenset)
    hooks: Hooks = field(default_factory=Hooks)  # what its workers run at start, stop, each job
    crons: Iterable[CronJob] = ()  # the extension's periodic jobs (live, as job_functions)

    @property
    def app(self) -> Any:
        return self.app_ref()

    def get_queue(self, name: str) -> Queue:
        try:
            return self.queues[name]
        except KeyError:
            raise KeyError(
                f"no queue named {name!r}; configured queues: {', '.join(self.queues)}"
            ) from None


class StateOwner(Protocol):
    """What ``app.extensions[EXTENSION_KEY]`` is (``AsyncRQ``)."""

    def state(self, app: Any = None) -> AppState: ...


def state_of(app: Any) -> AppState:
    """The state of ``app``; ``RuntimeError`` if no ``AsyncRQ`` was registered on it."""
    owner: StateOwner | None = app.extensions.get(EXTENSION_KEY)
    if owner is None:
        raise RuntimeError(f"app {app.name!r} has no AsyncRQ extension: call AsyncRQ(app)")
    return owner.state(app)
