"""Redis ACL users for the web app and the worker, on a private ``redis-server``.

``APP_RULES`` and ``WORKER_RULES`` are the rule sets the README and ``docs/design.md``
ship (``tests/test_acl.py`` checks that the docs show exactly these): the key prefix, the
pub/sub channels and each command the side sends, directly or from the Lua scripts it
calls (a script runs with its caller's permissions).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import redis

from aiorq_flask import keys

from ..redis_server import RedisServer, program_version

PREFIX = keys.PREFIX
# rq's keys, and its worker command channels; "resetchannels" because on Redis 6.2 "reset"
# leaves every channel allowed (acl-pubsub-default), and a pattern cannot follow that.
SCOPE = (f"~{PREFIX}:*", "resetchannels", f"&{PREFIX}:pubsub:*")
CONNECT = ("+ping", "+select", "+client|setname", "+wait")  # health, ?db=, ?client_name=, Sentinel
APP_RULES = (
    *SCOPE,
    *("+evalsha", "+script|load", "+multi", "+exec", "+watch", "+unwatch"),
    *("+hget", "+hmget", "+hgetall", "+hset", "+exists", "+expire", "+persist", "+del"),
    *("+sadd", "+time", "+lpush", "+rpush", "+lrem", "+llen", "+lrange"),
    *("+zadd", "+zrem", "+zcard", "+zrange", "+zscore", "+zremrangebyscore", "+zpopmin"),
    *("+xrevrange", "+xread", "+publish"),
    *CONNECT,
)
WORKER_RULES = (
    *SCOPE,
    *("+evalsha", "+script|load", "+multi", "+exec"),
    *("+hget", "+hmget", "+hgetall", "+hset", "+hdel", "+hexists", "+hkeys", "+hstrlen"),
    *("+hincrby", "+hincrbyfloat", "+exists", "+expire", "+persist", "+del", "+get", "+set"),
    "+time",
    *("+sadd", "+srem", "+smembers", "+sismember", "+scard"),
    *("+lpop", "+lpush", "+rpush", "+lrem", "+blmove"),
    *("+zadd", "+zrem", "+zcard", "+zcount", "+zrange", "+zscore", "+zrangebyscore"),
    *("+zremrangebyscore", "+zpopmin"),
    *("+xadd", "+subscribe"),
    *CONNECT,
)
# redis-py sends CLIENT SETINFO when it connects and ignores a refusal; Redis 7.2+ logs
# that refusal in ACL LOG (7.0 and 7.1 do not know the subcommand). 6.2 does not know it
# either, but checks the rules first and logs the refusal as "client", as it would any
# refused CLIENT subcommand: the same tests on Redis 7 tell those apart.
IGNORED_DENIALS = {"client|setinfo"}
IGNORED_DENIALS_BEFORE_7 = {"client"}


def setuser(client: redis.Redis, user: str, password: str, rules: Sequence[str]) -> None:
    """``ACL SETUSER user reset on >password rules...``: exactly these rules, nothing else."""
    client.execute_command("ACL", "SETUSER", user, "reset", "on", f">{password}", *rules)


@dataclass
class AclServer:
    """A private server whose ``default`` user (``admin``) sets up users and reads ACL LOG."""

    server: RedisServer
    admin: redis.Redis

    def url(self, user: str, password: str, db: int = 0) -> str:
        return f"redis://{quote(user)}:{quote(password)}@127.0.0.1:{self.server.port}/{db}"

    def options(self, user: str, password: str) -> dict[str, Any]:
        """The same connection as ``url``, in the dict form of ``RQ_CONNECTION``."""
        port = self.server.port
        return {"host": "127.0.0.1", "port": port, "username": user, "password": password}

    def client(self, user: str, password: str) -> redis.Redis:
        return redis.Redis.from_url(self.url(user, password))

    def denials(self) -> list[dict[str, str]]:
        """``ACL LOG`` entries (what was refused, to whom), but for ``IGNORED_DENIALS``."""
        before_7 = program_version() < (7,)
        ignored = IGNORED_DENIALS | (IGNORED_DENIALS_BEFORE_7 if before_7 else set())
        entries = []
        for entry in self.admin.execute_command("ACL", "LOG"):  # redis-py: a dict each
            text = {_text(k): _text(v) for k, v in entry.items() if isinstance(v, (bytes, str))}
            if text.get("object") not in ignored:
                entries.append(text)
        return entries

    def reset_log(self) -> None:
        self.admin.execute_command("ACL", "LOG", "RESET")


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


@contextmanager
def acl_server() -> Iterator[AclServer]:
    server = RedisServer()
    server.start()
    admin = redis.Redis.from_url(server.url)
    try:
        yield AclServer(server, admin)
    finally:
        admin.close()
        server.stop()
