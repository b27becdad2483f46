"""Prometheus metrics of an app's jobs, served by the app itself at /metrics."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from quart import Quart

from aiorq_flask import AsyncRQ
from aiorq_flask.metrics import instrument

rq = AsyncRQ()


@rq.job
async def resize(image_id: int) -> int:
    return image_id


def create_app(**config: object) -> Quart:
    app = Quart(__name__)
    app.config.update(config)
    rq.init_app(app)
    metrics = instrument(app)  # after init_app; a registry of its own: metrics.registry

    @app.get("/metrics")
    async def prometheus() -> tuple[bytes, int, dict[str, str]]:
        return generate_latest(metrics.registry), 200, {"Content-Type": CONTENT_TYPE_LATEST}

    return app
