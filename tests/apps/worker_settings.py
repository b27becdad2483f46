"""The ``RQ_*`` settings of ``worker_app``, in a module of their own as an app's config
module would be (``app.config.from_object``): ``aiorq health --config`` reads them without
importing the app. Values come from the environment (see ``worker_app``)."""

from __future__ import annotations

import json
import os

_connection = os.environ["WORKER_APP_REDIS_URL"]
RQ_CONNECTION = json.loads(_connection) if _connection.startswith("{") else _connection
RQ_QUEUES = os.environ.get("WORKER_APP_QUEUES", "default").split(",")
RQ_ASYNC = True
