"""Turn an app's ``RQ_*`` config into a plan: which queues exist and which connection each uses.

Pure: no I/O, no Redis, no Flask. ``init_app`` calls :func:`plan_from_config` once and wires the
result to the app, so every config mistake surfaces as a :class:`ConfigError` before anything
connects. The contract is ``spec/config.md``; it follows Flask-RQ's ``RQ_*`` keys.
"""

from __future__ import annotations

import importlib
import logging
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any
from urllib.parse import parse_qs, urlsplit

import redis
from redis.asyncio import Redis
from redis.asyncio.connection import parse_url

from .allowlist import module_prefixes
from .errors import ConfigError

__all__ = ["DEFAULT_URL", "ConnectionSpec", "Plan", "Sentinels", "plan_from_config"]

DEFAULT_URL = "redis://localhost:6379/0"
DEFAULT_MAX_JOB_BYTES = 64 << 20  # RQ_MAX_JOB_BYTES: the biggest `data` field enqueued or run
_DEFAULT = "default"

_logger = logging.getLogger("aiorq_flask")
_MISSING: Any = object()
_SCHEMES = ("redis", "rediss", "unix")
_SENTINEL_SCHEME = "redis+sentinel"
_SENTINEL_KEYS = ("sentinels", "service_name", "sentinel_kwargs")
_SENTINEL_PORT = 26379
_URL_PASSWORD = re.compile(r"(://[^:@/?#]*:)[^@/?#]*@")
_QUERY_PASSWORD = re.compile(r"([?&][^=&#]*password=)[^&#]*")  # ?ssl_password=...
_VALID_URL = "a redis://, rediss://, unix:// or redis+sentinel:// URL"
_VALID_SENTINEL_URL = "redis+sentinel://[user:password@]host:port[,host:port...]/service_name[/db]"
_VALID_SENTINELS = (
    "'sentinels': [[host, port], ...] with 'service_name': the name the sentinels "
    "monitor the primary under"
)
_VALID_VALUE = f"{_VALID_URL}, a dict of client keyword arguments"
_VALID_REF = f"the name of another RQ_QUEUE_CONNECTIONS entry or {_DEFAULT!r}"


@dataclass(frozen=True)
class Sentinels:
    """The Sentinel processes to ask where the primary named ``service_name`` is."""

    addresses: tuple[tuple[str, int], ...]
    service_name: str
    options: Mapping[str, Any]  # keyword arguments for the connections to the sentinels

    def __repr__(self) -> str:  # the options may hold the sentinels' password
        return (
            f"Sentinels(addresses={self.addresses!r}, service_name={self.service_name!r}, "
            f"options={_redacted(self.options)!r})"
        )


@dataclass(frozen=True)
class ConnectionSpec:
    """One Redis connection to build a pool for, per event loop.

    Exactly one of ``url`` and ``options`` is set. ``options`` is a read-only copy of the
    user's dict, so the pool code can pass it as ``client_class(**options)``. With
    ``sentinels`` (from a ``redis+sentinel://`` URL or a dict with ``sentinels``), the
    primary's address comes from them and ``options`` says everything else.
    """

    name: str
    source: str
    url: str | None
    options: Mapping[str, Any] | None
    sentinels: Sentinels | None = None

    def __hash__(self) -> int:
        # The generated hash would fail on the options mapping; hashable specs can key pools.
        return hash((self.name, self.source, self.url))

    def __repr__(self) -> str:  # never the password of a URL or an options dict
        options = None if self.options is None else _redacted(self.options)
        return (
            f"ConnectionSpec(name={self.name!r}, source={self.source!r}, "
            f"url={_redacted(self.url)!r}, options={options!r}, sentinels={self.sentinels!r})"
        )


@dataclass(frozen=True)
class Plan:
    """The resolved config: queues in priority order and the connection each one uses."""

    queues: tuple[str, ...]
    queue_connections: Mapping[str, str]
    connections: Mapping[str, ConnectionSpec]
    client_class: type[Any]
    is_async: bool | None
    allowed_modules: tuple[str, ...] | None = None  # None: a worker runs any function
    max_job_bytes: int = DEFAULT_MAX_JOB_BYTES

    def queues_on(self, connection: str) -> tuple[str, ...]:
        """Queues served by ``connection``, in priority order (what a worker on it listens to).

        Raises :class:`ConfigError` listing the connection names if ``connection`` is unknown.
        """
        if connection not in self.connections:
            known = ", ".join(repr(name) for name in self.connections)
            raise ConfigError(f"unknown connection {connection!r}; the connections are: {known}")
        return tuple(q for q in self.queues if self.queue_connections[q] == connection)


