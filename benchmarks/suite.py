"""The interleaved plan: every repetition runs every scenario for every library in turn.

Interleaving (rep 1: all libraries, rep 2: all libraries, ...) spreads slow drifts of a
shared machine over every library instead of loading them onto whichever ran last.
Medians over the repetitions are what the report shows.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from .runner import Outcome, run_side
from .scenarios import FLOOR, UNSUPPORTED, Scenario, job_count, metric, scenario_of


@dataclass(frozen=True)
class Run:
    """One side run: which library, which scenario, which repetition, and what came back."""

    library: str
    scenario: str
    rep: int
    n: int
    seconds: float
    outcome: Outcome


@dataclass
class Measurements:
    """Every run of one suite invocation, and the medians the report reads."""

    scenarios: Sequence[Scenario]
    libraries: Sequence[str]
    reps: int
    scale: float = 1.0  # job counts times this (a small trial run when below 1)
    runs: list[Run] = field(default_factory=list)

    def values(self, library: str, metric_key: str) -> list[float]:
        """The metric's value from each successful run of ``library``."""
        scenario, read = scenario_of(metric_key).key, metric(metric_key).read
        return [
            read(run.outcome.result)
            for run in self.runs
            if run.library == library and run.scenario == scenario and run.outcome.result
        ]

    def median(self, library: str, metric_key: str) -> float | None:
        values = self.values(library, metric_key)
        return statistics.median(values) if values else None

    def errors(self, library: str, scenario_key: str) -> list[str]:
        return [
            run.outcome.error
            for run in self.runs
            if run.library == library and run.scenario == scenario_key and run.outcome.error
        ]

    def first_result(self, library: str, scenario_key: str) -> dict[str, float] | None:
        for run in self.runs:
            if run.library == library and run.scenario == scenario_key and run.outcome.result:
                return run.outcome.result
        return None


def plan(scenarios: Sequence[Scenario], libraries: Sequence[str]) -> list[tuple[str, Scenario]]:
    """The (library, scenario) pairs of one repetition in run order; unsupported ones are
    left out, and the floor runs whenever its scenario is selected (it is no peer)."""
    return [
        (library, scenario)
        for scenario in scenarios
        for library in scenario.libraries
        if (library in libraries or library == FLOOR) and (library, scenario.key) not in UNSUPPORTED
    ]


def run_suite(
    scenarios: Sequence[Scenario],
    libraries: Sequence[str],
    reps: int,
    redis_url: str,
    scale: float = 1.0,
) -> Measurements:
    """Run ``reps`` interleaved repetitions, printing one progress line per run."""
    measurements = Measurements(scenarios, libraries, reps, scale)
    steps = plan(scenarios, libraries)
    for rep in range(1, reps + 1):
        for library, scenario in steps:
            n = job_count(library, scenario, scale)
            print(
                f"[rep {rep}/{reps}] {scenario.key:<14} {library:<12} n={n:<6}", end="", flush=True
            )
            start = time.monotonic()
            outcome = run_side(library, scenario, redis_url, scale)
            seconds = time.monotonic() - start
            status = "ok" if outcome.result is not None else f"FAILED: {outcome.error}"
            print(f" {seconds:5.1f} s  {status}", flush=True)
            measurements.runs.append(Run(library, scenario.key, rep, n, seconds, outcome))
    return measurements
