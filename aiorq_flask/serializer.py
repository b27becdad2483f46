"""The msgpack serializer for job payloads, meta and results.

Stock rq workers must decode what we enqueue, so the whole format lives in one class that
a worker loads with ``rq worker -S aiorq_flask.serializer.MsgpackSerializer``. Plain values
encode byte-for-byte like ``msgpack.packb(obj, use_bin_type=True)``, so any msgpack reader
understands them. Other common types travel as msgpack ext types, never as pickle: a job
hash must not be a way to run code in a worker.

The ext codes below are a contract with every job already stored in Redis and every worker
still running an older release: never renumber or reuse a code, only add new ones.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Any, NoReturn
from uuid import UUID

import msgpack  # type: ignore[import-untyped]

from .errors import DeserializationError, SerializationError

# Ext codes and their payloads. "us" is an integer count of microseconds.
_TUPLE = 1  # msgpack array of the items
_SET = 2  # msgpack array of the items, in iteration order
_FROZENSET = 3  # msgpack array of the items, in iteration order
_DATETIME = 4  # naive: int64 us since 1970-01-01T00:00 (wall clock), big-endian
_DATETIME_TZ = 5  # aware: int64 wall-clock us as above, then int64 UTC offset in us
_DATE = 6  # int32 proleptic Gregorian ordinal (date.toordinal()), big-endian
_TIME = 7  # naive: int64 us since midnight, big-endian
_TIME_TZ = 8  # aware: int64 us since midnight, then int64 UTC offset in us
_TIMEDELTA = 9  # msgpack array [days, seconds, microseconds]
_DECIMAL = 10  # ASCII str(value): exact, keeps the exponent, NaN and Infinity
_UUID = 11  # the 16 bytes of UUID.bytes

_INT64 = struct.Struct(">q")
_INT64_PAIR = struct.Struct(">qq")
_INT32 = struct.Struct(">i")
_EPOCH = datetime(1970, 1, 1)
_US = timedelta(microseconds=1)

# Caught around packing and unpacking: msgpack's own errors plus what our hooks and the
# stdlib constructors raise on bad input. RecursionError covers cycles through ext types.
_PACK_ERRORS = (TypeError, ValueError, OverflowError, RecursionError)
_UNPACK_ERRORS = (TypeError, ValueError, ArithmeticError, RecursionError, struct.error)


def _pack(obj: Any) -> bytes:
    # Not msgpack.packb: that is a Python wrapper costing about 1 us more per call, and this
    # is on the enqueue path. A Packer per call, since one shared Packer is not reentrant
    # (the default hook packs nested tuples and sets) nor thread-safe.
    packer = msgpack.Packer(use_bin_type=True, strict_types=True, default=_default)
    data: bytes = packer.pack(obj)
    return data


def _unpack(data: bytes) -> Any:
    return msgpack.unpackb(data, raw=False, ext_hook=_ext_hook)


def _time_us(value: time) -> int:
    return ((value.hour * 60 + value.minute) * 60 + value.second) * 1_000_000 + value.microsecond


def _encode_datetime(value: datetime) -> msgpack.ExtType:
    wall_us = (value.replace(tzinfo=None) - _EPOCH) // _US
    offset = value.utcoffset()
    if offset is None:
        return msgpack.ExtType(_DATETIME, _INT64.pack(wall_us))
    return msgpack.ExtType(_DATETIME_TZ, _INT64_PAIR.pack(wall_us, offset // _US))


def _encode_time(value: time) -> msgpack.ExtType:
    offset = value.utcoffset()
    if offset is None:
        return msgpack.ExtType(_TIME, _INT64.pack(_time_us(value)))
    return msgpack.ExtType(_TIME_TZ, _INT64_PAIR.pack(_time_us(value), offset // _US))


def _encode_timedelta(value: timedelta) -> msgpack.ExtType:
    payload = msgpack.packb([value.days, value.seconds, value.microseconds])
    return msgpack.ExtType(_TIMEDELTA, payload)


_ENCODERS: dict[type, Callable[[Any], msgpack.ExtType]] = {
    tuple: lambda value: msgpack.ExtType(_TUPLE, _pack(list(value))),
    set: lambda value: msgpack.ExtType(_SET, _pack(list(value))),
    frozenset: lambda value: msgpack.ExtType(_FROZENSET, _pack(list(value))),
    datetime: _encode_datetime,
    date: lambda value: msgpack.ExtType(_DATE, _INT32.pack(value.toordinal())),
    time: _encode_time,
    timedelta: _encode_timedelta,
    Decimal: lambda value: msgpack.ExtType(_DECIMAL, str(value).encode("ascii")),
    UUID: lambda value: msgpack.ExtType(_UUID, value.bytes),
}

# strict_types sends subclasses of the msgpack-native types here too; they travel as their
# base type. bool cannot be subclassed, so int subclasses are IntEnum and friends.
_BASE_TYPES: tuple[tuple[type, Callable[[Any], Any]], ...] = (
    (str, str.__str__),
    (int, int.__int__),
    (float, float.__float__),
    (bytes, lambda value: bytes(memoryview(value))),
    (dict, dict),
    (list, list),
)


def _default(obj: Any) -> Any:
    encode = _ENCODERS.get(type(obj))
    if encode is not None:
        return encode(obj)
    for base, convert in _BASE_TYPES:
        if isinstance(obj, base):
            return convert(obj)
    for cls, encode in _ENCODERS.items():  # subclasses: a namedtuple, pendulum's DateTime...
        if isinstance(obj, cls):
            return encode(obj)
    raise SerializationError(
        f"cannot serialize object of type {type(obj).__name__!r} with msgpack: "
        "only None, bool, int, float, str, bytes, list, dict with str keys, tuple, set, "
        "frozenset, datetime, date, time, timedelta, Decimal and UUID are supported"
    )


def cannot_serialize(type_name: str, reason: object, cause: BaseException | None) -> NoReturn:
    """Raise the error for a value msgpack cannot write, named by its type: ``dumps`` and
    a big call's parts (``payload``), which packs long arguments itself, word it alike."""
    raise SerializationError(
        f"cannot serialize object of type {type_name!r} with msgpack: {reason}"
    ) from cause


