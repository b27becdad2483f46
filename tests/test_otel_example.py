"""The OpenTelemetry example in ``docs/examples/otel_hooks.py``, imported as a user would
copy it, run by a real worker against a real Redis, its spans kept by the SDK's in-memory
exporter."""

from __future__ import annotations

import importlib.util
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from types import ModuleType

import pytest
import redis
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from quart import Quart

from aiorq_flask import AsyncRQ

from .apps.worker_support import burst, latest_result

EXAMPLE = Path(__file__).resolve().parents[1] / "docs" / "examples" / "otel_hooks.py"


def load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("otel_hooks", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
async def traced(
    make_quart_app: Callable[..., Quart],
) -> AsyncIterator[tuple[Quart, AsyncRQ, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    app = make_quart_app()
    rq = AsyncRQ(app)
    load_example().trace_jobs(rq, provider)
    yield app, rq, exporter
    await rq.state(app).pools.aclose()
    provider.shutdown()


async def test_each_job_gets_one_span_with_its_id_and_outcome(
    traced: tuple[Quart, AsyncRQ, InMemorySpanExporter], sync_redis: redis.Redis
) -> None:
    app, rq, exporter = traced
    queue = rq.state(app).queues["default"]
    done = await queue.enqueue("tests.tasks.add", 1, 2)
    failed = await queue.enqueue("tests.tasks.fail", "on purpose")
    inside = await queue.enqueue("tests.hook_jobs.current_span_id")

    await burst(rq.make_worker(app=app))

    spans = {
        span.attributes["messaging.message.id"]: span for span in exporter.get_finished_spans()
    }
    assert len(exporter.get_finished_spans()) == 3
    assert sorted(spans) == sorted([done.id, failed.id, inside.id])
    assert spans[done.id].attributes["rq.job.outcome"] == "finished"
    assert spans[done.id].status.status_code is StatusCode.UNSET
    assert spans[failed.id].attributes["rq.job.outcome"] == "failed"
    assert spans[failed.id].status.status_code is StatusCode.ERROR
    assert spans[done.id].name == "tests.tasks.add process"
    assert spans[done.id].kind is SpanKind.CONSUMER
    assert spans[done.id].attributes["messaging.destination.name"] == "default"
    # The span is current while the job runs, in its thread too: the job's own spans nest.
    result = latest_result(sync_redis, inside.id)
    assert result is not None
    assert result.return_value == format(spans[inside.id].context.span_id, "016x")
