"""What the numbers ran on: the machine, the interpreters and every library's version."""

from __future__ import annotations

import os
import platform
import re
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path

from . import redis_server, venvs

REPO_ROOT = Path(__file__).resolve().parent.parent


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _memory_gib() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) / 1024 / 1024
    return 0.0


def describe() -> dict[str, str]:
    """CPU, cores, memory, kernel, Python and redis-server, as display strings."""
    return {
        "cpu": _cpu_model(),
        "cores": str(os.cpu_count()),
        "memory": f"{_memory_gib():.0f} GiB",
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "redis-server": redis_server.server_version(),
    }


def load_average() -> float:
    """The 1-minute load average: other work on the machine skews every number."""
    return float(Path("/proc/loadavg").read_text().split()[0])


def _aiorq_version() -> str:
    # Read, not imported: aiorq_flask runs from the working tree, uninstalled.
    found = re.search(r'^version = "([^"]+)"', (REPO_ROOT / "pyproject.toml").read_text(), re.M)
    return f"{found.group(1) if found else '?'} (working tree)"


def versions(peers: Iterable[str]) -> dict[str, str]:
    """``library -> "version, redis-py X"`` (or its own Redis client) for aiorq_flask and
    each peer in its venv."""
    out = {"aiorq_flask": f"{_aiorq_version()}, redis-py {metadata.version('redis')}"}
    for peer in peers:
        client = venvs.REDIS_CLIENTS.get(peer, "redis")
        name = "redis-py" if client == "redis" else client
        out[peer] = (
            f"{venvs.installed_version(peer)}, {name} {venvs.installed_version(peer, client)}"
        )
    return out
