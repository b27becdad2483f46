"""A small app built by a factory, as the testing fixtures expect."""

from __future__ import annotations

from typing import Any

from quart import Quart

from aiorq_flask import AsyncRQ

rq = AsyncRQ()


@rq.job
async def greet(name: str) -> str:
    return f"hello {name}"


def create_app(**config: Any) -> Quart:
    app = Quart(__name__)
    app.config.update(config)
    rq.init_app(app)

    @app.post("/greet/<name>")
    async def greet_view(name: str) -> dict[str, str]:
        job = await greet.enqueue(name)
        return {"job": job.id}

    return app
