"""``aiorq dashboard``: rq-dashboard 0.9 on the app's connections, reading job data with
our serializer (needs ``aiorq-flask[dashboard]``).

rq-dashboard has a ``serializer`` setting, but some of its views ignore it: the workers
views call ``Worker.all(connection=...)``, so a busy worker's current job is unpickled
(``workers.json`` answers 500 ``DeserializationError`` and the page stays on "Loading..."
while any job runs). The job page and Delete (``Job.fetch``) and the Requeue buttons
(``requeue_job``) pass no serializer either, harmless today only because rq decodes job
data lazily and those views never read it. ``bind_serializer`` gives each name its views
use a default serializer of ours. To report upstream: pass ``serializer=config.serializer``
in those calls, and declare ``six``, which ``web.py`` imports.

It also connects through a client per connection built from the app's config (a URL or
a dict of client options), in place of rq-dashboard's own URL parsing; a Sentinel
connection is left out, with a warning.
"""

from __future__ import annotations

import argparse
import functools
import sys
from typing import Any

import redis

from .._config import ConnectionSpec, Plan
from ..serializer import MsgpackSerializer
from ._app import app_state, fail
from ._status import where

HELP = "run rq-dashboard on the app's connections (pip install 'aiorq-flask[dashboard]')"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bind", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=9181, help="port to listen on (9181)")
    parser.add_argument("--url-prefix", default="", help="serve under this path, e.g. /rq")


def run(app: Any, options: argparse.Namespace) -> None:
    dashboard = make_dashboard(app_state(app).plan, options.url_prefix)
    print(f"rq-dashboard on http://{options.bind}:{options.port}{options.url_prefix}/", flush=True)
    dashboard.run(host=options.bind, port=options.port)


def make_dashboard(plan: Plan, url_prefix: str = "") -> Any:
    """A Flask app serving rq-dashboard, one instance per connection of ``plan``."""
    try:
        from rq_dashboard import web
        from rq_dashboard.cli import make_flask_app
    except ImportError as error:
        fail(f"rq-dashboard is missing ({error}): pip install 'aiorq-flask[dashboard]'")
    clients = {}
    for name, spec in plan.connections.items():
        if spec.sentinels is not None:
            print(f"warning: connection {name!r} uses Sentinel: not shown", file=sys.stderr)
            continue
        clients[f"{name}: {where(spec)}"] = sync_client(spec)
    bind_serializer(web)
    web.from_url = lambda url, **_: (None, clients[url])
    dashboard = make_flask_app(config=None, username=None, password=None, url_prefix=url_prefix)
    dashboard.config["RQ_DASHBOARD_REDIS_URL"] = list(clients)
    web.setup_rq_connection(dashboard)
    return dashboard


def sync_client(spec: ConnectionSpec) -> redis.Redis:
    """A blocking client for the connection (rq-dashboard is a sync Flask app)."""
    if spec.url is not None:
        return redis.Redis.from_url(spec.url)
    options = {k: v for k, v in (spec.options or {}).items() if k != "max_connections"}
    return redis.Redis(**options)


def bind_serializer(web: Any) -> None:
    """Make the rq names rq-dashboard's views use default to ``MsgpackSerializer``."""
    web.config.serializer = MsgpackSerializer
    web.Queue = _defaulting(web.Queue)
    web.Worker = _defaulting(web.Worker)
    web.Job = _defaulting(web.Job)
    web.requeue_job = functools.partial(web.requeue_job, serializer=MsgpackSerializer)


@functools.cache
def _defaulting(cls: type[Any]) -> type[Any]:
    """A subclass of an rq class whose ``serializer`` defaults to ours: its classmethods
    (``Worker.all``, ``Job.fetch``, ``Queue.all``) build instances through it."""
    if getattr(cls, "_aiorq_serializer", False):
        return cls

    def __init__(self: Any, *args: Any, serializer: Any = None, **kwargs: Any) -> None:
        cls.__init__(self, *args, serializer=serializer or MsgpackSerializer, **kwargs)

    return type(cls.__name__, (cls,), {"__init__": __init__, "_aiorq_serializer": True})
