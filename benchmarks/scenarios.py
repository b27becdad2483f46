"""The catalogue: which scenarios exist, which library runs which, and with how many jobs.

One source of truth for every number and caveat the report prints. A scenario is one
side-script run per library; a metric is one table row read from that run's result.

Job counts: aiorq_flask and the floor always run the full counts the issue asks for.
Where a peer would need far longer than the 10-minute budget allows at that count on a
2-core machine, it runs a smaller, fixed count (``REDUCED_N``) and its rate is reported
as measured (jobs/s does not depend on the count); the 50 ms-sleep wall time is scaled
linearly to 2,000 jobs. Every reduction is printed under the table.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

LIBRARIES = ("aiorq_flask", "rq", "arq", "saq", "dramatiq")
PEERS = LIBRARIES[1:]
ASYNC_PEERS = ("arq", "saq")  # native asyncio workers; dramatiq and rq are thread/process based
FLOOR = "floor"

SIDE_SCRIPTS = {
    "aiorq_flask": "aiorq_side.py",
    "rq": "rq_side.py",
    "arq": "arq_side.py",
    "saq": "saq_side.py",
    "dramatiq": "dramatiq_side.py",
    FLOOR: "floor_side.py",
}

SLEEP_JOBS = 2_000
HIGH_CONCURRENCY = "100"

Result = dict[str, float]


@dataclass(frozen=True)
class Metric:
    """One table row: how to read a value out of a side's result, and which way is better."""

    key: str
    label: str
    unit: str
    higher_is_better: bool
    read: Callable[[Result], float]


@dataclass(frozen=True)
class Scenario:
    """One side-script invocation per library (``side_scenario`` is the script's verb)."""

    key: str
    group: str  # the name ``--scenarios`` takes
    side_scenario: str
    n: int
    timeout_s: float
    metrics: tuple[Metric, ...]
    concurrency: str = "default"
    task: str = "noop"
    libraries: tuple[str, ...] = LIBRARIES


def _rate(result: Result) -> float:
    return result["n"] / result["seconds"]


def _sleep_wall(result: Result) -> float:
    return result["seconds"] * SLEEP_JOBS / result["n"]


def _rss_mib(result: Result) -> float:
    return result["rss_kib"] / 1024


def _p50(result: Result) -> float:
    return result["p50_ms"]


def _p99(result: Result) -> float:
    return result["p99_ms"]


SCENARIOS = (
    Scenario(
        key="enqueue",
        group="enqueue",
        side_scenario="enqueue",
        n=10_000,
        timeout_s=60,
        metrics=(Metric("enqueue", "enqueue, one awaited call at a time", "jobs/s", True, _rate),),
    ),
    # Right after the enqueue runs, so both meet the machine in the same state.
    Scenario(
        key="floor",
        group="floor",
        side_scenario="floor",
        n=10_000,
        timeout_s=60,
        metrics=(Metric("floor", "floor: raw MULTI/EXEC per job", "jobs/s", True, _rate),),
        libraries=(FLOOR,),
    ),
    Scenario(
        key="enqueue_bulk",
        group="bulk",
        side_scenario="enqueue_bulk",
        n=10_000,
        timeout_s=30,
        metrics=(Metric("enqueue_bulk", "enqueue in bulk (enqueue_many)", "jobs/s", True, _rate),),
    ),
    Scenario(
        key="drain_default",
        group="drain",
        side_scenario="drain",
        n=10_000,
        timeout_s=60,
        metrics=(
            Metric("drain_default", "drain, default concurrency", "jobs/s", True, _rate),
            Metric("rss_default", "worker peak RSS, default drain", "MiB", False, _rss_mib),
        ),
    ),
    Scenario(
        key="drain_c100",
        group="drain",
        side_scenario="drain",
        n=10_000,
        timeout_s=60,
        metrics=(
            Metric("drain_c100", "drain, concurrency 100", "jobs/s", True, _rate),
            Metric("rss_c100", "worker peak RSS, drain c=100", "MiB", False, _rss_mib),
        ),
        concurrency=HIGH_CONCURRENCY,
    ),
    Scenario(
        key="sleep",
        group="sleep",
        side_scenario="drain",
        n=SLEEP_JOBS,
        timeout_s=40,
        metrics=(
            Metric("sleep", "2,000 x 50 ms sleep, c=100 (ideal 1.0)", "s", False, _sleep_wall),
        ),
        concurrency=HIGH_CONCURRENCY,
        task="sleep_50ms",
    ),
    Scenario(
        key="latency",
        group="latency",
        side_scenario="latency",
        n=200,
        timeout_s=40,
        metrics=(
            Metric("latency_p50", "enqueue-to-result latency p50", "ms", False, _p50),
            Metric("latency_p99", "enqueue-to-result latency p99", "ms", False, _p99),
        ),
    ),
)

