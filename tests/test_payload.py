"""A job's ``data`` field and description (``aiorq_flask.payload``), small and big.

Small calls are encoded and described exactly as rq does it (spec §3.2, §3.3). Big ones
cost only what is needed. A description is built from about 75 characters of each
argument and reads like repr's, cut as rq cuts it. A big payload that zlib cannot shrink
is stored as plain msgpack, which our reader and rq's both take.
"""

from __future__ import annotations

import enum
import os
import random
import zlib
from collections import OrderedDict
from typing import Any

import msgpack  # type: ignore[import-untyped]
import pytest
import redis
import rq.job
from rq.utils import get_call_string

from aiorq_flask.errors import SerializationError
from aiorq_flask.payload import (
    SMALL_PAYLOAD,
    SplicedPayload,
    decode_data,
    describe_call,
    encode_data,
)
from aiorq_flask.serializer import MsgpackSerializer

MIB = 1 << 20


def packed(func: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bytes:
    return msgpack.packb([func, None, list(args), kwargs], use_bin_type=True)


def text(size: int) -> str:
    """``size`` characters of words that zlib shrinks to about half."""
    rng = random.Random(10)
    words = ["".join(rng.choices("abcdefghij", k=rng.randint(2, 9))) for _ in range(3000)]
    return " ".join(rng.choices(words, k=size // 4))[:size]


def rq_reads(data: bytes) -> tuple[str, tuple[Any, ...], dict[str, Any]]:
    """What stock rq's ``Job`` makes of a ``data`` field."""
    job = rq.job.Job("x", connection=redis.Redis(), serializer=MsgpackSerializer)
    job.restore({b"data": data, b"origin": b"default", b"status": b"queued"})
    return job.func_name, tuple(job.args), dict(job.kwargs)


# -- data ----------------------------------------------------------------------------------------


def test_small_call_data_is_rqs_bytes() -> None:
    data = encode_data("rqtasks.add", (1, 2), {"c": 3})

    assert (
        data
        == b"x\x9c\x9b\xb2\xba\xa8\xb0$\xb18\xbbX/1%\xe5\xc0$F\xa6\xc6\x85\xc9\xcc\x00f\xac\x08}"
    )


@pytest.mark.parametrize(
    "argument",
    [os.urandom(SMALL_PAYLOAD - 100), text(SMALL_PAYLOAD - 100)],
    ids=["random", "text"],
)
def test_payload_up_to_the_small_limit_is_compressed_whole_at_rqs_level(argument: Any) -> None:
    data = encode_data("f", (argument,), {})

    assert data == zlib.compress(packed("f", (argument,), {}))


def test_big_incompressible_payload_is_stored_as_plain_msgpack() -> None:
    blob = os.urandom(2 * MIB)

    assert bytes(encode_data("f", (blob,), {"n": 1})) == packed("f", (blob,), {"n": 1})


def test_big_incompressible_payload_decodes_with_our_reader_and_rqs() -> None:
    blob = os.urandom(2 * MIB)

    data = bytes(encode_data("tests.tasks.echo", (blob,), {"n": 1}))

    assert decode_data(data) == ("tests.tasks.echo", [blob], {"n": 1})
    assert rq_reads(data) == ("tests.tasks.echo", (blob,), {"n": 1})


def test_big_compressible_payload_is_compressed_and_decodes() -> None:
    words = text(2 * MIB)

    data = bytes(encode_data("tests.tasks.echo", (words,), {}))

    assert len(data) < MIB
    assert zlib.decompress(data) == packed("tests.tasks.echo", (words,), {})
    assert decode_data(data) == ("tests.tasks.echo", [words], {})
    assert rq_reads(data) == ("tests.tasks.echo", (words,), {})


# -- big calls, as their parts --------------------------------------------------------------------


BIG_CALLS = {
    "bytes and small arguments": (
        (os.urandom(2 * MIB), 1, "x", [1, (2, 3)], None),
        {"k": os.urandom(100_000), "when": 1.5},
    ),
    "non-ascii str": (("é\U0001f600" * (MIB // 2),), {"s": "ü" * 70_000}),
    "many arguments": (
        (*range(20), os.urandom(2 * MIB)),
        {f"k{i}": {"n": i, "t": (i,)} for i in range(20)},
    ),
    "big list beside big bytes": ((list(range(100_000)), os.urandom(2 * MIB)), {}),
}


@pytest.mark.parametrize("args, kwargs", BIG_CALLS.values(), ids=BIG_CALLS.keys())
def test_a_big_call_is_sent_as_parts_byte_for_byte_what_msgpack_writes(
    args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    payload = encode_data("tests.tasks.echo", args, kwargs)

    assert isinstance(payload, SplicedPayload)
    data = bytes(payload)
    assert len(payload) == len(data)
    plain = data if data[:1] == b"\x94" else zlib.decompress(data)  # text compresses
    assert plain == MsgpackSerializer.dumps(["tests.tasks.echo", None, list(args), kwargs])


def test_a_big_bytes_argument_is_one_of_the_parts_not_a_copy() -> None:
    blob = os.urandom(2 * MIB)

    payload = encode_data("f", (1, blob), {})

    assert isinstance(payload, SplicedPayload)
    assert any(part is blob for part in payload.parts)


def test_a_big_compressible_call_is_compressed_in_parts() -> None:
    words = text(4 * MIB)

    payload = encode_data("tests.tasks.echo", (words,), {"n": 1})

    assert len(payload) < 3 * MIB
    assert zlib.decompress(bytes(payload)) == packed("tests.tasks.echo", (words,), {"n": 1})
    assert rq_reads(bytes(payload)) == ("tests.tasks.echo", (words,), {"n": 1})


@pytest.mark.parametrize(
    "args, kwargs, named",
    [
        (("\ud800" * MIB,), {}, "positional argument 0"),
        ((os.urandom(2 * MIB), object()), {}, "positional argument 1"),
        ((), {"blob": os.urandom(2 * MIB), "bad": object()}, "keyword argument 'bad'"),
    ],
    ids=["lone-surrogate-str", "object-beside-big-bytes", "object-keyword"],
)
def test_a_big_call_that_cannot_be_serialized_names_the_argument(
    args: tuple[Any, ...], kwargs: dict[str, Any], named: str
) -> None:
    with pytest.raises(SerializationError, match=named):
        encode_data("f", args, kwargs)


def test_a_big_call_with_a_keyword_name_msgpack_cannot_read_back_is_refused() -> None:
    with pytest.raises(SerializationError):
        encode_data("f", (os.urandom(2 * MIB),), {1: 2})  # type: ignore[dict-item]


# -- descriptions --------------------------------------------------------------------------------


class Color(str, enum.Enum):
    RED = "red"


loop: list[Any] = [1]
loop.append(loop)

SMALL_VALUES = {
    "ints": (1, 2),
    "quotes": ("it's", 'say "hi"', "both ' and \"", b"it's", b'"', bytearray(b"x'y\"z")),
    "escapes": ("tab\there\n", "é\u200b\U0001f600\ud800", b"\x00\xff\\"),
    "long": ("x" * 100, b"y" * 74, b"y" * 75, b"y" * 76, "'" + "z" * 90 + '"'),
    "containers": ([1, "a"], (1,), (), {"k": [1, (2,)]}, {3}, set(), frozenset({"f"})),
    "long containers": (list(range(40)), {"a": "q" * 80}, tuple("abcdefghijklmnopqrstuvwxyz")),
    "nested": ([[[[["deep" * 20]]]]], {"x": {"y": {"z": b"w" * 100}}}),
    "recursive": (loop,),
    "subclasses": (Color.RED, OrderedDict(a=1), True, None, 1.5),
}


@pytest.mark.parametrize("args", list(SMALL_VALUES.values()), ids=list(SMALL_VALUES))
def test_description_of_small_values_is_rqs_call_string(args: tuple[Any, ...]) -> None:
    kwargs = {"zeta": args[-1], "alpha": args[0]}

    assert describe_call("f", args, kwargs) == get_call_string("f", args, kwargs, max_length=75)


BIG_VALUES = {
    "str": "a" * (8 * MIB) + "'",  # the quote repr picks depends on the whole value
    "str, both quotes": "b" * (8 * MIB) + "'\"",
    "str, escapes": "\n\x00é" * (3 * MIB),
    "bytes": os.urandom(8 * MIB),
    "bytes, one quote": b"c" * (8 * MIB) + b"'",
    "bytearray": bytearray(b"d" * (8 * MIB) + b"'"),
    "list": list(range(MIB)),
    "dict": {"key": "v" * (8 * MIB), "other": 1},
    "tuple": (b"e" * (8 * MIB),),
    "set": set(range(MIB)),
    "frozenset": frozenset(str(i) for i in range(100_000)),
    "nested": [[{"deep": ["f" * (8 * MIB)]}]],
}


@pytest.mark.parametrize("value", list(BIG_VALUES.values()), ids=list(BIG_VALUES))
def test_description_of_a_big_value_is_75_characters_of_its_repr(value: Any) -> None:
    description = describe_call("f", (value,), {"big": value})

    shown = repr(value)[:75] + "..."
    assert description == f"f({shown}, big={shown})"


def test_description_of_a_big_container_reprs_only_its_first_items() -> None:
    reprs = 0

    class Item:
        def __repr__(self) -> str:
            nonlocal reprs
            reprs += 1
            return "Item()"

    items = [Item() for _ in range(100_000)]

    description = describe_call("f", (items,), {})
    made = reprs

    assert description == f"f({repr(items)[:75]}...)"
    assert made < 20
