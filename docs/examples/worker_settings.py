"""The app's RQ_* settings in a module of their own: the app loads them with
``app.config.from_object("worker_settings")``, and the health probe reads them with
``aiorq health --config worker_settings``, importing neither the app nor its framework."""

from __future__ import annotations

import os

RQ_CONNECTION = os.environ.get("REDIS_URL", "redis://localhost:6379/0")
RQ_QUEUES = ["email", "default"]
