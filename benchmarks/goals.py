"""The performance goals of the issue, checked against the medians.

A goal whose numbers are missing (a library left out with ``--only``, a failed run) is
reported as "no data", never as met.
"""

from __future__ import annotations

from dataclasses import dataclass

from .scenarios import ASYNC_PEERS, FLOOR, PEERS
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


def _rss_goal(m: Measurements) -> Goal:
    text = "worker peak RSS <= the leanest async peer (" + ", ".join(ASYNC_PEERS) + ")"
    ours = m.median(AIORQ, "rss_c100")
    peers = [(p, m.median(p, "rss_c100")) for p in ASYNC_PEERS]
    present = [(p, v) for p, v in peers if v is not None]
    if ours is None or not present:
        return Goal(text, None, "no data")
    peer, leanest = min(present, key=lambda pv: pv[1])
    return Goal(text, ours <= leanest, f"{ours:.1f} MiB vs {peer} {leanest:.1f} MiB")


def check(m: Measurements) -> list[Goal]:
    """Every goal of the issue, in the issue's order."""
    return [
        _ratio_goal(m, "enqueue", ("saq", "enqueue"), 1.2, "enqueue one at a time >= 1.2x saq"),
        _ratio_goal(m, "enqueue", (FLOOR, "floor"), 0.75, "enqueue one at a time >= 75% of floor"),
        _ratio_goal(
            m, "enqueue_bulk", ("rq", "enqueue_bulk"), 1.5, "bulk enqueue >= 1.5x rq enqueue_many"
        ),
        _drain_goal(m, "drain_default", "default concurrency"),
        _drain_goal(m, "drain_c100", "concurrency 100"),
        _upper(m, "sleep", 1.15, "s", "2,000 x 50 ms sleep at c=100 <= 1.15 s"),
        _upper(m, "latency_p50", 1.5, "ms", "latency p50 <= 1.5 ms"),
        _upper(m, "latency_p99", 4.0, "ms", "latency p99 <= 4 ms"),
        _upper(m, "rss_c100", 30.0, "MiB", "worker peak RSS <= 30 MiB"),
        _rss_goal(m),
    ]