def _cannot_deserialize(error: BaseException) -> NoReturn:
    reason = str(error) or type(error).__name__
    raise DeserializationError(f"cannot deserialize msgpack data: {reason}") from error


_SCALARS = frozenset({str, int, float, bool, bytes, type(None)})


def _check_map_keys(obj: Any) -> None:
    """Refuse map keys that ``unpackb`` would refuse (it only takes str and bytes keys)."""
    if isinstance(obj, dict):
        for key, value in obj.items():
            if type(key) is not str and not isinstance(key, (str, bytes)):
                raise SerializationError(
                    f"cannot serialize dict key {key!r} of type {type(key).__name__!r} "
                    "with msgpack: map keys must be str (or bytes)"
                )
            if type(value) not in _SCALARS:
                _check_map_keys(value)
    elif isinstance(obj, (list, tuple, set, frozenset)):
        for item in obj:
            if type(item) not in _SCALARS:
                _check_map_keys(item)


def _decode_datetime_tz(payload: bytes) -> datetime:
    wall_us, offset_us = _INT64_PAIR.unpack(payload)
    tz = timezone(timedelta(microseconds=offset_us))
    return (_EPOCH + timedelta(microseconds=wall_us)).replace(tzinfo=tz)


def _decode_time(us: int, tz: timezone | None = None) -> time:
    seconds, microsecond = divmod(us, 1_000_000)
    minutes, second = divmod(seconds, 60)
    hour, minute = divmod(minutes, 60)
    return time(hour, minute, second, microsecond, tzinfo=tz)


def _decode_time_tz(payload: bytes) -> time:
    us, offset_us = _INT64_PAIR.unpack(payload)
    return _decode_time(us, timezone(timedelta(microseconds=offset_us)))


