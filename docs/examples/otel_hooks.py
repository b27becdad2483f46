"""One OpenTelemetry span per job, through aiorq_flask's lifecycle hooks.

``before_job`` opens a span and makes it current; ``after_job`` records the outcome and
ends it. Both run in the job's own task, so the span is current while the job runs, and
spans the job opens (a database call, an HTTP request) become its children, in a thread
too for a plain function. Use it where the app builds its extension, so the worker that
imports the app runs it::

    from opentelemetry.sdk.trace import TracerProvider

    rq = AsyncRQ(app)
    trace_jobs(rq)  # or trace_jobs(rq, TracerProvider(...)); default: the global provider

Needs ``opentelemetry-api`` (and an SDK with an exporter to see the spans).
``tests/test_otel_example.py`` runs this file against a real Redis.
"""

from __future__ import annotations

from contextvars import ContextVar, Token

from opentelemetry import context, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from aiorq_flask import AsyncRQ, Job
from aiorq_flask.outcomes import Ended, Outcome

# The job's span and the token to restore the context it replaced; one per job task.
_current: ContextVar[tuple[trace.Span, Token[context.Context]]] = ContextVar("job_span")


def trace_jobs(rq: AsyncRQ, tracer_provider: trace.TracerProvider | None = None) -> None:
    """Give every job a worker of ``rq``'s apps runs a span of its own."""
    tracer = trace.get_tracer("aiorq_flask", tracer_provider=tracer_provider)

    @rq.before_job
    def start_span(job: Job) -> None:
        span = tracer.start_span(
            f"{job.func_name} process",
            kind=SpanKind.CONSUMER,
            attributes={
                "messaging.system": "rq",
                "messaging.operation.type": "process",
                "messaging.destination.name": job.origin,
                "messaging.message.id": job.id,
                "rq.job.func_name": job.func_name,
            },
        )
        _current.set((span, context.attach(trace.set_span_in_context(span))))

    @rq.after_job
    def end_span(job: Job, outcome: Ended) -> None:
        span, token = _current.get()
        span.set_attribute("rq.job.outcome", outcome.status.value)
        if outcome.status is not Outcome.FINISHED:
            span.set_status(Status(StatusCode.ERROR, f"job {outcome.status.value}"))
        context.detach(token)
        span.end()