def plan_from_config(config: Mapping[str, Any]) -> Plan:
    """Resolve ``config`` (an app's config mapping) into a :class:`Plan`; never mutates it.

    Raises :class:`ConfigError` naming the key and value at fault for any invalid ``RQ_*`` value,
    including entries of ``RQ_QUEUE_CONNECTIONS`` that no queue uses.
    """
    client_class = _client_class(config.get("RQ_CONNECTION_CLASS", _MISSING))
    is_async = _is_async(config.get("RQ_ASYNC"))
    queues = _queues(config.get("RQ_QUEUES", _MISSING))
    entries = _entries(config.get("RQ_QUEUE_CONNECTIONS", _MISSING))
    specs = {_DEFAULT: _default_spec(config.get("RQ_CONNECTION", _MISSING), client_class)}
    specs.update(_entry_specs(entries, client_class))
    targets = _resolve_references(entries)
    queue_connections = {queue: targets.get(queue, _DEFAULT) for queue in queues}
    used = dict.fromkeys(queue_connections.values())
    return Plan(
        queues=queues,
        queue_connections=MappingProxyType(queue_connections),
        connections=MappingProxyType({name: specs[name] for name in used}),
        client_class=client_class,
        is_async=is_async,
        allowed_modules=_allowed_modules(config.get("RQ_WORKER_ALLOWED_MODULES")),
        max_job_bytes=_max_job_bytes(config.get("RQ_MAX_JOB_BYTES", _MISSING)),
    )


# -- scalar keys ---------------------------------------------------------------------------


def _client_class(value: Any) -> type[Any]:
    """Resolve ``RQ_CONNECTION_CLASS``; the sync ``redis.Redis`` is refused: nothing awaits it."""
    if value is _MISSING:
        return Redis
    key = "RQ_CONNECTION_CLASS"
    resolved = _import_path(value) if isinstance(value, str) else value
    if not isinstance(resolved, type):
        raise ConfigError(
            f"{key} = {value!r} is not a class; use a client class such as redis.asyncio.Redis "
            "or its dotted path 'module.Class' / 'module:Class'"
        )
    if issubclass(resolved, redis.Redis):
        raise ConfigError(
            f"{key} = {value!r} is the synchronous Redis client; "
            "use an asyncio client class such as 'redis.asyncio.Redis'"
        )
    if not callable(getattr(resolved, "from_pool", None)):
        raise ConfigError(
            f"{key} = {value!r} is not a Redis client class (it has no from_pool); use one "
            "such as 'redis.asyncio.Redis'; for Sentinel, set the connection to a "
            f"{_VALID_SENTINEL_URL} URL or a dict with {_VALID_SENTINELS}"
        )
    return resolved


def _import_path(path: str) -> Any:
    """Import ``'module.attr'`` or ``'module:attr.sub'``; a failure names the key and path."""
    module_name, sep, attr_path = path.partition(":")
    if not sep:
        module_name, _, attr_path = path.rpartition(".")
    try:
        obj: Any = importlib.import_module(module_name)
        for attr in attr_path.split("."):
            obj = getattr(obj, attr)
    except (ImportError, AttributeError, TypeError, ValueError) as exc:
        raise ConfigError(
            f"RQ_CONNECTION_CLASS = {path!r} cannot be imported ({exc}); "
            "use a dotted path 'module.Class' or 'module:Class', or the class itself"
        ) from exc
    return obj


def _is_async(value: Any) -> bool | None:
    """``RQ_ASYNC`` stays a tri-state: ``None`` is decided later from ``app.testing``."""
    if value is not None and not isinstance(value, bool):
        raise ConfigError(f"RQ_ASYNC = {value!r} is not a bool; use True, False or None")
    return value


def _allowed_modules(value: Any) -> tuple[str, ...] | None:
    """``RQ_WORKER_ALLOWED_MODULES``: None (unset) lets a worker run any function."""
    return None if value is None else module_prefixes(value, "RQ_WORKER_ALLOWED_MODULES")


def _max_job_bytes(value: Any) -> int:
    """``RQ_MAX_JOB_BYTES``: a positive int, the biggest ``data`` field a job may have."""
    if value is _MISSING:
        return DEFAULT_MAX_JOB_BYTES
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(
            f"RQ_MAX_JOB_BYTES = {value!r} is not a positive int; use a size in bytes "
            f"(default {DEFAULT_MAX_JOB_BYTES} = 64 MiB)"
        )
    return value


