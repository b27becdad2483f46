"""An app with lifecycle hooks, for worker subprocesses (``--app tests.apps.hooks_app:app``).

``WORKER_APP_REDIS_URL`` is its ``RQ_CONNECTION``. Its startup hook fails when
``HOOKS_APP_FAIL_STARTUP`` is set, as one that cannot reach its database would.
"""

from __future__ import annotations

import os

from quart import Quart

from aiorq_flask import AsyncRQ
from aiorq_flask.worker import Worker

app = Quart(__name__)
app.config.update(
    RQ_CONNECTION=os.environ["WORKER_APP_REDIS_URL"],
    RQ_ASYNC=True,
    RQ_WORKER_ALLOWED_MODULES=["tests"],
)
rq = AsyncRQ(app)


@rq.worker_startup
async def open_pool(worker: Worker) -> None:
    if os.environ.get("HOOKS_APP_FAIL_STARTUP"):
        raise ConnectionRefusedError("the database is down")
