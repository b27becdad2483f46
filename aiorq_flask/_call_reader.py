"""A big ``data`` field decoded as it is read, so its long arguments are copied once at most.

msgpack's decoder copies each str and bytes it builds, holding the GIL, and so does
joining what zlib or a socket gave in pieces: for a 50 MiB argument each copy is tens of
milliseconds in which the worker's event loop, and every job running on it, stands
still, even when decoding runs in a thread. Here the field is walked one top-level value
at a time over a ``Source``:

- a long bytes argument of a plain field is read straight into the bytes object the job
  receives (a socket fills it with the GIL released: no copy at all);
- a long str is decoded once, from the bytes as they came;
- a compressed field is inflated in 1 MiB pieces (zlib releases the GIL) and walked over
  them, so only the long value itself is joined;
- everything else is small and goes through the serializer as usual.

A field of another shape (stock rq packs a tuple) is decoded whole by ``decode_data``.
"""

from __future__ import annotations

import codecs
import zlib
from collections import deque
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

from .errors import DeserializationError
from .payload import (
    ARRAY_OF_4,
    BIN32,
    SPLICE_AT,
    STR32,
    Call,
    checked_call,
    decode_data,
    decode_payload,
)
from .serializer import MsgpackSerializer

PIECE = 1 << 20  # bytes of a field inflated (or read over TLS) at a time
FIRST_PEEK = 1 << 8  # bytes first looked at to decode a small value
PEEK = 1 << 16  # the most looked at; a bigger value spills the rest of the field
_LONG = {BIN32[0]: "bytes", STR32[0]: "str"}
_ARRAYS = {0xDC: 2, 0xDD: 4}  # array 16 and 32: bytes of length after the type
_MAPS = {0xDE: 2, 0xDF: 4}
_NIL = 0xC0
_TRUNCATED = "it ends in the middle of a value"


class Source(Protocol):
    """The unread rest of one field."""

    @property
    def remaining(self) -> int: ...

    def peek(self, size: int) -> bytes | memoryview:
        """Up to ``size`` bytes ahead, not consumed: all of them unless fewer remain.
        A ``size`` past ``PEEK`` may read the rest of the field into memory."""
        ...

    def take(self, size: int) -> bytes:
        """The next ``size`` bytes, consumed, as a bytes object of their own."""
        ...

    def take_str(self, size: int) -> str:
        """The next ``size`` bytes, consumed, decoded as UTF-8."""
        ...

    def take_pieces(self, size: int) -> Sequence[bytes | memoryview]:
        """The next ``size`` bytes, consumed, in pieces (never joined nor copied)."""
        ...


class PiecesSource:
    """A field in memory, in pieces."""

    def __init__(self, pieces: Iterable[bytes | memoryview]) -> None:
        self._pieces = deque(memoryview(piece) for piece in pieces if piece)
        self._left = sum(map(len, self._pieces))

    @property
    def remaining(self) -> int:
        return self._left

    def peek(self, size: int) -> bytes | memoryview:
        first = self._pieces[0] if self._pieces else memoryview(b"")
        if len(first) >= min(size, self._left):
            return first[:size]
        window = bytearray()
        for piece in self._pieces:
            window += piece[: size - len(window)]
            if len(window) >= size:
                break
        return bytes(window)

    def take(self, size: int) -> bytes:
        return b"".join(self._views(size))

    def take_str(self, size: int) -> str:
        views = self._views(size)
        if len(views) == 1:
            return str(views[0], "utf-8")
        decoder = codecs.getincrementaldecoder("utf-8")()
        text = [decoder.decode(view) for view in views]
        text.append(decoder.decode(b"", final=True))
        return "".join(text)

    def take_pieces(self, size: int) -> list[memoryview]:
        return self._views(size)

    def _views(self, size: int) -> list[memoryview]:
        """The next ``size`` bytes as views of the pieces, consumed."""
        if size > self._left:
            raise DeserializationError(_TRUNCATED)
        self._left -= size
        views = []
        while size:
            piece = self._pieces[0]
            views.append(piece[:size])
            size -= len(views[-1])
            if len(piece) > len(views[-1]):
                self._pieces[0] = piece[len(views[-1]) :]
            else:
                self._pieces.popleft()
        return views


