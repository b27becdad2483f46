"""``python -m aiorq_flask dashboard``: rq-dashboard 0.9 on a live system.

One worker process of ours runs a long job while finished, failed and scheduled jobs
sit in their registries; the dashboard process serves both of the app's connections.
The test reads every JSON endpoint the pages poll, then renders the queues, job and
workers pages in headless Chromium and reads their text (``--dump-dom``; its virtual
time budget lets the pages' requests finish; polled until the text is there).

Set ``AIORQ_DASHBOARD_SCREENSHOTS=docs/_static`` to save the three pages as PNGs there
(the docs' screenshots come from this test).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
import redis
from quart import Quart

from aiorq_flask import AsyncRQ

from .apps.worker_support import (
    APP,
    ROOT,
    Process,
    enqueue_jobs,
    other_db_url,
    our_worker,
    status,
    unique_name,
    wait_until,
    worker_env,
)

CHROMIUM = shutil.which("chromium")
REGISTRIES = ["queued", "started", "finished", "failed", "deferred", "scheduled", "canceled"]


@dataclass
class LiveSystem:
    base: str  # the dashboard's URL, ending in /
    worker: str
    running: str
    finished: str
    failed: str
    scheduled: str


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return int(response.status), response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()
    except OSError:
        return 0, b""


def get_json(url: str) -> Any:
    code, body = get(url)
    assert code == 200, f"{url}: {code} {body[:2000]!r}"
    return json.loads(body)


def schedule(redis_url: str, seconds: int, func: str, *args: Any) -> str:
    """Enqueue ``func(*args)`` to run in ``seconds`` through aiorq_flask; its job id."""

    async def enqueue() -> str:
        app = Quart(__name__)
        app.config.update(RQ_CONNECTION=redis_url, RQ_ASYNC=True)
        state = AsyncRQ(app).state(app)
        try:
            job = await state.get_queue("default").enqueue_in(seconds, func, *args)
        finally:
            await state.pools.aclose()
        return job.id

    return asyncio.run(enqueue())


@pytest.fixture
def live(
    tmp_path: Path, redis_url: str, sync_redis: redis.Redis, email_redis: redis.Redis
) -> Iterator[LiveSystem]:
    email_url = other_db_url(redis_url)
    (finished,) = enqueue_jobs(redis_url, "tests.tasks.add", (2, 3))
    (failed,) = enqueue_jobs(redis_url, "tests.tasks.fail", ("kaput",))
    (running,) = enqueue_jobs(redis_url, "tests.tasks.async_sleep", (600,))
    scheduled = schedule(redis_url, 3600, "tests.tasks.add", 7, 8)
    enqueue_jobs(email_url, "tests.tasks.add", (1, 1), queue="email")
    name = unique_name("dash")
    port = free_port()
    argv = [sys.executable, "-m", "aiorq_flask", "dashboard", "--app", APP, "--port", str(port)]
    env = worker_env(redis_url, "default,email", email_url)
    with (
        our_worker(
            tmp_path, redis_url, "--name", name, queues="default,email", email_url=email_url
        ),
        Process(argv, env, tmp_path / "dashboard.log") as dashboard,
    ):
        wait_until(lambda: status(sync_redis, running) == "started", 30, "the long job to start")
        wait_until(lambda: status(sync_redis, failed) == "failed", 30, "the failing job to fail")
        base = f"http://127.0.0.1:{port}/"
        wait_until(lambda: get(base)[0] == 200, 30, dashboard.output)
        yield LiveSystem(base, name, running, finished, failed, scheduled)


# -- the JSON the pages poll ------------------------------------------------------------------


def test_queues_json_counts_every_registry(live: LiveSystem) -> None:
    (default,) = get_json(f"{live.base}0/data/queues.json")["queues"]

    assert default["name"] == "default"
    assert default["count"] == 0
    assert default["started_job_registry_count"] == 1
    assert default["finished_job_registry_count"] == 1
    assert default["failed_job_registry_count"] == 1
    assert default["scheduled_job_registry_count"] == 1
    (email,) = get_json(f"{live.base}1/data/queues.json")["queues"]
    assert (email["name"], email["count"]) == ("email", 1)  # no worker serves that connection


def test_every_jobs_list_reads_with_our_serializer(live: LiveSystem) -> None:
    listed = {
        registry: [
            job["id"]
            for job in get_json(f"{live.base}0/data/jobs/default/{registry}/8/asc/1.json")["jobs"]
        ]
        for registry in REGISTRIES
    }

    assert listed == {
        "queued": [],
        "started": [live.running],
        "finished": [live.finished],
        "failed": [live.failed],
        "deferred": [],
        "scheduled": [live.scheduled],
        "canceled": [],
    }


def test_job_json_shows_args_result_and_traceback(live: LiveSystem) -> None:
    finished = get_json(f"{live.base}0/data/job/{live.finished}.json")
    failed = get_json(f"{live.base}0/data/job/{live.failed}.json")

    assert finished["status"] == "finished"
    assert finished["description"] == "tests.tasks.add(2, 3)"
    assert finished["result"] == 5
    assert failed["status"] == "failed"
    assert "ValueError: kaput" in failed["exc_info"]


def test_workers_json_shows_the_busy_worker_and_its_job(live: LiveSystem) -> None:
    (worker,) = get_json(f"{live.base}0/data/workers.json")["workers"]

    assert worker["name"] == live.worker
    assert worker["state"] == "busy"
    assert worker["queues"] == ["default"]
    assert worker["current_job"]["job_id"] == live.running
    assert worker["current_job"]["call_string"] == "tests.tasks.async_sleep(600)"
    assert worker["successful_job_count"] == 1
    assert worker["failed_job_count"] == 1


# -- the pages in a browser ---------------------------------------------------------------------


class _Text(HTMLParser):
    """The text a page shows: everything outside <script>, <style> and <template>."""

    HIDDEN = frozenset({"script", "style", "template"})

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self._hidden = 0

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        self._hidden += tag in self.HIDDEN

    def handle_endtag(self, tag: str) -> None:
        self._hidden -= tag in self.HIDDEN

    def handle_data(self, data: str) -> None:
        if not self._hidden and data.strip():
            self.parts.append(data.replace("\xa0", " ").strip())


def chromium(tmp_path: Path, url: str, *action: str) -> str:
    """Run headless Chromium on ``url`` with ``action`` (``--dump-dom``, ``--screenshot``)."""
    assert CHROMIUM is not None
    done = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            f"--user-data-dir={tmp_path / 'chromium'}",
            "--window-size=1280,800",
            "--virtual-time-budget=4000",
            *action,
            url,
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def rendered_text(tmp_path: Path, url: str, *wanted: str) -> str:
    """The page's text once it shows every ``wanted`` string (polled: its data loads by
    requests after the page does)."""

    def text() -> str | None:
        parser = _Text()
        parser.feed(chromium(tmp_path, url, "--dump-dom"))
        shown = "\n".join(parser.parts)
        return shown if all(w in shown for w in wanted) else None

    found: str = wait_until(text, 60, f"{wanted} on {url}")
    return found


def screenshot(tmp_path: Path, url: str, name: str) -> None:
    """Save the page as ``name``.png, in $AIORQ_DASHBOARD_SCREENSHOTS when set."""
    path = tmp_path / f"{name}.png"
    chromium(tmp_path, url, f"--screenshot={path}")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    target = os.environ.get("AIORQ_DASHBOARD_SCREENSHOTS")
    if target:
        shutil.copy(path, ROOT / target / path.name)


def browser(test: Any) -> Any:
    """A test that runs Chromium (a few seconds a page on a busy machine)."""
    needs = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (.ci/run does)")
    return pytest.mark.timeout(240)(needs(test))


@browser
def test_queues_page_lists_both_connections_and_the_counts(
    live: LiveSystem, tmp_path: Path
) -> None:
    url = f"{live.base}0/view/queues"
    text = rendered_text(tmp_path, url, "Canceled jobs\ndefault\n")

    assert "[0] default: redis://" in text and "[1] email: redis://" in text
    # queued, deferred, scheduled, started, finished, failed, canceled
    row = text[text.index("Canceled jobs\ndefault\n") :].split("\n")[2:9]
    assert row == ["0", "0", "1", "1", "1", "1", "0"], text
    screenshot(tmp_path, url, "dashboard-queues")


@browser
def test_job_page_shows_a_finished_jobs_call_and_result(live: LiveSystem, tmp_path: Path) -> None:
    url = f"{live.base}0/view/job/{live.finished}"
    text = rendered_text(tmp_path, url, "tests.tasks.add(2, 3)")

    assert "finished" in text
    assert "Result" in text and "\n5\n" in text
    screenshot(tmp_path, url, "dashboard-job")


@browser
def test_workers_page_shows_the_busy_worker_while_its_job_runs(
    live: LiveSystem, tmp_path: Path
) -> None:
    url = f"{live.base}0/view/workers"
    text = rendered_text(tmp_path, url, live.worker)

    assert "tests.tasks.async_sleep(600)" in text
    assert "Loading" not in text
    screenshot(tmp_path, url, "dashboard-workers")
