"""Prometheus metrics: a real worker process started with ``--metrics-port`` runs jobs, and
``/metrics`` is scraped over HTTP and parsed with prometheus-client's own parser."""

from __future__ import annotations

import socket
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

import aiorq_flask
from aiorq_flask.worker import cli

from .apps.worker_support import (
    Process,
    all_have_status,
    enqueue_calls,
    enqueue_jobs,
    our_worker,
    wait_until,
    worker_env,
)

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def scrape(port: int) -> Samples:
    """Every sample at ``/metrics``, by name and sorted labels."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
        text = reply.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


def scraped_when(port: int, worker: Process, check: str, wanted: float, **labels: str) -> Samples:
    """Scrape until the sample ``check`` (with ``labels``) has the value ``wanted``."""
    found: list[Samples] = [{}]

    def reached() -> bool:
        found[0] = scrape(port)
        return value(found[0], check, **labels) == wanted

    wait_until(
        reached,
        20,
        lambda: (
            f"{check}{labels} == {wanted} (last: {value(found[0], check, **labels)});"
            f" worker output:\n{worker.output()}"
        ),
    )
    return found[0]


@pytest.fixture
def metrics_worker(redis_url: str, tmp_path: Path) -> Iterator[tuple[Process, int]]:
    port = free_port()
    with our_worker(
        tmp_path, redis_url, "--metrics-port", str(port), "--concurrency", "4"
    ) as worker:
        worker.wait_for_output("serving", 30)
        yield worker, port


def test_the_worker_counts_jobs_by_queue_and_outcome_and_times_them(
    metrics_worker: tuple[Process, int], redis_url: str, sync_redis: redis.Redis
) -> None:
    worker, port = metrics_worker
    done = enqueue_jobs(redis_url, "tests.tasks.add", (1, 2), count=3)
    failed = enqueue_jobs(redis_url, "tests.tasks.fail", ("on purpose",), count=2)
    wait_until(lambda: all_have_status(sync_redis, done, "finished"), 20)
    wait_until(lambda: all_have_status(sync_redis, failed, "failed"), 20)

    samples = scraped_when(port, worker, "aiorq_jobs_total", 2, queue="default", outcome="failed")

    assert value(samples, "aiorq_jobs_total", queue="default", outcome="finished") == 3
    assert value(samples, "aiorq_jobs_total", queue="default", outcome="retried") == 0
    assert value(samples, "aiorq_job_duration_seconds_count", queue="default") == 5
    assert value(samples, "aiorq_job_duration_seconds_sum", queue="default") > 0
    assert value(samples, "aiorq_job_duration_seconds_bucket", queue="default", le="+Inf") == 5
    assert value(samples, "aiorq_queue_depth", queue="default") == 0


def test_queue_depth_is_read_from_redis_at_each_scrape(
    metrics_worker: tuple[Process, int], redis_url: str, sync_redis: redis.Redis
) -> None:
    _, port = metrics_worker
    sync_redis.set("rq:suspended", 1)  # rq suspend: the worker claims nothing
    jobs = enqueue_jobs(redis_url, "tests.tasks.add", (1, 2), count=3)

    assert value(scrape(port), "aiorq_queue_depth", queue="default") == 3
    sync_redis.delete("rq:suspended")
    wait_until(lambda: all_have_status(sync_redis, jobs, "finished"), 20)
    assert value(scrape(port), "aiorq_queue_depth", queue="default") == 0


def test_busy_slots_count_the_jobs_running_now(
    metrics_worker: tuple[Process, int], redis_url: str, sync_redis: redis.Redis
) -> None:
    worker, port = metrics_worker
    key = "metrics:release"
    jobs = enqueue_calls(redis_url, "tests.hook_jobs.wait_for_release", [(redis_url, key)] * 2)

    samples = scraped_when(port, worker, "aiorq_worker_busy_slots", 2)
    assert value(samples, "aiorq_worker_slots") == 4
    sync_redis.rpush(key, "go", "go")
    wait_until(lambda: all_have_status(sync_redis, jobs, "finished"), 20)
    scraped_when(port, worker, "aiorq_worker_busy_slots", 0)


# -- the option's errors ------------------------------------------------------------------------


def run_main(monkeypatch: pytest.MonkeyPatch, redis_url: str, *options: str) -> None:
    for name, text in worker_env(redis_url).items():
        monkeypatch.setenv(name, text)
    cli.main(["--app", "tests.apps.worker_app:app", *options])


def test_metrics_port_without_the_extra_fails_with_one_line_naming_it(
    monkeypatch: pytest.MonkeyPatch, redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "prometheus_client", None)  # not installed
    monkeypatch.delitem(sys.modules, "aiorq_flask.metrics", raising=False)
    monkeypatch.delattr(aiorq_flask, "metrics", raising=False)

    with pytest.raises(SystemExit) as exited:
        run_main(monkeypatch, redis_url, "--metrics-port", "9")

    assert exited.value.code == 2
    assert capsys.readouterr().err == (
        "error: --metrics-port needs prometheus-client: pip install 'aiorq-flask[prometheus]'\n"
    )


def test_a_metrics_port_in_use_fails_with_one_line(
    monkeypatch: pytest.MonkeyPatch, redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(SystemExit) as exited:
            run_main(monkeypatch, redis_url, "--metrics-port", str(port))

    assert exited.value.code == 2
    assert capsys.readouterr().err == f"error: --metrics-port {port}: Address already in use\n"
