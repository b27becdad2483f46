"""``AsyncRQ``: wires a config plan to Flask and Quart apps.

Per-app state lives in a ``WeakKeyDictionary`` keyed by app, never on ``self``, so one
extension object serves many apps (factories, tests) and the accessors always act on
the app whose context is current.
"""

from __future__ import annotations

import sys
import weakref
from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta, tzinfo
from typing import Any, ParamSpec, TypeVar, overload

from ._config import Plan, plan_from_config
from ._connections import ConnectionPools
from ._state import EXTENSION_KEY, AppState
from .cron import CronJob, CronRegistry, cron_job
from .decorator import JobWrapper, make_job_decorator
from .queue import Queue
from .worker import Worker
from .worker.cli import register_cli

P = ParamSpec("P")
R = TypeVar("R")


def _is_eager(plan: Plan, app: Any) -> bool:
    if plan.is_async is None:
        return bool(app.testing)
    return not plan.is_async


def _current_app() -> Any:
    """The app of the current Quart or Flask app context, or None outside one."""
    for framework in ("quart", "flask"):
        module = sys.modules.get(framework)
        if module is not None and module.has_app_context():
            return module.current_app._get_current_object()
    return None


class AsyncRQ:
    """The Flask/Quart extension: ``AsyncRQ(app)`` or ``rq = AsyncRQ(); rq.init_app(app)``."""

    def __init__(self, app: Any = None) -> None:
        self._states: weakref.WeakKeyDictionary[Any, AppState] = weakref.WeakKeyDictionary()
        self._job_functions: set[str] = set()  # paths of the functions @rq.job decorated
        self._crons = CronRegistry()  # periodic jobs, for every app of this extension
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Any) -> None:
        """Read the ``RQ_*`` config once and register on ``app``.

        Raises ``ConfigError`` for bad config (before anything connects) and
        ``RuntimeError`` if ``app`` already has an aiorq_flask extension.
        """
        if EXTENSION_KEY in app.extensions:
            raise RuntimeError(f"app {app.name!r} already has an AsyncRQ extension registered")
        plan = plan_from_config(app.config)
        pools = ConnectionPools(plan.connections, plan.client_class)
        eager = _is_eager(plan, app)
        queues = {
            name: Queue(
                name,
                plan.queue_connections[name],
                pools,
                eager=eager,
                max_job_bytes=plan.max_job_bytes,
            )
            for name in plan.queues
        }
        self._states[app] = AppState(
            weakref.ref(app), plan, pools, queues, self._job_functions, self._crons
        )
        app.extensions[EXTENSION_KEY] = self
        if hasattr(app, "after_serving"):  # Quart: close the serving loop's pools with it
            app.after_serving(pools.aclose)
        register_cli(app)

    def state(self, app: Any = None) -> AppState:
        """The state of ``app``, or of the current app; ``RuntimeError`` when unregistered."""
        if app is None:
            app = _current_app()
            if app is None:
                raise RuntimeError(
                    "working outside of an app context: push one with 'app.app_context()' "
                    "or pass the app explicitly"
                )
        if not self._states:
            raise RuntimeError("AsyncRQ is not registered on any app: call init_app(app) first")
        try:
            return self._states[app]
        except KeyError:
            raise RuntimeError(
                f"AsyncRQ is not registered on the current app {app.name!r}: "
                "call init_app(app) for it"
            ) from None

    @property
    def queues(self) -> Mapping[str, Queue]:
        """Every configured queue of the current app, in priority order."""
        return self.state().queues

    @property
    def queue(self) -> Queue:
        """The ``"default"`` queue of the current app."""
        return self.state().queues["default"]

    def get_queue(self, name: str = "default") -> Queue:
        """A configured queue; ``KeyError`` listing the configured queues otherwise."""
        return self.state().get_queue(name)

    @overload
    def job(self, func: Callable[P, R], /) -> JobWrapper[P, R]: ...

    @overload
    def job(
        self, func: None = None, /, *, queue: str = "default", **defaults: Any
    ) -> Callable[[Callable[P, R]], JobWrapper[P, R]]: ...

    def job(
        self, func: Callable[P, R] | None = None, /, *, queue: str = "default", **defaults: Any
    ) -> JobWrapper[P, R] | Callable[[Callable[P, R]], JobWrapper[P, R]]:
        """Give a function an awaitable ``.enqueue(...)`` on ``queue`` (``@rq.job`` or
        ``@rq.job(queue="email", job_timeout=60)``); other options are enqueue defaults."""
        decorate: Callable[[Callable[P, R]], JobWrapper[P, R]] = make_job_decorator(
            self, queue, defaults, self._job_functions
        )
        return decorate if func is None else decorate(func)

    def register_cron(
        self,
        func: Callable[..., Any] | str,
        *,
        cron: str | None = None,
        interval: float | timedelta | None = None,
        queue: str = "default",
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        name: str | None = None,
        timezone: str | tzinfo = "UTC",
        **enqueue_options: Any,
    ) -> CronJob:
        """Run ``func(*args, **kwargs)`` on ``queue`` at each tick of ``cron`` (5 fields,
        read in ``timezone``) or every ``interval`` seconds (see ``aiorq_flask.cron``).

        ``name`` defaults to the function's dotted path. Raises ``InvalidJobError`` for a
        bad schedule or option, or a name already registered.
        """
        job = cron_job(
            func,
            cron=cron,
            interval=interval,
            queue=queue,
            args=args,
            kwargs=kwargs,
            name=name,
            timezone=timezone,
            **enqueue_options,
        )
        self._crons.add(job)
        self._job_functions.add(job.func)  # app code: a worker's allowlist lets it run
        return job

    def make_worker(self, connection: str = "default", app: Any = None, **options: Any) -> Worker:
        """A worker serving every queue of ``connection`` (see ``aiorq_flask.worker.Worker``)."""
        return Worker(self.state(app), connection=connection, **options)
