"""A big ``data`` field decoded as it is read (``aiorq_flask._call_reader``).

Whatever pieces the field arrives in, the reader must give what ``decode_data`` gives for
the whole field, for every shape a writer may use (ours, spliced or compressed; stock rq's
tuple), and fail with a ``DeserializationError`` that says what is wrong where
``decode_data`` would fail. The socket side of it runs in the worker tests, over TCP, TLS
and a unix socket (``test_worker``, ``test_deployments``).
"""

from __future__ import annotations

import os
import random
import zlib
from typing import Any

import msgpack  # type: ignore[import-untyped]
import pytest

from aiorq_flask._call_reader import PiecesSource, read_call
from aiorq_flask.errors import DeserializationError
from aiorq_flask.payload import decode_data, encode_data
from aiorq_flask.serializer import MsgpackSerializer

MIB = 1 << 20
BIN32 = b"\xc6" + (2 * MIB).to_bytes(4, "big")


def in_pieces(data: bytes, count: int, seed: int = 0) -> list[bytes]:
    """``data`` cut at ``count`` random places."""
    cuts = sorted(random.Random(seed).sample(range(1, len(data)), count))
    return [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]


def words(size: int) -> str:
    rng = random.Random(size)
    return " ".join(rng.choice(["queue", "job", "worker", "redis"]) for _ in range(size // 6))


FIELDS = {
    "big bytes": encode_data("f", (os.urandom(2 * MIB), 1, "x"), {"k": os.urandom(70_000)}),
    "non-ascii str": encode_data("f", ("é\U0001f600" * MIB,), {}),
    "compressed text": encode_data("f", (words(3 * MIB),), {"n": [1, (2,)]}),
    "big list": encode_data("f", (list(range(100_000)), os.urandom(2 * MIB)), {}),
    "no arguments": encode_data("f", (), {"blob": os.urandom(2 * MIB)}),
    "stock rq's tuple": zlib.compress(
        MsgpackSerializer.dumps(("f", None, (os.urandom(2 * MIB),), {"a": 1}))
    ),
    "uncompressed tuple": MsgpackSerializer.dumps(("f", None, (b"x" * MIB,), {})),
    "nil arguments": msgpack.packb(["f", None, None, None]),
}


@pytest.mark.parametrize("field", FIELDS.values(), ids=FIELDS.keys())
@pytest.mark.parametrize("cuts", [0, 1, 40])
def test_the_reader_decodes_what_decode_data_does_in_any_pieces(field: Any, cuts: int) -> None:
    data = bytes(field)
    pieces = in_pieces(data, min(cuts, len(data) - 1))

    assert read_call(PiecesSource(pieces)) == decode_data(data)


def call(*parts: bytes) -> bytes:
    return b"\x94" + b"".join(parts)


BAD_FIELDS = {
    "empty": (b"", "cannot be decoded"),
    "never-used byte": (call(b"\xc1" * MIB), "cannot be decoded"),
    "truncated": (call(b"\xa1f\xc0\x91", BIN32, bytes(MIB)), "ends in the middle of a value"),
    "trailing bytes": (call(b"\xa1f\xc0\x90\x80\x01"), "holds more than one value"),
    "keyword name not a str": (call(b"\xa1f\xc0\x90\x81\x01", BIN32, bytes(2 * MIB)), "name"),
    "str not UTF-8": (
        call(b"\xa1f\xc0\x91\xdb", (2 * MIB).to_bytes(4, "big"), b"\xff" * 2 * MIB),
        "not UTF-8",
    ),
    "array longer than the field": (call(b"\xa1f\xc0\xdd\xff\xff\xff\xff"), "cannot be decoded"),
    "no function name": (call(b"\x01\xc0\x90\x80"), "names no function"),
    "compressed, not msgpack": (zlib.compress(os.urandom(MIB), 0), "cannot be decoded"),
    "truncated zlib": (zlib.compress(msgpack.packb(["f", None, [], {}]))[:-3], "cannot be decoded"),
}


@pytest.mark.parametrize("field, says", BAD_FIELDS.values(), ids=BAD_FIELDS.keys())
def test_a_field_the_reader_cannot_decode_fails_saying_why(field: bytes, says: str) -> None:
    with pytest.raises(DeserializationError, match=says):
        read_call(PiecesSource(in_pieces(field, min(3, max(len(field) - 1, 0)))))
    with pytest.raises(DeserializationError):
        decode_data(field)
