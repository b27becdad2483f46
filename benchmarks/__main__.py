"""``python -m benchmarks``: run the suite, print the table and the goals, write the files.

Flags: ``--quick`` (one repetition), ``--reps N``, ``--only LIB,...`` (libraries to run,
from aiorq_flask, rq, arq, saq, dramatiq, streaq, taskiq), ``--scenarios NAME,...`` (from
enqueue, floor, bulk, concurrent, drain, sleep, latency, loaded, cpu, fleet), ``--scale F``
(every job count times F, for a small trial run). Only a full run at scale 1 rewrites
``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone

from . import chart, docs_page, goals, machine, report, venvs
from .redis_server import redis_server, round_trip_ms
from .runner import BENCH_DIR, LOG_DIR, REPO_ROOT
from .scenarios import GROUPS, LIBRARIES, PEERS, SCENARIOS
from .suite import run_suite

RESULTS_DIR = BENCH_DIR / "results"
DEFAULT_REPS = 3


def _csv(choices: tuple[str, ...]):  # type: ignore[no-untyped-def]
    def parse(text: str) -> list[str]:
        items = [item.strip() for item in text.split(",") if item.strip()]
        unknown = [item for item in items if item not in choices]
        if unknown:
            raise argparse.ArgumentTypeError(
                f"unknown {', '.join(unknown)}; choose from {', '.join(choices)}"
            )
        return items

    return parse


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="one repetition (a smoke run)")
    parser.add_argument("--reps", type=int, default=DEFAULT_REPS, help="repetitions (default 3)")
    parser.add_argument("--only", type=_csv(LIBRARIES), default=list(LIBRARIES),
                        help="libraries to run: " + ",".join(LIBRARIES))  # fmt: skip
    parser.add_argument("--scenarios", type=_csv(GROUPS), default=list(GROUPS),
                        help="scenarios to run: " + ",".join(GROUPS))  # fmt: skip
    parser.add_argument("--scale", type=float, default=1.0,
                        help="job counts times this, for a trial run (default 1)")  # fmt: skip
    args = parser.parse_args(argv)
    if not 0 < args.scale <= 1:
        parser.error(f"--scale must be in (0, 1], not {args.scale}")
    return args


def _aiorq_ready() -> str | None:
    """None if aiorq_flask and its worker import, else the error to print."""
    code = "import aiorq_flask.worker; from aiorq_flask import AsyncRQ"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True
    )
    return None if out.returncode == 0 else (out.stderr.strip().splitlines() or ["?"])[-1]


def _prepare_venvs(peers: list[str]) -> None:
    """Build missing peer venvs, in parallel since pip mostly waits on the network."""
    with ThreadPoolExecutor(max_workers=max(1, len(peers))) as pool:
        list(pool.map(venvs.python_for, peers))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    reps = 1 if args.quick else args.reps
    libraries = [lib for lib in LIBRARIES if lib in args.only]
    if "aiorq_flask" in libraries and (error := _aiorq_ready()):
        print(f"aiorq_flask does not import, leaving it out: {error}", file=sys.stderr)
        libraries.remove("aiorq_flask")
    scenarios = [s for s in SCENARIOS if s.group in args.scenarios]
    peers = [lib for lib in libraries if lib in PEERS]
    _prepare_venvs(peers)
    shutil.rmtree(LOG_DIR, ignore_errors=True)
    load_before = machine.load_average()
    if load_before > (os.cpu_count() or 1) / 2:
        print(f"warning: load average {load_before:.1f} before the run; numbers will be noisy")

    with redis_server() as url:
        rtt_ms = round_trip_ms(url)
        print(f"redis-server at {url}, PING round trip {rtt_ms:.2f} ms; {reps} repetition(s)")
        measurements = run_suite(scenarios, libraries, reps, url, args.scale)

    table = report.build_table(measurements)
    extra = report.summary_lines(measurements)
    goal_list = goals.check(measurements)
    print()
    print(report.render_text(table, extra))
    print()
    print("Performance goals")
    print(report.render_goals(goal_list))

    context: dict[str, object] = {
        "generated_at": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": "python -m benchmarks " + " ".join(sys.argv[1:] if argv is None else argv),
        "libraries": libraries,
        "reps": reps,
        "scale": args.scale,
        "machine": {**machine.describe(), "redis PING round trip (median)": f"{rtt_ms:.2f} ms"},
        "versions": machine.versions(peers),
        "load_average": {"before": load_before, "after": machine.load_average()},
        "total_seconds": time.monotonic() - started,
    }
    json_path, png_path = RESULTS_DIR / "latest.json", RESULTS_DIR / "latest.png"
    report.write_json(json_path, measurements, goal_list, context)
    chart.draw(measurements, png_path, f"aiorq_flask benchmarks, medians of {reps} rep(s)")
    print(f"\nwrote {json_path.relative_to(REPO_ROOT)} and {png_path.relative_to(REPO_ROOT)}")
    full = (
        reps >= DEFAULT_REPS
        and args.scale == 1.0
        and len(libraries) == len(LIBRARIES)
        and len(scenarios) == len(SCENARIOS)
    )
    if full:
        page = docs_page.write(
            report.render_markdown(table, extra),
            report.render_goals_markdown(goal_list),
            context,
            png_path,
        )
        print(f"wrote {page.relative_to(REPO_ROOT)} and docs/benchmarks.png")
    for key, value in context["versions"].items():  # type: ignore[attr-defined]
        print(f"{key}: {value}")
    print(f"total: {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
