"""The PNG: one bar panel per table row, a bar per library, aiorq_flask highlighted.

Drawn with matplotlib's Agg backend (no display needed). The floor appears as a dashed
line on the one-at-a-time enqueue panel, the ideal 1.0 s on the sleep panel.
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # before pyplot is imported: no display here
import matplotlib.pyplot as plt
from matplotlib.axes import Axes

from .scenarios import FLOOR, LIBRARIES, TABLE_METRICS, metric, scenario_of
from .suite import Measurements

LOG_SCALE_SPREAD = 20
COLORS = {
    "aiorq_flask": "#d62728",
    "rq": "#7f7f7f",
    "arq": "#1f77b4",
    "saq": "#2ca02c",
    "dramatiq": "#9467bd",
    "streaq": "#ff7f0e",
    "taskiq": "#17becf",
}


def _panel(ax: Axes, m: Measurements, metric_key: str, libraries: list[str]) -> None:
    row = metric(metric_key)
    values = [m.median(lib, metric_key) for lib in libraries]
    heights = [v or 0.0 for v in values]
    bars = ax.bar(libraries, heights, color=[COLORS[lib] for lib in libraries])
    for bar, value in zip(bars, values, strict=True):
        label = "n/a" if value is None else _short(value, row.unit)
        ax.annotate(label, (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                    ha="center", va="bottom", fontsize=8)  # fmt: skip
    floor = m.median(FLOOR, "floor") if metric_key == "enqueue" else None
    reference = {"sleep": 1.0}.get(metric_key, floor)
    if reference is not None:
        ax.axhline(reference, color="black", linestyle="--", linewidth=1)
        ax.annotate("floor" if floor else "ideal", (len(libraries) - 0.5, reference),
                    ha="right", va="bottom", fontsize=8)  # fmt: skip
    present = [v for v in values if v]
    # One peer 100x off the rest (rq's serial sleeps, arq's 0.5 s poll) would flatten
    # every other bar on a linear axis.
    log = bool(present) and max(present) / min(present) > LOG_SCALE_SPREAD
    better = "higher" if row.higher_is_better else "lower"
    scale = ", log scale" if log else ""
    ax.set_title(f"{row.label}\n({row.unit}, {better} is better{scale})", fontsize=9)
    ax.tick_params(axis="x", labelsize=8, rotation=30)
    ax.tick_params(axis="y", labelsize=8)
    if log:
        ax.set_yscale("log")
        ax.set_ylim(min(present) / 2, max(present) * 3)
    else:
        ax.set_ylim(0, max([*heights, reference or 0, 1e-9]) * 1.18)


def _short(value: float, unit: str) -> str:
    if unit == "jobs/s":
        return f"{value:,.0f}"
    return f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def draw(m: Measurements, path: Path, title: str) -> None:
    """Write the chart of every table row that has data to ``path``."""
    libraries = [lib for lib in LIBRARIES if lib in m.libraries]
    keys = {s.key for s in m.scenarios}
    rows = [k for k in TABLE_METRICS if scenario_of(k).key in keys]
    if not rows:
        return
    cols = min(4, len(rows))
    grid_rows = math.ceil(len(rows) / cols)
    fig, axes = plt.subplots(grid_rows, cols, figsize=(4 * cols, 3.4 * grid_rows), squeeze=False)
    for ax, metric_key in zip(axes.flat, rows, strict=False):
        ran = scenario_of(metric_key).libraries  # the fleet rows are aiorq_flask's alone
        _panel(ax, m, metric_key, [lib for lib in libraries if lib in ran])
    for ax in list(axes.flat)[len(rows) :]:
        ax.set_visible(False)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout(rect=(0, 0, 1, 0.98))  # room for the title above the top row
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