# -- RQ_QUEUES -----------------------------------------------------------------------------


def _queues(value: Any) -> tuple[str, ...]:
    """Queue names in priority order, with ``"default"`` last unless listed elsewhere."""
    if value is _MISSING:
        return (_DEFAULT,)
    if not isinstance(value, (list, tuple)):
        raise ConfigError(
            f"RQ_QUEUES = {value!r} is not a list; use a list of queue names, e.g. ['default']"
        )
    names: list[str] = []
    for name in value:
        _check_queue_name(name, value)
        if name in names:
            raise ConfigError(
                f"RQ_QUEUES = {value!r} lists {name!r} twice; list each queue name once"
            )
        names.append(name)
    if _DEFAULT not in names:
        names.append(_DEFAULT)
    return tuple(names)


def _check_queue_name(name: Any, queues: Any) -> None:
    """Names must be non-blank strings without commas: rq joins queue names with commas."""
    if not isinstance(name, str):
        problem = f"holds {name!r}, which is not a string"
    elif not name.strip():
        problem = f"holds the blank name {name!r}"
    elif "," in name:
        problem = f"holds {name!r}, which contains a comma (rq joins queue names with commas)"
    else:
        return
    raise ConfigError(
        f"RQ_QUEUES = {queues!r} {problem}; queue names are non-empty strings without commas"
    )


# -- RQ_QUEUE_CONNECTIONS ------------------------------------------------------------------


def _source(key: str) -> str:
    return f"RQ_QUEUE_CONNECTIONS[{key!r}]"


def _entries(value: Any) -> dict[str, Any]:
    """A copy of ``RQ_QUEUE_CONNECTIONS`` without the ignored ``"default"`` key."""
    if value is _MISSING:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(
            f"RQ_QUEUE_CONNECTIONS = {_redacted(value)!r} is not a dict; use a dict of "
            f"queue name -> {_VALID_VALUE}, a reference to another entry, or None"
        )
    entries = dict(value)
    for key in entries:
        if not isinstance(key, str):
            raise ConfigError(
                f"RQ_QUEUE_CONNECTIONS has the key {key!r}, which is not a string; "
                "keys are queue names"
            )
    if _DEFAULT in entries:
        _logger.warning(
            "%s = %r is ignored: only RQ_CONNECTION configures the default connection",
            _source(_DEFAULT),
            _redacted(entries.pop(_DEFAULT)),
        )
    return entries


def _entry_specs(
    entries: Mapping[str, Any], client_class: type[Any]
) -> Iterator[tuple[str, ConnectionSpec]]:
    """Specs for the entries that define a connection; every entry's type is checked here."""
    for key, value in entries.items():
        if value is None or (isinstance(value, str) and "://" not in value):
            continue
        source = _source(key)
        if not isinstance(value, (str, Mapping)):
            raise ConfigError(
                f"{source} = {_redacted(value)!r} is not a connection description; use "
                f"{_VALID_VALUE}, "
                f"{_VALID_REF}, or None (pools are made per event loop, so the config "
                "describes a connection rather than holding one)"
            )
        yield key, _spec(key, source, value, client_class)


def _resolve_references(entries: Mapping[str, Any]) -> dict[str, str]:
    """Map every entry to the name of the connection it ends at (its own key or "default")."""
    return {key: _follow(key, entries) for key in entries}


def _follow(key: str, entries: Mapping[str, Any]) -> str:
    """Walk a reference chain from ``key``; unknown targets and cycles raise ConfigError."""
    path = [key]
    while True:
        value = entries[path[-1]]
        if value is None:
            return _DEFAULT
        if not isinstance(value, str) or "://" in value:
            return path[-1]
        if value == _DEFAULT:
            return _DEFAULT
        if value not in entries:
            raise ConfigError(
                f"{_source(path[-1])} = {value!r} refers to {value!r}, which has no entry in "
                f"RQ_QUEUE_CONNECTIONS; a reference must be {_VALID_REF} "
                f"(a URL must contain '://')"
            )
        if value in path:
            cycle = " -> ".join([*path[path.index(value) :], value])
            raise ConfigError(
                f"RQ_QUEUE_CONNECTIONS has a reference cycle: {cycle} "
                f"({_source(path[-1])} = {value!r}); end the chain at {_VALID_URL}, "
                f"a dict, or {_DEFAULT!r}"
            )
        path.append(value)


