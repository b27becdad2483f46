"""The fault-injection suite: real worker processes and a real ``redis-server``, broken on
purpose (killed, restarted, cut off, fed bad data, overloaded).

Every test here carries the ``faults`` mark (``pytest -m faults`` runs just these). The
``figures`` fixture keeps what a case measured (re-runs per kill, recovery times, live jobs
run twice); the figures are printed at the end of the run, for the record.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

HERE = Path(__file__).parent
_FIGURES: list[tuple[str, str]] = []


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.faults)


class Figures:
    """What one test measured, as ``name: value`` lines."""

    def __init__(self, test: str) -> None:
        self.test = test

    def record(self, name: str, value: object) -> None:
        _FIGURES.append((self.test, f"{name}: {value}"))


@pytest.fixture
def figures(request: pytest.FixtureRequest) -> Iterator[Figures]:
    yield Figures(request.node.nodeid.rsplit("::", 1)[-1])


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not _FIGURES:
        return
    terminalreporter.section("fault figures")
    for test, line in _FIGURES:
        terminalreporter.write_line(f"{test}: {line}")
