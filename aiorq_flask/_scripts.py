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

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.exceptions import NoScriptError


class Script:
    """One Lua file, called with ``await script(client, keys, args)``, or queued in a
    transaction with ``load_in`` then ``call_in`` (loading inside the MULTI means no call in
    it can meet ``NOSCRIPT``)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.source = resources.files(__package__).joinpath(f"scripts/{name}.lua").read_text()
        self.sha = hashlib.sha1(self.source.encode()).hexdigest()

    async def __call__(self, client: Redis, keys: list[str], args: list[Any]) -> Any:
        try:
            return await client.evalsha(self.sha, len(keys), *keys, *args)
        except NoScriptError:
            await client.script_load(self.source)
            return await client.evalsha(self.sha, len(keys), *keys, *args)

    def load_in(self, pipe: Pipeline) -> None:
        pipe.script_load(self.source)

    def call_in(self, pipe: Pipeline, keys: list[str], args: list[Any]) -> None:
        pipe.evalsha(self.sha, len(keys), *keys, *args)


Call = tuple[Script, list[str], list[Any]]


async def run_batch(client: Redis, calls: list[Call]) -> list[Any]:
    """Run many script calls in one round trip (a plain pipeline, not a transaction).

    Each call is atomic on its own. A call answered ``NOSCRIPT`` wrote nothing, so only
    those calls are sent again after loading their scripts. Any other error is raised
    after the batch ran.
    """
    async with client.pipeline(transaction=False) as pipe:
        for script, keys, args in calls:
            pipe.evalsha(script.sha, len(keys), *keys, *args)
        results: list[Any] = await pipe.execute(raise_on_error=False)
    missing = [i for i, r in enumerate(results) if isinstance(r, NoScriptError)]
    if missing:
        for script in {calls[i][0] for i in missing}:
            await client.script_load(script.source)
        retried = await run_batch(client, [calls[i] for i in missing])
        for i, result in zip(missing, retried, strict=True):
            results[i] = result
    for result in results:
        if isinstance(result, Exception):
            raise result
    return results


ENQUEUE = Script("enqueue")
CLAIM = Script("claim")
FINISH = Script("finish")
HEARTBEAT = Script("heartbeat")
SWEEP = Script("sweep")
SCHEDULE = Script("schedule")
RELEASE_LOCKS = Script("release_locks")
