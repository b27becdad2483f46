"""One cached virtual environment per peer, so conflicting redis-py pins can coexist.

arq needs ``redis<6`` and saq ``redis<8`` while aiorq_flask runs on the suite's own
redis-py, so every peer's side runs in its own interpreter. The environments live under
``benchmarks/.venvs/`` (gitignored) and are rebuilt only when their requirement list
changes, which a stamp file inside each one records.
"""

from __future__ import annotations

import subprocess
import sys
import venv
from pathlib import Path

VENVS_DIR = Path(__file__).resolve().parent / ".venvs"

# Exact pins keep runs comparable over time; hiredis is added everywhere because
# aiorq_flask depends on redis[hiredis], and the parser should not be what we measure.
# saq 0.26.4 imports typing_extensions without declaring it.
REQUIREMENTS: dict[str, list[str]] = {
    "rq": ["rq==3.0.0", "hiredis"],
    "arq": ["arq==0.28.0", "hiredis"],
    "saq": ["saq[redis,hiredis]==0.26.4", "typing_extensions"],
    "dramatiq": ["dramatiq[redis]==2.2.1", "hiredis"],
    "streaq": ["streaq==7.2.0"],  # coredis, not redis-py: hiredis would not be used
    "taskiq": ["taskiq==0.13.0", "taskiq-redis==1.2.4", "hiredis"],
}

# The Redis client a peer talks through, when it is not redis-py.
REDIS_CLIENTS = {"streaq": "coredis"}

STAMP = "aiorq-bench-requirements.txt"


def python_for(peer: str) -> Path:
    """Return the peer's interpreter, creating or refreshing its venv first if needed.

    Raises ``subprocess.CalledProcessError`` when pip cannot install the pins.
    """
    root = VENVS_DIR / peer
    python = root / "bin" / "python"
    wanted = "\n".join(REQUIREMENTS[peer]) + "\n"
    stamp = root / STAMP
    if python.exists() and stamp.exists() and stamp.read_text() == wanted:
        return python
    print(f"[venvs] creating {root} ({', '.join(REQUIREMENTS[peer])})", file=sys.stderr)
    venv.EnvBuilder(clear=True, with_pip=True).create(root)
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        + REQUIREMENTS[peer],
        capture_output=True,
        text=True,
    )
    if install.returncode != 0:
        # pip's output only matters when it failed; otherwise it is noise.
        print(install.stdout + install.stderr, file=sys.stderr)
        install.check_returncode()
    stamp.write_text(wanted)
    return python


def installed_version(peer: str, distribution: str | None = None) -> str:
    """Return the installed version of ``distribution`` (default: the peer) in its venv."""
    code = f"import importlib.metadata as m; print(m.version({(distribution or peer)!r}))"
    out = subprocess.run(
        [str(python_for(peer)), "-c", code], check=True, capture_output=True, text=True
    )
    return out.stdout.strip()