GROUPS = tuple(dict.fromkeys(s.group for s in SCENARIOS))

# Metrics the terminal table and the docs show; the rest are kept in the JSON only.
TABLE_METRICS = (
    "enqueue",
    "enqueue_bulk",
    "drain_default",
    "drain_c100",
    "sleep",
    "latency_p50",
    "latency_p99",
    "rss_c100",
)

UNSUPPORTED = {
    ("arq", "enqueue_bulk"): "no bulk enqueue API",
    ("saq", "enqueue_bulk"): "no bulk enqueue API",
    ("dramatiq", "enqueue_bulk"): "no bulk enqueue API",
}

REDUCED_N = {
    ("rq", "enqueue"): 3_000,
    ("arq", "enqueue"): 1_000,
    ("saq", "enqueue"): 3_000,
    ("dramatiq", "enqueue"): 5_000,
    ("rq", "drain_default"): 100,
    ("arq", "drain_default"): 500,
    ("saq", "drain_default"): 1_000,
    ("dramatiq", "drain_default"): 2_000,
    ("rq", "drain_c100"): 200,
    ("arq", "drain_c100"): 600,
    ("saq", "drain_c100"): 1_000,
    ("dramatiq", "drain_c100"): 2_000,
    ("rq", "sleep"): 20,
    ("rq", "latency"): 50,
    ("arq", "latency"): 5,
}

NOTES = {
    ("rq", "drain_default"): "rq's default Worker forks a work horse per job",
    ("rq", "drain_c100"): "rq has no concurrency: SimpleWorker, one job at a time",
    ("rq", "sleep"): "rq has no concurrency: SimpleWorker, jobs run one after another",
    ("rq", "latency"): "rq's default Worker (fork per job)",
    ("rq", "rss_c100"): "SimpleWorker, one process",
    ("arq", "drain_default"): "arq polls its queue every 0.5 s (default poll_delay)",
    ("arq", "latency"): "an idle arq worker polls every 0.5 s (default poll_delay)",
    ("saq", "latency"): "waits via saq's pubsub listen, subscribed before enqueue",
    ("dramatiq", "drain_c100"): "100 worker threads",
    ("dramatiq", "latency"): "Results middleware added (dramatiq stores no results by default)",
}


def job_count(library: str, scenario: Scenario) -> int:
    """The number of jobs ``library`` runs in ``scenario`` (reduced where listed)."""
    return REDUCED_N.get((library, scenario.key), scenario.n)


def metric(key: str) -> Metric:
    """Look a metric up by key; KeyError names it."""
    for scenario in SCENARIOS:
        for m in scenario.metrics:
            if m.key == key:
                return m
    raise KeyError(f"no metric {key!r}")


def scenario_of(metric_key: str) -> Scenario:
    """The scenario whose run produces ``metric_key``."""
    for scenario in SCENARIOS:
        if any(m.key == metric_key for m in scenario.metrics):
            return scenario
    raise KeyError(f"no metric {metric_key!r}")