# -- connection values ---------------------------------------------------------------------


def _default_spec(value: Any, client_class: type[Any]) -> ConnectionSpec:
    """``RQ_CONNECTION`` must define a connection itself: it cannot be a reference or None."""
    key = "RQ_CONNECTION"
    if value is _MISSING:
        return ConnectionSpec(name=_DEFAULT, source=key, url=DEFAULT_URL, options=None)
    if not (isinstance(value, Mapping) or (isinstance(value, str) and "://" in value)):
        raise ConfigError(
            f"{key} = {_redacted(value)!r} is not a connection description; use {_VALID_URL} "
            "or a dict of client keyword arguments (omit the key for "
            f"{DEFAULT_URL!r}; pools are made per event loop, so the config describes a "
            "connection rather than holding one)"
        )
    return _spec(_DEFAULT, key, value, client_class)


def _spec(
    name: str, source: str, value: str | Mapping[str, Any], client_class: type[Any]
) -> ConnectionSpec:
    """Validate a URL or an options dict and wrap it as the connection ``name``."""
    if isinstance(value, str) and value.partition("://")[0].lower() == _SENTINEL_SCHEME:
        return _sentinel_spec(name, source, _sentinel_url_options(source, value), client_class)
    if isinstance(value, str):
        _check_url(source, value)
        return ConnectionSpec(name=name, source=source, url=value, options=None)
    if "sentinels" in value:
        return _sentinel_spec(name, source, value, client_class)
    options = MappingProxyType(dict(value))
    _check_options(source, options, client_class)
    return ConnectionSpec(name=name, source=source, url=None, options=options)


def _sentinel_spec(
    name: str, source: str, value: Mapping[str, Any], client_class: type[Any]
) -> ConnectionSpec:
    """A Sentinel dict: where the sentinels are, which primary, the rest client options."""
    shown = _redacted(value)
    addresses = _sentinel_addresses(source, shown, value["sentinels"])
    service_name = value.get("service_name")
    if not isinstance(service_name, str) or not service_name:
        raise ConfigError(
            f"{source} = {shown!r} has the service_name {service_name!r}; use {_VALID_SENTINELS}"
        )
    sentinel_options = value.get("sentinel_kwargs") or {}
    if not isinstance(sentinel_options, Mapping):
        raise ConfigError(
            f"{source} = {shown!r} has sentinel_kwargs that is not a dict; use a dict of "
            "keyword arguments for the connections to the sentinels (e.g. a password)"
        )
    options = MappingProxyType({k: v for k, v in value.items() if k not in _SENTINEL_KEYS})
    for key in ("host", "port", "unix_socket_path"):
        if key in options:
            raise ConfigError(
                f"{source} = {shown!r} sets {key!r}; remove it: the sentinels say where "
                "the primary is"
            )
    _check_options(source, options, client_class, shown=value)
    _check_options(f"{source}['sentinel_kwargs']", sentinel_options, Redis)
    sentinels = Sentinels(addresses, service_name, MappingProxyType(dict(sentinel_options)))
    return ConnectionSpec(name=name, source=source, url=None, options=options, sentinels=sentinels)


def _sentinel_addresses(source: str, shown: Any, value: Any) -> tuple[tuple[str, int], ...]:
    """``[[host, port], ...]``: at least one, each a host name and a port number."""
    pairs = value if isinstance(value, (list, tuple)) else ()
    addresses = tuple(tuple(pair) for pair in pairs if isinstance(pair, (list, tuple)))
    valid = all(
        len(pair) == 2
        and isinstance(pair[0], str)
        and pair[0]
        and isinstance(pair[1], int)
        and not isinstance(pair[1], bool)
        for pair in addresses
    )
    if not addresses or len(addresses) != len(pairs) or not valid:
        raise ConfigError(
            f"{source} = {shown!r} has the sentinels {value!r}; use {_VALID_SENTINELS}"
        )
    return tuple((host, port) for host, port in addresses)


