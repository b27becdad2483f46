"""The ``data`` field of a job hash: the call a worker makes, and its description.

``data = zlib(msgpack([func_path, None, args, kwargs]))`` (spec §3.2); rq's readers also
take the msgpack bytes uncompressed. ``description`` is rq's call text (spec §3.3).

Both are built on the caller's event loop, so what they cost follows what they need, not
the size of the arguments:

- A payload of up to ``SMALL_PAYLOAD`` bytes is compressed whole at zlib's default level:
  byte for byte what rq writes. A bigger one is compressed only if samples of it shrink
  to ``COMPRESS_IF_RATIO`` of their size or less, and then at level 1. Random or already
  compressed bytes (images, archives) are stored as plain msgpack, which every reader
  takes, instead of spending seconds of zlib on them.
- A description keeps 75 characters of each argument's repr, so only about that much is
  built: a str or bytes is cut before it is repr'd, a list, tuple, dict or set is walked
  only until 75 characters are known. The text is repr's, cut as rq cuts it.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from typing import Any

from .errors import DeserializationError, SerializationError
from .serializer import MsgpackSerializer

SMALL_PAYLOAD = 1 << 20  # bytes of msgpack compressed whole, at rq's level, without a look
SAMPLE_SLICES = 4  # a bigger payload is judged by this many slices, spread over it
SAMPLE_SLICE = 64 << 10  # twice zlib's 32 KiB window: a slice shows what zlib can find
# Data that zlib shrinks by less than a quarter is already compressed or encoded binary
# (base64 of random bytes lands at about 0.77): not worth tens of ms of CPU per MiB.
COMPRESS_IF_RATIO = 0.75
BIG_PAYLOAD_LEVEL = 1  # zlib level for big payloads: 2-3 times level 6's speed
DESCRIPTION_CUT = 75  # rq's max_length for each argument's repr in a description
# A ``data`` field this big travels beside the Lua scripts, never through them: copied
# through Lua it holds Redis for milliseconds per MiB, and on the connection every caller
# shares, every other command would wait behind it.
BIG_DATA = 1 << 20


def encode_data(func_name: str, args: Sequence[Any], kwargs: Mapping[str, Any]) -> bytes:
    """``data`` = zlib(msgpack([func, None, args, kwargs])), or the msgpack bytes alone if
    they are big and do not compress; names the argument at fault."""
    return compress_payload(pack_call(func_name, args, kwargs))


def looks_big(args: Sequence[Any], kwargs: Mapping[str, Any]) -> bool:
    """Whether the call's own text and bytes arguments alone make a ``BIG_DATA`` payload:
    worth building in a thread, off the caller's event loop."""
    size = 0
    for value in (*args, *kwargs.values()):
        if isinstance(value, (str, bytes, bytearray, memoryview)):
            size += len(value)
    return size > BIG_DATA


def pack_call(func_name: str, args: Sequence[Any], kwargs: Mapping[str, Any]) -> bytes:
    """msgpack([func, None, args, kwargs]); a ``SerializationError`` names the argument at
    fault."""
    try:
        return MsgpackSerializer.dumps([func_name, None, list(args), kwargs])
    except SerializationError as error:
        raise _argument_error(func_name, args, kwargs) or error from None


def compress_payload(payload: bytes) -> bytes:
    """The ``data`` field for ``pack_call``'s bytes: zlib, unless they are big and samples
    show they do not compress.

    zlib releases the GIL while it compresses, so this can run in a thread
    (``asyncio.to_thread``) while the loop serves on; ``pack_call`` holds the GIL.
    """
    if len(payload) <= SMALL_PAYLOAD:
        return zlib.compress(payload)
    if not _compresses(payload):
        # Stored as is. The msgpack array of 4 starts with 0x94, which no zlib stream can
        # start with (its low nibble would have to be 8), so readers tell the two apart.
        return payload
    return zlib.compress(payload, BIG_PAYLOAD_LEVEL)


def _compresses(payload: bytes) -> bool:
    """Whether slices spread over ``payload`` shrink to ``COMPRESS_IF_RATIO`` or less."""
    view = memoryview(payload)
    step = (len(payload) - SAMPLE_SLICE) // (SAMPLE_SLICES - 1)
    sampled = packed = 0
    for start in range(0, SAMPLE_SLICES * step, step):
        piece = view[start : start + SAMPLE_SLICE]
        sampled += len(piece)
        packed += len(zlib.compress(piece, BIG_PAYLOAD_LEVEL))
    return packed <= sampled * COMPRESS_IF_RATIO


def _argument_error(
    func_name: str, args: Sequence[Any], kwargs: Mapping[str, Any]
) -> SerializationError | None:
    named: list[tuple[str, Any]] = [(f"positional argument {i}", v) for i, v in enumerate(args)]
    named += [(f"keyword argument {k!r}", v) for k, v in kwargs.items()]
    for name, value in named:
        try:
            MsgpackSerializer.dumps(value)
        except SerializationError as error:
            return SerializationError(f"{func_name}: {name} cannot be serialized: {error}")
    return None


