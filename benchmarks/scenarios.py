"""The catalogue: which scenarios exist, which library runs which, and with how many jobs.

One source of truth for every number and caveat the report prints. A scenario is one
side-script run per library; a metric is one table row read from that run's result.

Job counts: aiorq_flask and the floor always run the full counts the issue asks for.
Where a peer would need far longer than the suite's time budget allows at that count on a
2-core machine, it runs a smaller, fixed count (``REDUCED_N``) and its rate is reported
as measured (jobs/s does not depend on the count); the 50 ms-sleep wall time is scaled
linearly to 2,000 jobs. Every reduction is printed under the table.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

LIBRARIES = ("aiorq_flask", "rq", "arq", "saq", "dramatiq", "streaq", "taskiq")
PEERS = LIBRARIES[1:]
# Native asyncio workers; dramatiq and rq are thread/process based.
ASYNC_PEERS = ("arq", "saq", "streaq", "taskiq")
FLOOR = "floor"
FLEET_SIZES = (1, 2, 4)

SIDE_SCRIPTS = {
    "aiorq_flask": "aiorq_side.py",
    "rq": "rq_side.py",
    "arq": "arq_side.py",
    "saq": "saq_side.py",
    "dramatiq": "dramatiq_side.py",
    "streaq": "streaq_side.py",
    "taskiq": "taskiq_side.py",
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
    extra_args: tuple[str, ...] = ()  # passed on to the side script as they are


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


def _own_rss_mib(result: Result) -> float:
    """The worker's own share: its peak RSS minus that of a process that only imported
    the same app (or job) module."""
    return (result["rss_kib"] - result["base_rss_kib"]) / 1024


def _base_rss_mib(result: Result) -> float:
    return result["base_rss_kib"] / 1024


def _read(field: str) -> Callable[[Result], float]:
    def read(result: Result) -> float:
        return result[field]

    return read


def _life_us(result: Result) -> float:
    """Redis CPU of a job's whole life: its enqueue, its claim, run and record, and one
    read of its result."""
    return result["enqueue_us"] + result["drain_us"] + result["read_us"]


def _core_rate(result: Result) -> float:
    """Jobs/s one Redis core sustains: 1e6 / µs of Redis CPU per job's whole life."""
    return 1e6 / _life_us(result)


def _fleet(workers: int) -> Scenario:
    return Scenario(
        key=f"fleet_{workers}",
        group="fleet",
        side_scenario="fleet",
        n=10_000,
        timeout_s=60,
        metrics=(
            Metric(
                f"fleet_{workers}",
                f"fleet drain, {workers} worker process(es)",
                "jobs/s",
                True,
                _rate,
            ),
            Metric(
                f"fleet_{workers}_cpu",
                f"Redis CPU per job, fleet of {workers}",
                "µs",
                False,
                _read("cpu_us_per_job"),
            ),
        ),
        libraries=("aiorq_flask",),
        extra_args=("--workers", str(workers)),
    )


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
        key="enqueue_concurrent",
        group="concurrent",
        side_scenario="enqueue_concurrent",
        n=10_000,
        timeout_s=60,
        metrics=(
            Metric("enqueue_concurrent", "enqueue, 100 tasks on one loop", "jobs/s", True, _rate),
            Metric("enqueue_concurrent_p99", "enqueue, 100 tasks: p99 per call", "ms", False, _p99),
        ),
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
            Metric(
                "rss_base", "RSS of the app/job module imported alone", "MiB", False, _base_rss_mib
            ),
            Metric(
                "rss_own_c100", "worker's own share of peak RSS, c=100", "MiB", False, _own_rss_mib
            ),
        ),
        concurrency=HIGH_CONCURRENCY,
        extra_args=("--baseline",),
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
    Scenario(
        key="latency_loaded",
        group="loaded",
        side_scenario="latency_loaded",
        n=10_000,
        timeout_s=90,
        metrics=(
            Metric("loaded_p50", "latency, high queue, 10,000 backlog: p50", "ms", False, _p50),
            Metric("loaded_p99", "latency, high queue, 10,000 backlog: p99", "ms", False, _p99),
        ),
        libraries=("aiorq_flask", "rq", "streaq"),
        extra_args=("--queue", "high"),
    ),
    Scenario(
        key="cpu",
        group="cpu",
        side_scenario="cpu",
        n=2_000,
        timeout_s=90,
        metrics=(
            Metric("cpu_enqueue", "Redis CPU per job: enqueue", "µs", False, _read("enqueue_us")),
            Metric("cpu_drain", "Redis CPU per job: drain", "µs", False, _read("drain_us")),
            Metric("cpu_read", "Redis CPU per job: result read", "µs", False, _read("read_us")),
            Metric("cpu_life", "Redis CPU per job: whole life", "µs", False, _life_us),
            Metric("core_rate", "jobs/s one Redis core sustains", "jobs/s", True, _core_rate),
        ),
    ),
    *(_fleet(workers) for workers in FLEET_SIZES),
)

