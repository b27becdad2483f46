"""What a job's arguments and results may hold: msgpack plus a few Python types."""

from __future__ import annotations

import uuid
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

from aiorq_flask import MsgpackSerializer, SerializationError

ROUND_TRIPS = {
    "text": "héllo",
    "number": 3.5,
    "raw": b"\x00\x01",
    "pair": (1, 2),  # stays a tuple
    "tags": {"a", "b"},  # stays a set
    "when": datetime(2026, 12, 1, 9, 30, tzinfo=timezone.utc),
    "day": date(2026, 12, 1),
    "wait": timedelta(minutes=5),
    "price": Decimal("9.99"),
    "id": uuid.UUID("12345678-1234-5678-1234-567812345678"),
    "nested": [{"ok": True, "none": None}],
}


def round_trip() -> dict[str, object]:
    return MsgpackSerializer.loads(MsgpackSerializer.dumps(ROUND_TRIPS))


def refused() -> str:
    """Anything else is refused at enqueue, before anything is written."""
    try:
        MsgpackSerializer.dumps({"handle": object()})
    except SerializationError as error:
        return str(error)
    raise AssertionError("an object() was serialized")