def read_call(source: Source) -> Call:
    """``decode_data`` of the field ``source`` holds, all of it consumed."""
    if _walkable(source):
        return _walked(source)
    pieces = source.take_pieces(source.remaining)
    inflated = _inflated(pieces)
    if inflated is None:  # not compressed: a shape we do not walk, or not msgpack at all
        return decode_data(b"".join(pieces))
    if _walkable(inflated):
        return _walked(inflated)
    return decode_payload(inflated.take(inflated.remaining))


def _walkable(source: Source) -> bool:
    return source.remaining > 0 and source.peek(1)[0] == ARRAY_OF_4[0]


def _inflated(pieces: Sequence[bytes | memoryview]) -> PiecesSource | None:
    """zlib's stream in ``pieces``, inflated in pieces of up to ``PIECE`` bytes; None if
    they are not one whole zlib stream."""
    inflater = zlib.decompressobj()
    inflated: list[bytes] = []
    try:
        for piece in pieces:
            for at in range(0, len(piece), PIECE // 4):
                tail = memoryview(piece)[at : at + PIECE // 4]
                while tail:
                    inflated.append(inflater.decompress(tail, PIECE))
                    tail = memoryview(inflater.unconsumed_tail)
        inflated.append(inflater.flush())
    except zlib.error:
        return None
    if not inflater.eof or inflater.unused_data:
        return None
    return PiecesSource(inflated)


def _walked(source: Source) -> Call:
    try:
        source.take(1)
        func_name = _small(source)
        instance = _small(source)
        args = _array(source)
        kwargs = _map(source)
        if source.remaining:
            raise DeserializationError("it holds more than one value")
    except DeserializationError as error:
        raise DeserializationError(f"job data cannot be decoded with msgpack: {error}") from None
    return checked_call([func_name, instance, args, kwargs])


def _array(source: Source) -> Any:
    """The positional arguments, each read by ``_value``; anything but an array (nil, or
    not what rq writes) as it decodes, for ``checked_call`` to judge."""
    count = _count(source, _ARRAYS, 0x90)
    return _small(source) if count is None else [_value(source) for _ in range(count)]


def _map(source: Source) -> Any:
    """The keyword arguments, each value read by ``_value``; anything but a map as it
    decodes."""
    count = _count(source, _MAPS, 0x80)
    if count is None:
        return _small(source)
    kwargs = {}
    for _ in range(count):
        name = _small(source)
        if not isinstance(name, str):
            raise DeserializationError(f"a keyword argument's name is not a str: {name!r:.80}")
        kwargs[name] = _value(source)
    return kwargs


def _count(source: Source, sized: dict[int, int], fixed: int) -> int | None:
    """The item count of the array or map header ahead (consumed), or None (nothing
    consumed) for a value of another kind."""
    kind = source.peek(1)[0] if source.remaining else _NIL
    if kind in sized:
        return int.from_bytes(source.take(1 + sized[kind])[1:], "big")
    if fixed <= kind <= fixed + 0x0F:
        source.take(1)
        return kind - fixed
    return None


def _value(source: Source) -> Any:
    """One argument: a long bytes or str taken whole into its own object, else ``_small``."""
    head = source.peek(5)
    what = _LONG.get(head[0]) if len(head) == 5 else None
    size = int.from_bytes(head[1:5], "big") if what else 0
    if size < SPLICE_AT:
        return _small(source)
    source.take(5)
    if size > source.remaining:
        raise DeserializationError(_TRUNCATED)
    if what == "bytes":
        return source.take(size)
    try:
        return source.take_str(size)
    except UnicodeDecodeError as error:
        raise DeserializationError(f"a str argument is not UTF-8: {error}") from None


def _small(source: Source) -> Any:
    """One value, found in a window ahead that grows up to ``PEEK`` (past that, the rest of
    the field is read into memory): most are a few bytes."""
    size = FIRST_PEEK
    while True:
        window = source.peek(size)
        found = MsgpackSerializer.loads_first(window, source.remaining)
        if found is not None:
            value, used = found
            source.take(used)
            return value
        if len(window) >= source.remaining:
            raise DeserializationError(_TRUNCATED)
        size = size * 16 if size < PEEK else source.remaining
