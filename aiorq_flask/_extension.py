"""``AsyncRQ``: wires a config plan to Flask and Quart apps.

Per-app state lives in a ``WeakKeyDictionary`` keyed by app, never on ``self``, so one
extension object serves many apps (factories, tests) and the accessors always act on
the app whose context is current.
"""

from __future__ import annotations

import sys
import weakref
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import timedelta, tzinfo
from typing import Any, ParamSpec, TypeVar, overload

from ._config import Plan, plan_from_config
from ._connections import ConnectionPools
from ._hooks import Hooks
from ._state import EXTENSION_KEY, AppState
from .cli._click import register_cli
from .cron import CronJob, CronRegistry, cron_job
from .decorator import JobWrapper, make_job_decorator
from .job import Job
from .outcomes import Ended
from .queue import Queue
from .worker import Worker

P = ParamSpec("P")
R = TypeVar("R")
# Each hook decorator returns the function it was given, unchanged, with its own type.
WorkerHookT = TypeVar("WorkerHookT", bound=Callable[[Worker], Awaitable[None] | None])
JobHookT = TypeVar("JobHookT", bound=Callable[[Job], Awaitable[None] | None])
AfterJobHookT = TypeVar("AfterJobHookT", bound=Callable[[Job, Ended], Awaitable[None] | None])


def _eagerness(plan: Plan, app: Any) -> bool | Callable[[], bool]:
    """``RQ_ASYNC`` as a queue's ``eager``: fixed when set; unset, the app's ``testing``
    at each enqueue (test fixtures usually set it after ``init_app``)."""
    if plan.is_async is not None:
        return not plan.is_async
    app_ref = weakref.ref(app)

    def testing() -> bool:
        current = app_ref()
        return bool(current is not None and current.testing)

    return testing


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
        self._hooks = Hooks()  # decorated hooks, for each app registered from now on
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
        eager = _eagerness(plan, app)
        queues = {
            name: Queue(
                name,
                plan.queue_connections[name],
                pools,
                eager=eager,
                max_job_bytes=plan.max_job_bytes,
                app=app,
            )
            for name in plan.queues
        }
        self._states[app] = AppState(
            weakref.ref(app),
            plan,
            pools,
            queues,
            self._job_functions,
            hooks=self._hooks.copy(),
            crons=self._crons,
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

    # -- lifecycle hooks ---------------------------------------------------------------

    def _add_hook(self, kind: str, hook: Any) -> None:
        """Register ``hook`` for every app this extension serves, now and from now on."""
        getattr(self._hooks, kind).append(hook)
        for state in list(self._states.values()):
            getattr(state.hooks, kind).append(hook)

    def worker_startup(self, func: WorkerHookT) -> WorkerHookT:
        """Run ``func(worker)`` once per worker process, before it takes any job: open a
        database pool, warm a cache. Inside the app context; may be ``async def``.

        Startup hooks run in registration order. If one raises, the worker stops before
        it registers in Redis: ``worker.work()`` raises ``WorkerStartupError`` and the
        worker command prints one line naming the hook and exits non-zero.
        """
        self._add_hook("worker_startup", func)
        return func

    def worker_shutdown(self, func: WorkerHookT) -> WorkerHookT:
        """Run ``func(worker)`` once as the worker stops, after its last job ended and it
        left Redis's worker registry (only if every startup hook succeeded). Inside the
        app context; may be ``async def``. Shutdown hooks run in reverse registration
        order; one that raises is logged and the others still run.
        """
        self._add_hook("worker_shutdown", func)
        return func

    def before_job(self, func: JobHookT) -> JobHookT:
        """Run ``func(job)`` before each job a worker runs, in the job's task and app
        context, outside its timeout; may be ``async def``. One that raises is logged
        with its traceback and the job still runs. In registration order.

        A plain function runs on the worker's event loop: keep it quick.
        """
        self._add_hook("before_job", func)
        return func

    def after_job(self, func: AfterJobHookT) -> AfterJobHookT:
        """Run ``func(job, outcome)`` after each job a worker ran (``outcome``:
        ``aiorq_flask.outcomes.Ended``; ``outcome.status`` is ``finished``, ``failed``,
        ``stopped``, ``invalid`` or ``requeue`` for a job put back at shutdown), before the
        outcome is written to Redis. In the job's task and app context, in reverse
        registration order (so hooks nest around the job); may be ``async def``. One that
        raises is logged with its traceback and does not change the outcome.
        """
        self._add_hook("after_job", func)
        return func