def decode_data(data: bytes) -> tuple[str, list[Any], dict[str, Any]]:
    try:
        payload = zlib.decompress(data)
    except zlib.error:
        payload = data  # rq accepts uncompressed serializer bytes too
    try:
        func_name, _instance, args, kwargs = MsgpackSerializer.loads(payload)
    except (DeserializationError, TypeError, ValueError) as error:
        raise DeserializationError(f"job data cannot be decoded with msgpack: {error}") from None
    if not isinstance(func_name, str):
        raise DeserializationError(f"job data names no function: {func_name!r}")
    if args is None:
        args = []
    if kwargs is None:
        kwargs = {}
    if not isinstance(args, (list, tuple)):  # stock rq packs them as a tuple
        raise DeserializationError(f"job data holds arguments that are not a list: {args!r:.80}")
    if not isinstance(kwargs, dict) or not all(isinstance(k, str) for k in kwargs):
        raise DeserializationError(
            f"job data holds keyword arguments that are not a map of names: {kwargs!r:.80}"
        )
    return func_name, list(args), kwargs


def describe_call(func_name: str, args: Sequence[Any], kwargs: Mapping[str, Any]) -> str:
    """rq's default description: the call as text, each repr cut at 75 characters."""
    parts = [_short_repr(a) for a in args]
    parts += sorted(f"{k}={_short_repr(v)}" for k, v in kwargs.items())
    return f"{func_name}({', '.join(parts)})"


def _short_repr(value: Any) -> str:
    """``repr(value)``, cut at 75 characters plus ``...`` if longer (rq's cut)."""
    text = _repr_head(value, DESCRIPTION_CUT, set())
    return text if len(text) <= DESCRIPTION_CUT else text[:DESCRIPTION_CUT] + "..."


# -- repr, up to a length ------------------------------------------------------------------------
#
# ``_repr_head(value, limit)`` is ``repr(value)`` if that is at most ``limit`` characters
# long, else a prefix of it longer than ``limit``. Exact types only: a subclass may have a
# repr of its own, and gets it whole (so do scalars, whose reprs are short anyway).

_EMPTY: dict[type, str] = {
    list: "[]",
    tuple: "()",
    dict: "{}",
    set: "set()",
    frozenset: "frozenset()",
}
_BRACKETS: dict[type, tuple[str, str]] = {
    list: ("[", "]"),
    tuple: ("(", ")"),
    dict: ("{", "}"),
    set: ("{", "}"),
    frozenset: ("frozenset({", "})"),
}
_RECURSION: dict[type, str] = {
    list: "[...]",
    tuple: "(...)",
    dict: "{...}",
    set: "set(...)",
    frozenset: "frozenset(...)",
}


def _repr_head(value: Any, limit: int, active: set[int]) -> str:
    kind = type(value)
    if kind is str or kind is bytes or kind is bytearray:
        return _text_head(value, limit)
    if kind in _BRACKETS:
        return _container_head(value, limit, active)
    return repr(value)


def _text_head(value: str | bytes | bytearray, limit: int) -> str:
    """The repr of a str, bytes or bytearray, made from only as much of it as shows.

    Each character gives at least one character of repr, so ``limit + 1`` characters are
    enough. Which quote repr uses depends on the whole value (``"`` if it holds ``'`` and
    no ``"``), so the quotes found in the rest are put after the slice, out of the way.
    """
    keep = max(limit, 0) + 1
    if len(value) <= keep:
        return repr(value)
    if isinstance(value, str):
        text = value[:keep]
        text += "".join(quote for quote in ("'", '"') if quote not in text and quote in value)
        return repr(text)[: keep + 1]
    data = value[:keep]
    data += b"".join(quote for quote in (b"'", b'"') if quote not in data and quote in value)
    return repr(data)[: keep + 1]


def _container_head(value: Any, limit: int, active: set[int]) -> str:
    """The repr of a list, tuple, dict, set or frozenset, walked until ``limit`` is passed."""
    kind = type(value)
    if not value:
        return _EMPTY[kind]
    if id(value) in active:  # a container inside itself: repr's marker
        return _RECURSION[kind]
    opening, closing = _BRACKETS[kind]
    parts = [opening]
    length = len(opening)

    def add(item: Any) -> int:
        text = _repr_head(item, limit - length, active)
        parts.append(text)
        return length + len(text)

    active.add(id(value))
    try:
        for index, item in enumerate(value.items() if kind is dict else value):
            if index:
                parts.append(", ")
                length += 2
            if length > limit:
                return "".join(parts)
            if kind is dict:
                length = add(item[0])
                if length > limit:
                    return "".join(parts)
                parts.append(": ")
                length += 2
                if length > limit:
                    return "".join(parts)
                item = item[1]
            length = add(item)
            if length > limit:
                return "".join(parts)
    finally:
        active.discard(id(value))
    if kind is tuple and len(value) == 1:
        parts.append(",")
    parts.append(closing)
    return "".join(parts)