_DECODERS: dict[int, Callable[[bytes], Any]] = {
    _TUPLE: lambda payload: tuple(_unpack(payload)),
    _SET: lambda payload: set(_unpack(payload)),
    _FROZENSET: lambda payload: frozenset(_unpack(payload)),
    _DATETIME: lambda payload: _EPOCH + timedelta(microseconds=_INT64.unpack(payload)[0]),
    _DATETIME_TZ: _decode_datetime_tz,
    _DATE: lambda payload: date.fromordinal(_INT32.unpack(payload)[0]),
    _TIME: lambda payload: _decode_time(_INT64.unpack(payload)[0]),
    _TIME_TZ: _decode_time_tz,
    _TIMEDELTA: lambda payload: timedelta(*msgpack.unpackb(payload)),
    _DECIMAL: lambda payload: Decimal(payload.decode("ascii")),
    _UUID: lambda payload: UUID(bytes=payload),
}


def _ext_hook(code: int, payload: bytes) -> Any:
    decode = _DECODERS.get(code)
    if decode is None:
        raise ValueError(f"unknown msgpack ext code {code}")
    return decode(payload)


class MsgpackSerializer:
    """msgpack with ext types; pass the class itself wherever rq takes a serializer.

    Round trips None, bool, int (64-bit), float, str, bytes, list, dict with str (or bytes)
    keys, tuple, set, frozenset, datetime, date, time, timedelta, Decimal and UUID, nested
    in any way. Subclasses come back as their base type: an ``OrderedDict`` as a dict, a
    namedtuple as a tuple, a str or int ``Enum`` member as its value.

    A naive datetime or time stays naive. An aware one keeps its UTC offset as a fixed
    ``datetime.timezone``, not its tzinfo: a ``ZoneInfo("Europe/Paris")`` datetime comes
    back equal, with the same wall clock, in ``timezone(timedelta(hours=1))`` (or +2 in
    summer), so later arithmetic does not follow DST. ``fold`` is not kept. A time whose
    tzinfo gives no offset (any ``ZoneInfo``) is naive to Python and comes back naive.
    """

    @staticmethod
    def dumps(obj: Any) -> bytes:
        """Encode ``obj``; raise ``SerializationError`` (a ``TypeError``) naming the type
        of a value that cannot round-trip, including a dict with keys other than str or
        bytes, which msgpack would write but no reader could load."""
        try:
            data = _pack(obj)
        except SerializationError:
            raise
        except _PACK_ERRORS as exc:
            cannot_serialize(type(obj).__name__, exc, exc)
        if type(obj) not in _SCALARS:
            _check_map_keys(obj)
        return data

    @staticmethod
    def loads_first(data: bytes | memoryview, limit: int) -> tuple[Any, int] | None:
        """The first value encoded in ``data`` and how many bytes it took, or None if
        ``data`` holds only the start of one; raise ``DeserializationError`` as ``loads``.
        ``data`` may be the start of a longer buffer, of ``limit`` bytes: no length in a
        header may claim more than that (as ``loads`` bounds them by its buffer)."""
        unpacker = msgpack.Unpacker(
            raw=False,
            ext_hook=_ext_hook,
            max_buffer_size=max(len(data), 1),
            max_str_len=limit,
            max_bin_len=limit,
            max_array_len=limit,
            max_map_len=limit,
            max_ext_len=limit,
        )
        unpacker.feed(data)
        try:
            return unpacker.unpack(), unpacker.tell()
        except msgpack.OutOfData:
            return None
        except _UNPACK_ERRORS as exc:
            _cannot_deserialize(exc)

    @staticmethod
    def loads(data: bytes) -> Any:
        """Decode bytes written by ``dumps``; raise ``DeserializationError`` (a
        ``ValueError``) with the reason if they are not valid."""
        try:
            return _unpack(data)
        except _UNPACK_ERRORS as exc:
            _cannot_deserialize(exc)