def _sentinel_url_options(source: str, url: str) -> dict[str, Any]:
    """A ``redis+sentinel://`` URL as the dict it stands for.

    Its credentials, database and query (``?socket_timeout=...``) are read by redis-py's
    own URL parser, as a ``redis://`` URL's would be; they apply to the primary.
    """
    shown = _redacted(url)
    try:
        parts = urlsplit(url)
        userinfo, _, hosts = parts.netloc.rpartition("@")
        names = [segment for segment in parts.path.split("/") if segment]
        addresses = [_host_port(host) for host in hosts.split(",")]
        if not 1 <= len(names) <= 2:
            raise ValueError("the path must be /service_name or /service_name/db")
        db = int(names[1]) if len(names) == 2 else 0
        userinfo = f"{userinfo}@" if userinfo else ""
        query = f"?{parts.query}" if parts.query else ""
        options = parse_url(f"redis://{userinfo}localhost/{db}{query}")
    except ValueError as exc:
        raise ConfigError(
            f"{source} = {shown!r} is not a valid Sentinel URL ({exc}); use {_VALID_SENTINEL_URL}"
        ) from exc
    if "decode_responses" in parse_qs(parts.query):
        raise ConfigError(
            f"{source} = {shown!r} sets decode_responses; remove it: job payloads are binary"
        )
    options.pop("host", None)
    options.pop("port", None)
    return {"sentinels": addresses, "service_name": names[0], **options}


def _host_port(text: str) -> tuple[str, int]:
    """``host:port``, ``host`` (port 26379) or ``[v6 address]:port``."""
    parts = urlsplit(f"//{text}")
    if not parts.hostname:
        raise ValueError(f"{text!r} names no sentinel host")
    return parts.hostname, parts.port or _SENTINEL_PORT


def _check_url(source: str, url: str) -> None:
    """Parse the URL the way redis-py will, without connecting."""
    shown = _redacted(url)
    try:
        parts = urlsplit(url)
        kwargs: Mapping[str, Any] = parse_url(url) if parts.scheme in _SCHEMES else {}
    except ValueError as exc:
        raise ConfigError(
            f"{source} = {shown!r} is not a valid Redis URL ({exc}); "
            "use a URL redis-py can parse, e.g. 'redis://host:6379/0'"
        ) from exc
    if parts.scheme not in _SCHEMES:
        raise ConfigError(
            f"{source} = {shown!r} has the unsupported scheme {parts.scheme!r}; use {_VALID_URL}"
        )
    if "decode_responses" in parse_qs(parts.query):
        # redis-py passes this query value on as a string, so even "false" turns decoding on.
        raise ConfigError(
            f"{source} = {shown!r} sets decode_responses; remove it: job payloads are binary, "
            "and redis-py treats any decode_responses value in a URL as true"
        )
    if "max_connections" in kwargs:
        _check_max_connections(source, shown, kwargs["max_connections"])


def _check_options(
    source: str, options: Mapping[str, Any], client_class: type[Any], shown: Any = None
) -> None:
    """Let the client class judge the keywords; its constructor does no I/O.

    ``shown`` is the value to repeat in errors, when ``options`` is only part of it.
    """
    shown = _redacted(options if shown is None else shown)
    if options.get("decode_responses"):
        raise ConfigError(
            f"{source} = {shown!r} sets decode_responses={options['decode_responses']!r}; "
            "remove it or set it to False: job payloads are binary"
        )
    if "connection_pool" in options:
        raise ConfigError(
            f"{source} = {shown!r} holds a connection_pool; remove it: pools are made per "
            "event loop from the other keyword arguments"
        )
    if "max_connections" in options:
        _check_max_connections(source, shown, options["max_connections"])
    client_kwargs = {k: v for k, v in options.items() if k != "max_connections"}
    try:
        client_class(**client_kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(
            f"{source} = {shown!r} is rejected by {client_class.__qualname__}: {exc}; "
            "use only keyword arguments the client class accepts"
        ) from exc


def _check_max_connections(source: str, shown: Any, value: Any) -> None:
    """Pools are bounded: redis-py would read 0 as "unlimited", so only ints >= 1 pass."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(
            f"{source} = {shown!r} sets max_connections={value!r}; use an int >= 1 (or omit it)"
        )


def _redacted(value: Any) -> Any:
    """The value with any password masked, so error messages and logs can repeat it."""
    if isinstance(value, str):
        value = _QUERY_PASSWORD.sub(r"\1***", value)
    if isinstance(value, Mapping):  # any *password option: ssl_password is a key's passphrase
        value = {k: "***" if str(k).endswith("password") and v else v for k, v in value.items()}
    if isinstance(value, str):
        return _URL_PASSWORD.sub(r"\1***@", value)
    if isinstance(value, Mapping):
        return {k: "***" if k == "password" and v else _redacted(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):  # e.g. a list of URLs where a dict belongs
        items = [_redacted(item) for item in value]
        return items if isinstance(value, list) else tuple(items)
    return value