GROUPS = tuple(dict.fromkeys(s.group for s in SCENARIOS))

# Metrics the terminal table and the docs show; the rest are kept in the JSON only.
TABLE_METRICS = (
    "enqueue",
    "enqueue_concurrent",
    "enqueue_concurrent_p99",
    "enqueue_bulk",
    "drain_default",
    "drain_c100",
    "sleep",
    "latency_p50",
    "latency_p99",
    "loaded_p50",
    "loaded_p99",
    "rss_c100",
    "rss_base",
    "rss_own_c100",
    "cpu_enqueue",
    "cpu_drain",
    "cpu_read",
    "cpu_life",
    "core_rate",
    *(f"fleet_{workers}" for workers in FLEET_SIZES),
    *(f"fleet_{workers}_cpu" for workers in FLEET_SIZES),
)

_SYNC_CLIENT = "a synchronous client: no asyncio enqueue to run 100 tasks of"
_NO_PRIORITY = "a worker serves one queue, with no priority between queues"
UNSUPPORTED = {
    ("arq", "enqueue_bulk"): "no bulk enqueue API",
    ("saq", "enqueue_bulk"): "no bulk enqueue API",
    ("dramatiq", "enqueue_bulk"): "no bulk enqueue API",
    ("taskiq", "enqueue_bulk"): "no bulk enqueue API",
    ("rq", "enqueue_concurrent"): _SYNC_CLIENT,
    ("dramatiq", "enqueue_concurrent"): _SYNC_CLIENT,
    ("arq", "latency_loaded"): _NO_PRIORITY,
    ("saq", "latency_loaded"): _NO_PRIORITY,
    ("dramatiq", "latency_loaded"): "no priority between queues (actor priority only "
    "orders messages a worker has already fetched)",
    ("taskiq", "latency_loaded"): _NO_PRIORITY,
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
    ("arq", "enqueue_concurrent"): 1_000,
    ("saq", "enqueue_concurrent"): 3_000,
    ("taskiq", "enqueue_concurrent"): 3_000,
    ("streaq", "enqueue_concurrent"): 3_000,
    ("taskiq", "enqueue"): 3_000,
    ("streaq", "enqueue"): 3_000,
    ("taskiq", "drain_default"): 2_000,
    ("taskiq", "drain_c100"): 2_000,
    ("streaq", "drain_default"): 2_000,
    ("streaq", "drain_c100"): 2_000,
    ("arq", "cpu"): 1_000,
    ("rq", "latency_loaded"): 2_000,
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
    ("dramatiq", "cpu"): "Results middleware added, so results are stored and read",
    ("taskiq", "latency"): "RedisAsyncResultBackend added; waits polling every 5 ms",
    ("taskiq", "cpu"): "RedisAsyncResultBackend added, so results are stored and read",
    ("taskiq", "drain_default"): "one process (the taskiq CLI starts 2), no result backend",
    ("taskiq", "drain_c100"): "one process (the taskiq CLI starts 2), no result backend",
    ("rq", "cpu"): "SimpleWorker (the forking Worker's Redis work per job is the same)",
    ("rq", "latency_loaded"): "rq's default Worker (fork per job)",
    ("arq", "cpu"): "arq's worker polls every 0.5 s; its idle polls count",
}


def job_count(library: str, scenario: Scenario, scale: float = 1.0) -> int:
    """The number of jobs ``library`` runs in ``scenario`` (reduced where listed), times
    ``scale`` for a small trial run (never below 10)."""
    n = REDUCED_N.get((library, scenario.key), scenario.n)
    return n if scale == 1.0 else max(10, round(n * scale))


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
