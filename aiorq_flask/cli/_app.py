"""Finding the app a command acts on, and ending a command with one line, no traceback.

Shared by every command and by the worker's command line: ``--app module:app`` (or
``$QUART_APP`` / ``$FLASK_APP``) is imported once, and the state its ``AsyncRQ`` built
(``_state.state_of``) supplies the config, pools and queues.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any, NoReturn

from .._state import AppState, state_of
from ..errors import ConfigError

APP_ENV_VARS = ("QUART_APP", "FLASK_APP")
USAGE_ERROR = 2  # exit status for a command line or config a command cannot start with
FAILURE = 1  # exit status for a command that started and could not do its work
_APP_NAMES = ("app", "application", "create_app", "make_app")
APP_HELP = "module:app or module:factory (default: $QUART_APP, $FLASK_APP)"


def fail(message: str, status: int = USAGE_ERROR) -> NoReturn:
    """End the command with one line on stderr and ``status`` (default 2), no traceback."""
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(status)


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
    except Exception as error:  # the app's own bug: named in one line, as every error here
        fail(f"importing the app module {module_name!r} failed: {type(error).__name__}: {error}")
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
