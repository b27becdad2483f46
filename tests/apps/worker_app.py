"""The Quart app that worker subprocesses load (``--app tests.apps.worker_app:app``).

Its config comes from the environment, so each test points it at the test server:

- ``WORKER_APP_REDIS_URL``: ``RQ_CONNECTION`` (the ``default`` connection).
- ``WORKER_APP_QUEUES``: comma-separated ``RQ_QUEUES`` (default: ``default``).
- ``WORKER_APP_EMAIL_URL``: when set, queues ``email`` and ``email-priority`` use this
  second connection (named ``email``), as in the Flask-RQ example.
"""

from __future__ import annotations

import os

from quart import Quart

from aiorq_flask import AsyncRQ

app = Quart(__name__)
app.config.update(
    RQ_CONNECTION=os.environ["WORKER_APP_REDIS_URL"],
    RQ_QUEUES=os.environ.get("WORKER_APP_QUEUES", "default").split(","),
    RQ_ASYNC=True,
)
if os.environ.get("WORKER_APP_EMAIL_URL"):
    app.config["RQ_QUEUE_CONNECTIONS"] = {
        "email": os.environ["WORKER_APP_EMAIL_URL"],
        "email-priority": "email",
    }
rq = AsyncRQ(app)
