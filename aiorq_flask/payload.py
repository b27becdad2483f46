"""The ``data`` field of a job hash: the call a worker makes, and its description.

``data = zlib(msgpack([func_path, None, args, kwargs]))`` (spec §3.2); rq's readers also
take the msgpack bytes uncompressed. ``description`` is rq's call text (spec §3.3).

Both are built on the caller's event loop, so what they cost follows what they need, not
the size of the arguments:

- A call whose str and bytes arguments alone make a ``BIG_DATA`` payload is packed as its
  parts (``SplicedPayload``): a long str or bytes argument is one of them, sent to Redis
  from its own buffer, never copied into a payload. A 50 MiB copy holds the GIL for tens
  of milliseconds even in a thread, and so stalls the caller's event loop.
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
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import msgpack  # type: ignore[import-untyped]

from .errors import DeserializationError, SerializationError
from .serializer import MsgpackSerializer, cannot_serialize

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
# A str or bytes argument this long is spliced into a big payload, not copied. 64 KiB and
# up also means msgpack's 32-bit headers (str 32, bin 32), the ones packb writes for it.
SPLICE_AT = 1 << 16
ENCODE_PIECE = 1 << 20  # a spliced str is UTF-8 encoded this many characters at a time
# msgpack's type bytes that a big call's parts are made with (and ``_call_reader`` reads):
STR32, BIN32 = b"\xdb", b"\xc6"  # str 32 and bin 32, each then a 4-byte length
ARRAY_OF_4 = b"\x94"  # [func, instance, args, kwargs]


class SplicedPayload:
    """A big ``data`` field as the buffers it is made of, in order; ``bytes()`` joins them.

    What it holds is byte for byte what ``MsgpackSerializer.dumps`` (and zlib, if it pays)
    would have written: a reader cannot tell. The buffers are the caller's own str-encoding
    pieces and bytes objects, so the caller must not change a bytearray argument until the
    enqueue returns.
    """

    __slots__ = ("parts", "size")

    def __init__(self, parts: Sequence[bytes]) -> None:
        self.parts = tuple(part for part in parts if part)
        self.size = sum(map(len, self.parts))

    def __len__(self) -> int:
        return self.size

    def __bytes__(self) -> bytes:
        return b"".join(self.parts)

    def __repr__(self) -> str:
        return f"<SplicedPayload {self.size:,} bytes in {len(self.parts)} parts>"


Payload = bytes | SplicedPayload
Call = tuple[str, list[Any], dict[str, Any]]  # what a data field holds: function, arguments


def encode_data(func_name: str, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Payload:
    """``data`` = zlib(msgpack([func, None, args, kwargs])), or the msgpack bytes alone if
    they are big and do not compress; names the argument at fault. A call whose str and
    bytes arguments are big (``looks_big``) comes back as a ``SplicedPayload``."""
    if not looks_big(args, kwargs):
        return compress_payload(pack_call(func_name, args, kwargs))
    try:
        parts = list(_call_parts(func_name, args, kwargs))
    except SerializationError as error:
        raise _argument_error(func_name, args, kwargs) or error from None
    if not _compresses(parts):
        return SplicedPayload(parts)
    compressor = zlib.compressobj(BIG_PAYLOAD_LEVEL)
    return SplicedPayload([*map(compressor.compress, parts), compressor.flush()])


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


def _call_parts(func_name: str, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Iterator[bytes]:
    """``pack_call``'s bytes, in parts: each long str or bytes argument (``SPLICE_AT``) is
    its header then the bytes object itself, or its UTF-8 in ``ENCODE_PIECE`` pieces;
    everything else goes through the serializer, which checks it as a whole call would."""
    headers = msgpack.Packer()
    yield ARRAY_OF_4 + MsgpackSerializer.dumps(func_name) + MsgpackSerializer.dumps(None)
    yield headers.pack_array_header(len(args))
    for value in args:
        yield from _value_parts(value)
    MsgpackSerializer.dumps(dict.fromkeys(kwargs))  # keys msgpack can write and read back
    yield headers.pack_map_header(len(kwargs))
    for key, value in kwargs.items():
        yield MsgpackSerializer.dumps(key)
        yield from _value_parts(value)


def _value_parts(value: Any) -> Iterator[bytes]:
    kind = type(value)
    if kind is bytes and len(value) >= SPLICE_AT:
        yield BIN32 + _length32(len(value), "bytes")
        yield value
    elif kind is str and len(value) >= SPLICE_AT:
        try:
            pieces = [
                value[at : at + ENCODE_PIECE].encode() for at in range(0, len(value), ENCODE_PIECE)
            ]
        except UnicodeEncodeError as error:
            cannot_serialize(kind.__name__, error, None)
        yield STR32 + _length32(sum(map(len, pieces)), "str")
        yield from pieces
    else:
        yield MsgpackSerializer.dumps(value)


def _length32(size: int, kind: str) -> bytes:
    if size >= 1 << 32:  # msgpack's own words for it
        cannot_serialize(kind, f"{kind} object is too large", None)
    return size.to_bytes(4, "big")


def compress_payload(payload: bytes) -> bytes:
    """The ``data`` field for ``pack_call``'s bytes: zlib, unless they are big and samples
    show they do not compress.

    zlib releases the GIL while it compresses, so this can run in a thread
    (``asyncio.to_thread``) while the loop serves on; ``pack_call`` holds the GIL.
    """
    if len(payload) <= SMALL_PAYLOAD:
        return zlib.compress(payload)
    if not _compresses([payload]):
        # Stored as is. The msgpack array of 4 starts with 0x94, which no zlib stream can
        # start with (its low nibble would have to be 8), so readers tell the two apart.
        return payload
    return zlib.compress(payload, BIG_PAYLOAD_LEVEL)


def _compresses(parts: Sequence[bytes]) -> bool:
    """Whether slices spread over the payload made of ``parts`` shrink to
    ``COMPRESS_IF_RATIO`` or less."""
    size = sum(map(len, parts))
    step = max(1, (size - SAMPLE_SLICE) // (SAMPLE_SLICES - 1))
    sampled = packed = 0
    for start in range(0, min(SAMPLE_SLICES * step, size), step):
        piece = _slice(parts, start, SAMPLE_SLICE)
        sampled += len(piece)
        packed += len(zlib.compress(piece, BIG_PAYLOAD_LEVEL))
    return packed <= sampled * COMPRESS_IF_RATIO


def _slice(parts: Sequence[bytes], start: int, size: int) -> bytes:
    """``size`` bytes (fewer at the end) from ``start`` of the payload made of ``parts``."""
    pieces: list[memoryview] = []
    for part in parts:
        if start >= len(part):
            start -= len(part)
            continue
        pieces.append(memoryview(part)[start : start + size])
        size -= len(pieces[-1])
        start = 0
        if size <= 0:
            break
    return b"".join(pieces)


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


def decode_data(data: bytes) -> Call:
    try:
        payload = zlib.decompress(data)
    except zlib.error:
        payload = data  # rq accepts uncompressed serializer bytes too
    return decode_payload(payload)


def decode_payload(payload: bytes) -> Call:
    """``decode_data`` of a field's msgpack bytes, inflated if they were compressed."""
    try:
        call = MsgpackSerializer.loads(payload)
    except DeserializationError as error:
        raise DeserializationError(f"job data cannot be decoded with msgpack: {error}") from None
    return checked_call(call)


def checked_call(call: Any) -> Call:
    """``(func_name, args, kwargs)`` from a decoded ``data`` field, as rq reads it (a list
    or tuple of four, the arguments as None, a list or a tuple), or a
    ``DeserializationError`` that says what is wrong with it."""
    try:
        func_name, _instance, args, kwargs = call
    except (TypeError, ValueError) as error:
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
