"""The table (terminal text and Markdown) and the JSON file, built from the medians.

Each peer's cell shows its median and its ratio to aiorq_flask's median (peer / ours,
for every metric; the unit column says which way is better). Footnote numbers point at
reduced job counts and at how a peer had to be run.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from . import goals as goals_module
from .scenarios import (
    FLOOR,
    LIBRARIES,
    NOTES,
    TABLE_METRICS,
    UNSUPPORTED,
    job_count,
    metric,
    scenario_of,
)
from .suite import Measurements

AIORQ = "aiorq_flask"
LOADED_SAMPLES = 200  # sides/_common.py: the most samples the latency-under-load row takes


@dataclass
class Table:
    """Rows of (label, unit, cell per library) plus the numbered footnotes they cite."""

    libraries: list[str]
    rows: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    footnotes: list[str] = field(default_factory=list)

    def cite(self, text: str) -> str:
        """The ``[k]`` marker for ``text``, adding it as a footnote the first time."""
        if text not in self.footnotes:
            self.footnotes.append(text)
        return f"[{self.footnotes.index(text) + 1}]"


def _format(value: float, unit: str) -> str:
    if unit == "jobs/s":
        return f"{value:,.0f}"
    if unit == "MiB":
        return f"{value:.1f}"
    return f"{value:.2f}"


def _note(library: str, metric_key: str) -> str | None:
    scenario = scenario_of(metric_key)
    parts = []
    n = job_count(library, scenario)
    if n != scenario.n:
        parts.append(f"n={n:,} of {scenario.n:,}")
    text = NOTES.get((library, metric_key)) or NOTES.get((library, scenario.key))
    if text:
        parts.append(text)
    return f"{library}, {scenario.key}: " + "; ".join(parts) if parts else None


def _cell(m: Measurements, table: Table, library: str, metric_key: str) -> str:
    scenario = scenario_of(metric_key)
    unit = metric(metric_key).unit
    if (library, scenario.key) in UNSUPPORTED:
        return "n/a " + table.cite(f"{library}: {UNSUPPORTED[(library, scenario.key)]}")
    value = m.median(library, metric_key)
    if value is None:
        errors = m.errors(library, scenario.key)
        if not errors:
            return "-"
        return "failed " + table.cite(f"{library}, {scenario.key}: {errors[-1]}")
    text = _format(value, unit)
    ours = m.median(AIORQ, metric_key)
    if library != AIORQ and ours:
        text += f" {value / ours:.2f}x"
    note = _note(library, metric_key)
    return text + (" " + table.cite(note) if note else "")


def build_table(m: Measurements) -> Table:
    """The table of medians for the libraries that ran, in catalogue order."""
    libraries = [lib for lib in LIBRARIES if lib in m.libraries]
    table = Table(libraries)
    keys = {s.key for s in m.scenarios}
    for metric_key in TABLE_METRICS:
        if scenario_of(metric_key).key not in keys:
            continue
        row_metric = metric(metric_key)
        better = "higher" if row_metric.higher_is_better else "lower"
        cells = {lib: _cell(m, table, lib, metric_key) for lib in libraries}
        table.rows.append((row_metric.label, f"{row_metric.unit}, {better}=better", cells))
    return table


def summary_lines(m: Measurements) -> list[str]:
    """The lines under the table: default concurrencies and the floor."""
    lines = []
    defaults = []
    for lib in m.libraries:
        result = m.first_result(lib, "drain_default")
        if result and "concurrency" in result:
            defaults.append(f"{lib} {int(result['concurrency'])}")
    if defaults:
        lines.append("default concurrency: " + ", ".join(defaults))
    floor = m.median(FLOOR, "floor")
    if floor is not None:
        line = f"floor (raw redis.asyncio MULTI/EXEC per job, no library): {floor:,.0f} jobs/s"
        ours = m.median(AIORQ, "enqueue")
        if ours is not None:
            line += f"; aiorq_flask one-at-a-time enqueue = {ours / floor:.0%} of it"
        lines.append(line)
    for library in m.libraries:
        loaded = m.first_result(library, "latency_loaded")
        if loaded and loaded["n"] < LOADED_SAMPLES:
            why = "the backlog ran out" if loaded.get("backlog_left") == 0 else "20 s were up"
            lines.append(f"{library}, latency under load: {int(loaded['n'])} samples ({why} first)")
    return lines + cpu_lines(m)


def cpu_lines(m: Measurements) -> list[str]:
    """Where each library's Redis CPU goes: per phase, the commands that took most time
    inside Redis (calls and µs per job, from ``INFO commandstats``, which counts the
    commands a script runs on their own as well as the script), and aiorq_flask's time
    per script (from ``SLOWLOG`` with every command logged, in a second, smaller round)."""
    lines = []
    for library in m.libraries:
        result: dict[str, Any] | None = m.first_result(library, "cpu")  # type: ignore[assignment]
        if not result:
            continue
        phases = []
        for phase in ("enqueue", "drain", "read"):
            commands = result.get(f"{phase}_commands", {})
            top = sorted(commands.items(), key=lambda item: -item[1][1])[:4]
            text = ", ".join(
                f"{name} {calls / result['n']:.2g}x {usec / result['n']:.1f}"
                for name, (calls, usec) in top
            )
            phases.append(f"{phase}: {text}")
        lines.append(f"Redis time inside commands per job, {library} (µs): " + "; ".join(phases))
        scripts = result.get("scripts")
        if scripts:
            names = sorted((k for k in scripts if not k.endswith(" calls")), key=scripts.get)
            lines.append(
                f"{library} per script (SLOWLOG; µs per job, calls per job): "
                + ", ".join(
                    f"{name} {scripts[name]:.1f} ({scripts[name + ' calls']:.2g})"
                    for name in reversed(names)
                )
            )
    return lines


def render_text(table: Table, extra: list[str]) -> str:
    label_w = max(len(r[0]) for r in table.rows) if table.rows else 10
    unit_w = max(len(r[1]) for r in table.rows) if table.rows else 4
    col_w = {lib: max([len(lib)] + [len(r[2][lib]) for r in table.rows]) for lib in table.libraries}
    header = f"{'scenario':<{label_w}}  {'unit':<{unit_w}}  " + "  ".join(
        f"{lib:<{col_w[lib]}}" for lib in table.libraries
    )
    lines = [header, "-" * len(header)]
    for label, unit, cells in table.rows:
        lines.append(
            f"{label:<{label_w}}  {unit:<{unit_w}}  "
            + "  ".join(f"{cells[lib]:<{col_w[lib]}}" for lib in table.libraries)
        )
    lines.append("")
    lines += [f"[{i}] {text}" for i, text in enumerate(table.footnotes, 1)]
    lines += extra
    return "\n".join(lines)


def render_markdown(table: Table, extra: list[str]) -> str:
    lines = [
        "| scenario | unit | " + " | ".join(table.libraries) + " |",
        "|---|---|" + "---:|" * len(table.libraries),
    ]
    for label, unit, cells in table.rows:
        lines.append(
            f"| {label} | {unit} | " + " | ".join(cells[lib] for lib in table.libraries) + " |"
        )
    lines.append("")
    lines += [f"{i}. {text}" for i, text in enumerate(table.footnotes, 1)]
    if extra:
        lines.append("")
        lines += [f"- {line}" for line in extra]
    return "\n".join(lines)


def render_goals(goal_list: list[goals_module.Goal]) -> str:
    def verdict(goal: goals_module.Goal) -> str:
        return {True: "MET", False: "NOT MET", None: "NO DATA"}[goal.met]

    width = max(len(g.text) for g in goal_list)
    return "\n".join(f"{verdict(g):<8} {g.text:<{width}}  {g.detail}" for g in goal_list)


def render_goals_markdown(goal_list: list[goals_module.Goal]) -> str:
    verdicts = {True: "met", False: "**not met**", None: "no data"}
    lines = ["| goal | verdict | numbers |", "|---|---|---|"]
    lines += [f"| {g.text} | {verdicts[g.met]} | {g.detail} |" for g in goal_list]
    return "\n".join(lines)


def write_json(
    path: Path,
    m: Measurements,
    goal_list: list[goals_module.Goal],
    context: dict[str, object],
) -> None:
    """Every run (result or error), every median, the goals and the run's context."""
    medians: dict[str, dict[str, float]] = {}
    for scenario in m.scenarios:
        for row_metric in scenario.metrics:
            for library in [*m.libraries, FLOOR]:
                value = m.median(library, row_metric.key)
                if value is not None:
                    medians.setdefault(row_metric.key, {})[library] = value
    payload = {
        **context,
        "scenarios": {
            s.key: {
                "n": s.n,
                "concurrency": s.concurrency,
                "task": s.task,
                "n_by_library": {lib: job_count(lib, s) for lib in s.libraries},
            }
            for s in m.scenarios
        },
        "medians": medians,
        "goals": [asdict(g) for g in goal_list],
        "runs": [
            {
                "library": r.library,
                "scenario": r.scenario,
                "rep": r.rep,
                "n": r.n,
                "wall_seconds": r.seconds,
                "result": r.outcome.result,
                "error": r.outcome.error,
            }
            for r in m.runs
        ],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2) + "\n")
