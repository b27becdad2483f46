"""Job functions for the hooks, signals, metrics and tracing tests.

The in-process tests read ``EVENTS`` (what hooks and jobs noted, in order) directly.
"""

from __future__ import annotations

import sys
from typing import Any

import redis

EVENTS: list[tuple[str, ...]] = []


def _current_app() -> Any:
    for framework in ("quart", "flask"):
        module = sys.modules.get(framework)
        if module is not None and module.has_app_context():
            return module.current_app
    return None


def app_name() -> str:
    """The current app's name, or "no app context"."""
    app = _current_app()
    return str(app.name) if app is not None else "no app context"


async def noted(what: str) -> str:
    """Note ``what`` (and the app whose context the job runs in)."""
    EVENTS.append((what, app_name()))
    return what


async def read_g(name: str) -> Any:
    """What a hook left in the app context's ``g``: hooks and the job share one context."""
    from quart import g

    return g.get(name)


def wait_for_release(url: str, key: str, timeout: float = 20.0) -> str:
    """Hold a slot until the test pushes to ``key`` (BLPOP), so it can look at a busy worker."""
    client = redis.Redis.from_url(url)
    try:
        if client.blpop([key], timeout=timeout) is None:
            raise TimeoutError(f"nothing was pushed to {key!r} within {timeout:g}s")
    finally:
        client.close()
    return "released"


def current_span_id() -> str:
    """The id of the span current in the job (a plain function: it runs in a thread)."""
    from opentelemetry import trace

    return format(trace.get_current_span().get_span_context().span_id, "016x")
