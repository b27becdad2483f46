"""``worker_app`` with one periodic job, for the cron tests' worker processes
(``--app tests.apps.cron_app:app``): every ``CRON_APP_INTERVAL`` seconds (default 1) it
runs ``tests.worker_jobs.record(<redis url>, $CRON_APP_KEY, "tick")``.
"""

from __future__ import annotations

import os

from .worker_app import app, rq

NAME = "tests.tick"

rq.register_cron(
    "tests.worker_jobs.record",
    interval=int(os.environ.get("CRON_APP_INTERVAL", "1")),
    args=(os.environ["WORKER_APP_REDIS_URL"], os.environ.get("CRON_APP_KEY", "ticks"), "tick"),
    name=NAME,
)

__all__ = ["app"]
