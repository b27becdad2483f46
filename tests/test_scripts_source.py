"""The Lua scripts keep one source of truth: keys, statuses and the order of their replies
come from Python through the preamble, and each routine stays short enough to read whole.

The scripts are checked as text (``aiorq_flask/scripts``), and the preamble against a
real redis-server: what Lua builds is what ``keys.py`` builds.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import redis

from aiorq_flask import JobStatus, _scripts, keys

SCRIPTS = Path(_scripts.__file__).parent / "scripts"
LUA_FILES = sorted(SCRIPTS.rglob("*.lua"))
STRING = re.compile(r"'((?:[^'\\]|\\.)*)'|\"((?:[^\"\\]|\\.)*)\"")
FUNCTION = re.compile(r"^(\s*)(?:local\s+)?function\s+([\w.]+)\s*\(")


def code_lines(path: Path) -> list[str]:
    """The script's lines, comments blanked (line numbers kept)."""
    return [line.split("--", 1)[0] for line in path.read_text().splitlines()]


def string_literals(path: Path) -> list[str]:
    return [a or b for line in code_lines(path) for a, b in STRING.findall(line)]


def functions(path: Path) -> list[tuple[str, int]]:
    """Each function's name and length in lines, from its ``function`` line to its ``end``
    at the same indentation."""
    lines = path.read_text().splitlines()
    found = []
    for start, line in enumerate(lines):
        match = FUNCTION.match(line)
        if match:
            indent, name = match.groups()
            end = next(i for i in range(start, len(lines)) if lines[i] == f"{indent}end")
            found.append((name, end - start + 1))
    return found


def test_there_are_scripts_to_check() -> None:
    assert {path.stem for path in LUA_FILES} >= {"claim", "enqueue", "finish", "sweep"}


@pytest.mark.parametrize("path", LUA_FILES, ids=lambda p: p.name)
def test_no_script_spells_a_key(path: Path) -> None:
    spelled = [s for s in string_literals(path) if s.startswith(f"{keys.PREFIX}:")]

    assert spelled == [], f"{path.name} spells keys: use the preamble's KEY table"


@pytest.mark.parametrize("path", LUA_FILES, ids=lambda p: p.name)
def test_no_script_spells_a_status(path: Path) -> None:
    statuses = {status.value for status in JobStatus}
    spelled = [s for s in string_literals(path) if s in statuses]

    assert spelled == [], f"{path.name} spells statuses: use the preamble's STATUS table"


@pytest.mark.parametrize("path", LUA_FILES, ids=lambda p: p.name)
def test_no_lua_function_is_longer_than_60_lines(path: Path) -> None:
    long = [(name, length) for name, length in functions(path) if length > 60]

    assert long == []


def test_each_outcome_routine_is_under_40_lines() -> None:
    routines = dict(functions(SCRIPTS / "lib" / "outcomes.lua"))
    recording = {name: n for name, n in routines.items() if name.startswith("record_")}

    assert set(recording) == {
        "record_finished",
        "record_failed",
        "record_retried",
        "record_abandoned",
        "record_retry_returned",
    }
    assert all(length < 40 for length in routines.values()), routines


def test_the_preamble_builds_the_keys_keys_py_builds(sync_redis: redis.Redis) -> None:
    lua = _scripts.preamble() + (
        "return {KEY.queues, KEY.job(ARGV[1]), KEY.dependencies(ARGV[1]), "
        "KEY.execution(ARGV[1], ARGV[2]), KEY.wip(ARGV[3]), KEY.worker_executions(ARGV[3])}"
    )

    built = sync_redis.eval(lua, 0, "job-1", "exec-1", "q")

    assert [key.decode() for key in built] == [
        keys.QUEUES,
        keys.job("job-1"),
        keys.dependencies("job-1"),
        f"{keys.PREFIX}:execution:job-1:exec-1",
        keys.wip("q"),
        keys.worker_executions("q"),
    ]


def test_a_scripts_reply_follows_the_order_of_the_tuple_that_decodes_it(
    sync_redis: redis.Redis,
) -> None:
    reply = "return REPLY({abandoned = {'a', 'q', 1}, failed = 2, requeued = 1})"
    lua = _scripts.preamble(_scripts.Swept) + reply

    assert _scripts.Swept._make(sync_redis.eval(lua, 0)) == _scripts.Swept(
        requeued=1, failed=2, abandoned=[b"a", b"q", 1]
    )
