"""The Quart app the aiorq_flask side and its worker share.

The Redis URL comes from ``AIORQ_BENCH_REDIS_URL``, so the suite can point it at the
throwaway redis-server it started.
"""

import os

from quart import Quart

from aiorq_flask import AsyncRQ

REDIS_URL_ENV = "AIORQ_BENCH_REDIS_URL"

app = Quart(__name__)
app.config.update(
    RQ_CONNECTION=os.environ.get(REDIS_URL_ENV, "redis://127.0.0.1:6379/0"),
    RQ_QUEUES=["default", "high"],  # "high": the latency-under-load row's first queue
)
rq = AsyncRQ(app)
