"""The oldest Redis the worker runs on, checked once at start.

6.2 is the first server with ``LPOP`` with a count (the claim script pops several jobs in
one call) and ``BLMOVE`` (an idle worker's wait). On an older one every claim would fail
with an unknown-command or arity error, over and over; refusing at start says why, once.

The version comes from ``HELLO`` without arguments (new in 6.2): it needs no ACL rule and
leaves the connection's protocol as it is. A server that refuses it is older than 6.2.
"""

from __future__ import annotations

import re
from typing import Any

from redis import exceptions
from redis.asyncio import Redis

from ..errors import UnsupportedServerError

MINIMUM = (6, 2)
_MINIMUM_TEXT = ".".join(map(str, MINIMUM))
_NEEDS = "it needs LPOP with a count and BLMOVE"


def parse(version: str) -> tuple[int, ...] | None:
    """``"6.2.14"`` -> ``(6, 2, 14)``; None if it does not start with a number."""
    match = re.match(r"\d+(\.\d+)*", version)
    return tuple(int(part) for part in match[0].split(".")) if match else None


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def hello_fields(reply: Any) -> dict[str, str]:
    """``HELLO``'s reply as text: a map in RESP3, a flat list of pairs in RESP2."""
    pairs = reply.items() if isinstance(reply, dict) else zip(reply[::2], reply[1::2], strict=True)
    return {_text(key): _text(value) for key, value in pairs}


async def check_server(client: Redis, connection: str) -> None:
    """Raise ``UnsupportedServerError`` if the server of ``connection`` is older than 6.2.

    Connection errors propagate (the caller waits them out and asks again)."""
    try:
        fields = hello_fields(await client.execute_command("HELLO"))  # type: ignore[no-untyped-call]
    except exceptions.ResponseError as error:  # not exceptions.ConnectionError: no answer
        raise UnsupportedServerError(
            f"connection {connection!r} is a Redis older than {_MINIMUM_TEXT} (it answers "
            f"HELLO with {error}), the oldest aiorq_flask supports ({_NEEDS}): "
            "upgrade the server"
        ) from None
    version = fields.get("version", "")
    parsed = parse(version)
    if parsed is not None and parsed < MINIMUM:
        raise UnsupportedServerError(
            f"connection {connection!r} is Redis {version}, older than {_MINIMUM_TEXT}, the "
            f"oldest aiorq_flask supports ({_NEEDS}): upgrade the server"
        )
