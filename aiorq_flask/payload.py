"""The ``data`` field of a job hash: the call a worker makes, and its description.

``data = zlib(msgpack([func_path, None, args, kwargs]))`` (spec §3.2); rq's readers also
take the msgpack bytes uncompressed. ``description`` is rq's call text (spec §3.3).
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from typing import Any

from .errors import DeserializationError, SerializationError
from .serializer import MsgpackSerializer


def encode_data(func_name: str, args: Sequence[Any], kwargs: Mapping[str, Any]) -> bytes:
    """``data`` = zlib(msgpack([func, None, args, kwargs])); names the argument at fault."""
    try:
        return zlib.compress(MsgpackSerializer.dumps([func_name, None, list(args), kwargs]))
    except SerializationError as error:
        raise _argument_error(func_name, args, kwargs) or error from None


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
    return func_name, list(args or ()), dict(kwargs or {})


def describe_call(func_name: str, args: Sequence[Any], kwargs: Mapping[str, Any]) -> str:
    """rq's default description: the call as text, each repr cut at 75 characters."""
    parts = [_short_repr(a) for a in args]
    parts += sorted(f"{k}={_short_repr(v)}" for k, v in kwargs.items())
    return f"{func_name}({', '.join(parts)})"


def _short_repr(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 75 else text[:75] + "..."
