"""The performance goals of the issue, checked against the medians.

A goal whose numbers are missing (a library left out with ``--only``, a failed run) is
reported as "no data", never as met.
"""

from __future__ import annotations

from dataclasses import dataclass

from .scenarios import FLEET_SIZES, FLOOR, PEERS
from .suite import Measurements

AIORQ = "aiorq_flask"


@dataclass(frozen=True)
class Goal:
    """One goal's verdict: ``met`` is None when the numbers to decide it are missing."""

    text: str
    met: bool | None
    detail: str


def _ratio_goal(
    m: Measurements, metric: str, other: tuple[str, str], factor: float, text: str
) -> Goal:
    """aiorq_flask's ``metric`` must be at least ``factor`` times ``other``'s (library, metric)."""
    library, other_metric = other
    ours, theirs = m.median(AIORQ, metric), m.median(library, other_metric)
    if ours is None or theirs is None:
        return Goal(text, None, "no data")
    detail = f"{ours:,.0f} vs {library} {theirs:,.0f} jobs/s = {ours / theirs:.2f}x"
    return Goal(text, ours >= factor * theirs, detail)


def _best_peer(m: Measurements, metric: str) -> tuple[str, float] | None:
    values = [(peer, m.median(peer, metric)) for peer in PEERS]
    present = [(peer, v) for peer, v in values if v is not None]
    return max(present, key=lambda pv: pv[1]) if present else None


def _drain_goal(m: Measurements, metric: str, label: str) -> Goal:
    text = f"drain ({label}) >= 2x the best peer"
    ours, best = m.median(AIORQ, metric), _best_peer(m, metric)
    if ours is None or best is None:
        return Goal(text, None, "no data")
    peer, theirs = best
    return Goal(
        text,
        ours >= 2 * theirs,
        f"{ours:,.0f} vs {peer} {theirs:,.0f} jobs/s = {ours / theirs:.2f}x",
    )


def _upper(m: Measurements, metric: str, bound: float, unit: str, text: str) -> Goal:
    ours = m.median(AIORQ, metric)
    if ours is None:
        return Goal(text, None, "no data")
    return Goal(text, ours <= bound, f"{ours:.2f} {unit} (bound {bound:g} {unit})")


def _lowest_goal(
    m: Measurements, metric: str, peers: tuple[str, ...], unit: str, text: str
) -> Goal:
    """aiorq_flask's ``metric`` must be no more than the lowest of ``peers``'."""
    ours = m.median(AIORQ, metric)
    present = [(p, v) for p in peers if (v := m.median(p, metric)) is not None]
    if ours is None or not present:
        return Goal(text, None, "no data")
    peer, lowest = min(present, key=lambda pv: pv[1])
    return Goal(text, ours <= lowest, f"{ours:.1f} {unit} vs {peer} {lowest:.1f} {unit}")


def _fleet_goal(m: Measurements) -> Goal:
    first, last = FLEET_SIZES[0], FLEET_SIZES[-1]
    text = f"Redis CPU per job, fleet of {last} <= 1.25x fleet of {first}"
    one, many = m.median(AIORQ, f"fleet_{first}_cpu"), m.median(AIORQ, f"fleet_{last}_cpu")
    if one is None or many is None:
        return Goal(text, None, "no data")
    return Goal(text, many <= 1.25 * one, f"{many:.1f} vs {one:.1f} µs = {many / one:.2f}x")


def check(m: Measurements) -> list[Goal]:
    """Every goal of the issues, in their order."""
    return [
        _ratio_goal(m, "enqueue", ("saq", "enqueue"), 1.2, "enqueue one at a time >= 1.2x saq"),
        _ratio_goal(m, "enqueue", (FLOOR, "floor"), 0.75, "enqueue one at a time >= 75% of floor"),
        _ratio_goal(
            m, "enqueue_bulk", ("rq", "enqueue_bulk"), 3.0, "bulk enqueue >= 3x rq enqueue_many"
        ),
        _ratio_goal(
            m,
            "enqueue_concurrent",
            ("saq", "enqueue_concurrent"),
            3.0,
            "enqueue by 100 tasks on one loop >= 3x saq",
        ),
        _drain_goal(m, "drain_default", "default concurrency"),
        _drain_goal(m, "drain_c100", "concurrency 100"),
        _upper(m, "sleep", 1.15, "s", "2,000 x 50 ms sleep at c=100 <= 1.15 s"),
        _upper(m, "latency_p50", 1.5, "ms", "latency p50 <= 1.5 ms"),
        _upper(m, "latency_p99", 4.0, "ms", "latency p99 <= 4 ms"),
        _upper(m, "loaded_p99", 5.0, "ms", "latency p99, high queue over a 10,000 backlog <= 5 ms"),
        _lowest_goal(
            m, "rss_own_c100", PEERS, "MiB", "worker's own RSS share <= the leanest peer's"
        ),
        _lowest_goal(
            m, "cpu_life", PEERS, "µs", "Redis CPU per job (whole life) <= lowest of peers"
        ),
        _fleet_goal(m),
    ]
