"""Run one side script for one (library, scenario) and read back its result line.

Each side runs in its own process group under a hard timeout: on timeout the whole
group (side and worker) is killed, so a hung peer costs at most its timeout. Side and
worker logs go to ``benchmarks/results/logs/`` rather than to pipes.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from . import redis_server, venvs
from .scenarios import SIDE_SCRIPTS, Scenario, job_count

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
SIDES_DIR = BENCH_DIR / "sides"
LOG_DIR = BENCH_DIR / "results" / "logs"
RESULT_PREFIX = "RESULT "
# Setup (filling the queue, starting interpreters) on top of the scenario's own bound.
SETUP_ALLOWANCE_S = 30


@dataclass(frozen=True)
class Outcome:
    """A side's result dict, or the reason it has none."""

    result: dict[str, float] | None
    error: str | None = None


def interpreter(library: str) -> str:
    """aiorq_flask and the floor run on the suite's interpreter; peers on their venv's."""
    if library in ("aiorq_flask", "floor"):
        return sys.executable
    return str(venvs.python_for(library))


def command(library: str, scenario: Scenario, redis_url: str, scale: float = 1.0) -> list[str]:
    return [
        interpreter(library),
        str(SIDES_DIR / SIDE_SCRIPTS[library]),
        scenario.side_scenario,
        "--redis-url", redis_url,
        "--n", str(job_count(library, scenario, scale)),
        "--concurrency", scenario.concurrency,
        "--task", scenario.task,
        "--timeout", str(scenario.timeout_s),
        *scenario.extra_args,
    ]  # fmt: skip


def _environment(library: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["BENCH_LOG_DIR"] = str(LOG_DIR)
    if library in ("aiorq_flask", "floor"):
        # The repo root makes ``benchmarks.tasks`` and the working-tree aiorq_flask
        # importable; peers never get it, so they cannot see aiorq_flask at all.
        env["PYTHONPATH"] = str(REPO_ROOT)
    return env


def run_side(library: str, scenario: Scenario, redis_url: str, scale: float = 1.0) -> Outcome:
    """Flush Redis, run the side, and return its parsed result (never raises on failure)."""
    redis_server.flush(redis_url)
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    log_path = LOG_DIR / f"{library}.log"
    with open(log_path, "ab") as log:
        log.write(f"\n=== {scenario.key} ===\n".encode())
        log.flush()
        process = subprocess.Popen(
            command(library, scenario, redis_url, scale),
            cwd=REPO_ROOT,
            env=_environment(library),
            stdout=subprocess.PIPE,
            stderr=log,
            start_new_session=True,
        )
        try:
            stdout, _ = process.communicate(timeout=scenario.timeout_s + SETUP_ALLOWANCE_S)
        except subprocess.TimeoutExpired:
            _kill_group(process)
            return Outcome(None, f"timed out after {scenario.timeout_s + SETUP_ALLOWANCE_S:.0f} s")
        except BaseException:
            _kill_group(process)
            raise
        finally:
            # The side kills its worker itself; this catches anything it left behind.
            _kill_group(process)
    for line in reversed(stdout.decode(errors="replace").splitlines()):
        if line.startswith(RESULT_PREFIX):
            return Outcome(json.loads(line[len(RESULT_PREFIX) :]))
    return Outcome(None, f"exit {process.returncode}: {_last_line(log_path)} (see {log_path})")


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def _last_line(path: Path) -> str:
    lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    return lines[-1].strip() if lines else "no output"
