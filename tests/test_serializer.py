"""MsgpackSerializer: the payload format of spec section 6, one behaviour per test, no Redis."""

from __future__ import annotations

import enum
from collections import OrderedDict, namedtuple
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgpack  # type: ignore[import-untyped]
import pytest
from rq.serializers import resolve_serializer

from aiorq_flask.errors import DeserializationError, SerializationError
from aiorq_flask.serializer import MsgpackSerializer

dumps = MsgpackSerializer.dumps
loads = MsgpackSerializer.loads

PLUS_0530 = timezone(timedelta(hours=5, minutes=30))
MINUS_0800 = timezone(timedelta(hours=-8))


def typed(value: Any) -> Any:
    """``value`` with every node tagged by its exact type (and UTC offset, Decimal digits),
    so ``1 == 1.0 == Decimal(1)``, ``[1] == (1,)``-style mix-ups and lost offsets all show."""
    if isinstance(value, dict):
        return dict, tuple((typed(k), typed(v)) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return type(value), tuple(typed(v) for v in value)
    if isinstance(value, (set, frozenset)):
        return type(value), frozenset(typed(v) for v in value)
    if isinstance(value, (datetime, time)):
        return type(value), value, value.utcoffset()
    if isinstance(value, Decimal):
        return Decimal, str(value)
    return type(value), value


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except ZoneInfoNotFoundError:
        pytest.skip(f"no tz database entry for {name}")


class Color(str, enum.Enum):
    RED = "red"


class Level(enum.IntEnum):
    HIGH = 3


class Ratio(float):
    pass


class Blob(bytes):
    pass


class Items(list):  # type: ignore[type-arg]
    pass


Point = namedtuple("Point", "x y")


class Foo:
    pass


# -- plain values: byte-identical to plain msgpack -----------------------------------------

PLAIN_VALUES = [
    None,
    True,
    False,
    0,
    -1,
    2**63 - 1,
    -(2**63),
    2**64 - 1,
    1.5,
    float("inf"),
    "",
    "héllo",
    b"",
    b"\x00\xff",
    [],
    [1, "x", None],
    {},
    {"a": 1, "b": [True, 2.5]},
    ["mod.func", None, [1, "x"], {"a": 1}],
]


@pytest.mark.parametrize("value", PLAIN_VALUES, ids=repr)
def test_plain_values_encode_like_plain_msgpack(value: Any) -> None:
    assert dumps(value) == msgpack.packb(value, use_bin_type=True)


@pytest.mark.parametrize("value", PLAIN_VALUES, ids=repr)
def test_plain_values_round_trip(value: Any) -> None:
    assert typed(loads(dumps(value))) == typed(value)


def test_spec_example_encodes_to_the_spec_bytes() -> None:
    data = dumps(["rqtasks.add", None, [1, 2], {"c": 3}])

    assert data == b"\x94\xabrqtasks.add\xc0\x92\x01\x02\x81\xa1c\x03"


def test_plain_msgpack_bytes_decode() -> None:
    assert loads(b"\x94\xabrqtasks.add\xc0\x92\x01\x02\x81\xa1c\x03") == [
        "rqtasks.add",
        None,
        [1, 2],
        {"c": 3},
    ]


def test_bytes_and_str_stay_distinct() -> None:
    assert typed(loads(dumps(["x", b"x"]))) == typed(["x", b"x"])


# -- ext types: round trips -----------------------------------------------------------------

EXT_VALUES = {
    "tuple": (1, "a", None),
    "empty tuple": (),
    "nested tuple": (1, (2, (3,))),
    "set": {1, 2, 3},
    "empty set": set(),
    "frozenset": frozenset({"a", "b"}),
    "set of tuples": {(1, 2), (3, "x")},
    "set of frozensets": {frozenset({1}), frozenset()},
    "naive datetime": datetime(2024, 2, 29, 13, 45, 7, 123456),
    "naive datetime before 1970": datetime(1900, 1, 1, 0, 0, 0, 1),
    "datetime.min": datetime.min,
    "datetime.max": datetime.max,
    "utc datetime": datetime(2024, 1, 1, 12, 0, tzinfo=timezone.utc),
    "+05:30 datetime": datetime(2024, 1, 1, 12, 0, 0, 5, tzinfo=PLUS_0530),
    "-08:00 datetime.max": datetime.max.replace(tzinfo=MINUS_0800),
    "datetime.min in +05:30": datetime.min.replace(tzinfo=PLUS_0530),
    "sub-second offset": datetime(2024, 1, 1, tzinfo=timezone(timedelta(microseconds=7))),
    "date": date(2024, 2, 29),
    "date.min": date.min,
    "date.max": date.max,
    "naive time": time(23, 59, 59, 999999),
    "midnight": time(0),
    "aware time": time(8, 30, tzinfo=PLUS_0530),
    "timedelta": timedelta(hours=1, microseconds=5),
    "negative timedelta": timedelta(days=-3, seconds=12),
    "timedelta.max": timedelta.max,
    "timedelta.min": timedelta.min,
    "decimal": Decimal("1.50"),
    "negative zero decimal": Decimal("-0.000"),
    "decimal exponent": Decimal("1E+30"),
    "decimal infinity": Decimal("-Infinity"),
    "long decimal": Decimal("3.14159265358979323846264338327950288419716939937510"),
    "uuid": UUID("12345678-1234-5678-1234-567812345678"),
    "dict of datetimes": {
        "start": datetime(2024, 1, 1),
        "end": datetime(2024, 1, 2, tzinfo=timezone.utc),
    },
    "list of tuples": [(1, 2), ("a", (b"b",))],
    "tuple of everything": (
        {"when": date(2024, 1, 1), "ids": {UUID(int=1), UUID(int=2)}},
        [Decimal("0.1"), timedelta(seconds=1)],
        frozenset({(time(1), "x")}),
    ),
    "job payload": ["mod.func", None, (1, datetime(2024, 1, 1)), {"amount": Decimal("9.99")}],
}


@pytest.mark.parametrize("value", list(EXT_VALUES.values()), ids=list(EXT_VALUES))
def test_supported_values_round_trip_with_their_types(value: Any) -> None:
    assert typed(loads(dumps(value))) == typed(value)


def test_tuple_stays_a_tuple() -> None:
    assert type(loads(dumps((1, 2)))) is tuple


def test_set_and_frozenset_keep_their_type() -> None:
    result = loads(dumps([{1}, frozenset({1})]))

    assert [type(item) for item in result] == [set, frozenset]


def test_decimal_nan_round_trips() -> None:
    assert loads(dumps(Decimal("NaN"))).is_nan()


def test_naive_datetime_stays_naive() -> None:
    assert loads(dumps(datetime(2024, 1, 1, 9, 0))).tzinfo is None


def test_aware_datetime_keeps_its_wall_clock_and_utc_offset() -> None:
    result = loads(dumps(datetime(2024, 1, 1, 9, 0, tzinfo=PLUS_0530)))

    assert (result.replace(tzinfo=None), result.utcoffset()) == (
        datetime(2024, 1, 1, 9, 0),
        timedelta(hours=5, minutes=30),
    )


def test_zoneinfo_datetime_comes_back_with_a_fixed_offset() -> None:
    value = datetime(2024, 7, 1, 9, 0, tzinfo=zone("Europe/Paris"))

    result = loads(dumps(value))

    assert (result, result.tzinfo) == (value, timezone(timedelta(hours=2)))


# -- subclasses travel as their base type ---------------------------------------------------

SUBCLASSES = {
    "OrderedDict": (OrderedDict([("b", 1), ("a", 2)]), {"b": 1, "a": 2}),
    "str Enum": (Color.RED, "red"),
    "IntEnum": (Level.HIGH, 3),
    "float subclass": (Ratio(0.5), 0.5),
    "bytes subclass": (Blob(b"ab"), b"ab"),
    "list subclass": (Items([1, 2]), [1, 2]),
    "namedtuple": (Point(1, 2), (1, 2)),
    "nested in a dict": (
        {"color": Color.RED, "level": [Level.HIGH]},
        {"color": "red", "level": [3]},
    ),
    "as a dict key": ({Color.RED: 1}, {"red": 1}),
}


@pytest.mark.parametrize(("value", "expected"), list(SUBCLASSES.values()), ids=list(SUBCLASSES))
def test_subclasses_come_back_as_their_base_type(value: Any, expected: Any) -> None:
    assert typed(loads(dumps(value))) == typed(expected)


def test_str_enum_encodes_like_its_value() -> None:
    assert dumps([Color.RED]) == msgpack.packb(["red"], use_bin_type=True)


# -- what dumps refuses ---------------------------------------------------------------------


def test_unsupported_object_raises_serialization_error_naming_its_type() -> None:
    with pytest.raises(SerializationError, match=r"cannot serialize object of type 'Foo'"):
        dumps(Foo())


def test_serialization_error_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        dumps(Foo())


@pytest.mark.parametrize(
    "value",
    [[1, {"a": Foo()}], (Foo(),), {"k": {Foo()}}],
    ids=["in a dict in a list", "in a tuple", "in a set in a dict"],
)
def test_nested_unsupported_object_is_named(value: Any) -> None:
    with pytest.raises(SerializationError, match=r"'Foo'"):
        dumps(value)


def test_function_is_refused() -> None:
    with pytest.raises(SerializationError, match=r"'function'"):
        dumps(test_function_is_refused)


@pytest.mark.parametrize(
    "value",
    [
        {1: "a"},
        {None: "a"},
        {(1, 2): "a"},
        [{"ok": {2: "b"}}],
        ({1: "a"},),
        OrderedDict([(1, "a")]),
    ],
    ids=["int key", "None key", "tuple key", "nested", "in a tuple", "OrderedDict"],
)
def test_non_str_dict_key_is_refused(value: Any) -> None:
    with pytest.raises(SerializationError, match=r"dict key .* map keys must be str"):
        dumps(value)


def test_bytes_dict_key_round_trips() -> None:
    assert loads(dumps({b"k": 1})) == {b"k": 1}


def test_int_outside_64_bits_is_refused() -> None:
    with pytest.raises(SerializationError, match=r"Integer value out of range"):
        dumps([2**64])


def test_cyclic_list_is_refused() -> None:
    cycle: list[Any] = []
    cycle.append(cycle)

    with pytest.raises(SerializationError):
        dumps(cycle)


def test_cycle_through_a_tuple_is_refused() -> None:
    cycle: list[Any] = []
    cycle.append((cycle,))

    with pytest.raises(SerializationError):
        dumps(cycle)


# -- what loads refuses ---------------------------------------------------------------------

GARBAGE = {
    "reserved byte": b"\xc1",
    "truncated": b"\x92\x01",
    "extra data": b"\x01\x02",
    "empty": b"",
    "int map key": b"\x81\x01\x02",
    "unknown ext code": msgpack.packb(msgpack.ExtType(99, b"")),
    "short datetime": msgpack.packb(msgpack.ExtType(4, b"\x00")),
    "bad decimal": msgpack.packb(msgpack.ExtType(10, b"one")),
    "bad uuid": msgpack.packb(msgpack.ExtType(11, b"\x00")),
    "unhashable in set": msgpack.packb(msgpack.ExtType(2, msgpack.packb([[1]]))),
    "date out of range": msgpack.packb(msgpack.ExtType(6, b"\x00\x00\x00\x00")),
}


@pytest.mark.parametrize("data", list(GARBAGE.values()), ids=list(GARBAGE))
def test_garbage_raises_deserialization_error(data: bytes) -> None:
    with pytest.raises(DeserializationError, match=r"cannot deserialize msgpack data: \S"):
        loads(data)


def test_deserialization_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        loads(b"\xc1")


def test_unknown_ext_code_is_named() -> None:
    with pytest.raises(DeserializationError, match=r"unknown msgpack ext code 99"):
        loads(msgpack.packb(msgpack.ExtType(99, b"")))


# -- rq 3.0 accepts it ----------------------------------------------------------------------


def test_rq_resolves_the_class_and_round_trips_with_it() -> None:
    serializer = resolve_serializer(MsgpackSerializer)
    value = ["mod.func", None, (1, datetime(2024, 1, 1)), {"a": {1, 2}}]

    assert typed(serializer.loads(serializer.dumps(value))) == typed(value)


def test_rq_resolves_the_dotted_path_given_to_worker_dash_s() -> None:
    assert resolve_serializer("aiorq_flask.serializer.MsgpackSerializer") is MsgpackSerializer
