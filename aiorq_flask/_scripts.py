"""The Lua scripts in ``scripts/``, called by SHA with a reload after a Redis restart.

A script runs atomically, so each multi-key step (claim, finish, sweep, schedule) is one
round trip and can never be seen half done. ``EVALSHA`` sends only the 40-byte hash; a
``NOSCRIPT`` reply (Redis restarted, script cache flushed) means nothing ran, so loading
the script and calling again is safe.
"""

from __future__ import annotations

import hashlib
from importlib import resources
from typing import Any

import msgpack  # type: ignore[import-untyped]
from redis.asyncio.client import Pipeline
from redis.exceptions import NoScriptError

from ._multiplexer import Multiplexer


def pack_argument(value: Any) -> bytes:
    """One msgpack argument for a script to ``cmsgpack.unpack``.

    Redis's cmsgpack knows no bin type, so bytes travel as msgpack strings: a Lua string
    is bytes either way, and ids that are not UTF-8 reach the script as they are.
    """
    packed: bytes = msgpack.packb(value, use_bin_type=False)
    return packed


class Script:
    """One Lua file, called with ``await script(multiplexer, keys, args)``, or queued in a
    transaction with ``load_in`` then ``call_in`` (loading inside the MULTI means no call in
    it can meet ``NOSCRIPT``)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.source = resources.files(__package__).joinpath(f"scripts/{name}.lua").read_text()
        self.sha = hashlib.sha1(self.source.encode()).hexdigest()

    async def __call__(self, redis: Multiplexer, keys: list[str], args: list[Any]) -> Any:
        try:
            return await redis.evalsha(self.sha, len(keys), *keys, *args)
        except NoScriptError:
            await redis.script_load(self.source)
            return await redis.evalsha(self.sha, len(keys), *keys, *args)

    def load_in(self, pipe: Pipeline) -> None:
        pipe.script_load(self.source)

    def call_in(self, pipe: Pipeline, keys: list[str], args: list[Any]) -> None:
        pipe.evalsha(self.sha, len(keys), *keys, *args)


ENQUEUE = Script("enqueue")
CLAIM = Script("claim")
FINISH = Script("finish")
HEARTBEAT = Script("heartbeat")
SWEEP = Script("sweep")
SCHEDULE = Script("schedule")
RELEASE_LOCKS = Script("release_locks")
EMPTY = Script("empty")
