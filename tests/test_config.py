"""plan_from_config: the contract in spec/config.md, one behaviour per test, no Redis needed."""

from __future__ import annotations

import copy
import logging
import re
from collections.abc import Callable
from typing import Any

import pytest
import redis
from redis.asyncio import Redis

from aiorq_flask._config import DEFAULT_URL, ConnectionSpec, Plan, plan_from_config
from aiorq_flask.errors import ConfigError

SEED: dict[str, Any] = {
    "RQ_CONNECTION": "redis://redis.my-app.example",
    "RQ_QUEUES": ["priority", "email", "email-priority"],
    "RQ_QUEUE_CONNECTIONS": {
        "email": "redis://email-redis.my-app.example",
        "email-priority": "email",
    },
}


class HostOnlyClient:
    """A client class that accepts only ``host``, to show dicts are judged by the chosen class."""

    def __init__(self, *, host: str = "localhost") -> None:
        self.host = host

    @classmethod
    def from_pool(cls, pool: Any) -> HostOnlyClient:
        return cls()


def plan_with(entries: dict[str, Any], queues: list[str] | None = None) -> Plan:
    """A plan for RQ_QUEUE_CONNECTIONS = entries, listing queues (default: every entry key)."""
    listed = [k for k in entries if k != "default"] if queues is None else queues
    return plan_from_config({"RQ_QUEUES": listed, "RQ_QUEUE_CONNECTIONS": entries})


# -- the seed example ----------------------------------------------------------------------


def test_seed_example_orders_queues_by_rq_queues_then_default() -> None:
    assert plan_from_config(SEED).queues == ("priority", "email", "email-priority", "default")


def test_seed_example_resolves_to_exactly_two_connections() -> None:
    plan = plan_from_config(SEED)

    assert plan.connections == {
        "default": ConnectionSpec("default", "RQ_CONNECTION", "redis://redis.my-app.example", None),
        "email": ConnectionSpec(
            "email",
            "RQ_QUEUE_CONNECTIONS['email']",
            "redis://email-redis.my-app.example",
            None,
        ),
    }


def test_seed_example_maps_each_queue_to_its_connection() -> None:
    assert plan_from_config(SEED).queue_connections == {
        "priority": "default",
        "email": "email",
        "email-priority": "email",
        "default": "default",
    }


def test_seed_example_email_worker_serves_email_then_email_priority() -> None:
    assert plan_from_config(SEED).queues_on("email") == ("email", "email-priority")


def test_seed_example_default_worker_serves_priority_then_default() -> None:
    assert plan_from_config(SEED).queues_on("default") == ("priority", "default")


# -- rule 1: "default" is always configured ------------------------------------------------


def test_empty_config_has_only_the_default_queue() -> None:
    assert plan_from_config({}).queues == ("default",)


def test_empty_config_connects_to_the_local_default_url() -> None:
    assert plan_from_config({}).connections == {
        "default": ConnectionSpec("default", "RQ_CONNECTION", DEFAULT_URL, None)
    }


def test_unlisted_default_queue_comes_after_the_listed_queues() -> None:
    plan = plan_from_config({"RQ_QUEUES": ["high", "low"]})

    assert plan.queues == ("high", "low", "default")


def test_listed_default_queue_keeps_its_position() -> None:
    plan = plan_from_config({"RQ_QUEUES": ["high", "default", "low"]})

    assert plan.queues == ("high", "default", "low")


def test_rq_queues_may_be_a_tuple() -> None:
    assert plan_from_config({"RQ_QUEUES": ("a", "b")}).queues == ("a", "b", "default")


def test_rq_connection_url_configures_the_default_connection() -> None:
    plan = plan_from_config({"RQ_CONNECTION": "redis://cache.example:6380/2"})

    assert plan.connections["default"].url == "redis://cache.example:6380/2"


def test_rq_connection_dict_configures_the_default_connection() -> None:
    plan = plan_from_config({"RQ_CONNECTION": {"host": "cache.example", "db": 2}})

    spec = plan.connections["default"]
    assert (spec.url, spec.options) == (None, {"host": "cache.example", "db": 2})


def test_queues_without_an_entry_use_the_default_connection() -> None:
    plan = plan_from_config({"RQ_QUEUES": ["email", "priority"]})

    assert plan.queues_on("default") == ("email", "priority", "default")


# -- rule 2: URLs and dicts define new connections -----------------------------------------


@pytest.mark.parametrize(
    "url",
    ["redis://email.example", "rediss://user:pw@email.example:6380/1", "unix:///run/redis.sock"],
)
def test_url_entry_defines_a_connection_named_after_its_key(url: str) -> None:
    plan = plan_with({"email": url})

    assert plan.connections["email"] == ConnectionSpec(
        "email", "RQ_QUEUE_CONNECTIONS['email']", url, None
    )


def test_dict_entry_defines_a_connection_with_those_keyword_arguments() -> None:
    plan = plan_with({"email": {"host": "email.example", "port": 6380}})

    spec = plan.connections["email"]
    assert (spec.url, spec.options) == (None, {"host": "email.example", "port": 6380})


def test_dict_options_are_a_copy_of_the_users_dict() -> None:
    options = {"host": "email.example"}

    plan = plan_with({"email": options})
    options["host"] = "changed.example"

    assert plan.connections["email"].options == {"host": "email.example"}


def test_dict_options_are_read_only() -> None:
    options = plan_with({"email": {"host": "email.example"}}).connections["email"].options
    assert options is not None

    with pytest.raises(TypeError):
        options["host"] = "other.example"  # type: ignore[index]


def test_dict_options_keep_max_connections_for_the_pool() -> None:
    plan = plan_with({"email": {"host": "email.example", "max_connections": 8}})

    assert plan.connections["email"].options == {"host": "email.example", "max_connections": 8}


def test_dict_may_set_decode_responses_false() -> None:
    plan = plan_with({"email": {"decode_responses": False}})

    assert plan.connections["email"].options == {"decode_responses": False}


def test_url_may_set_max_connections() -> None:
    plan = plan_with({"email": "redis://email.example?max_connections=4"})

    assert plan.connections["email"].url == "redis://email.example?max_connections=4"


# -- rule 3: references share ---------------------------------------------------------------


def test_sentinel_url_names_the_sentinels_the_primary_and_its_database() -> None:
    url = "redis+sentinel://alice:s3cret@s1:26380,s2,[::1]:26381/mymaster/2?client_name=web"

    spec = plan_from_config({"RQ_CONNECTION": url}).connections["default"]

    assert spec.sentinels is not None
    assert spec.sentinels.addresses == (("s1", 26380), ("s2", 26379), ("::1", 26381))
    assert spec.sentinels.service_name == "mymaster"
    assert spec.url is None
    assert spec.options == {
        "username": "alice",
        "password": "s3cret",
        "db": 2,
        "client_name": "web",
    }


def test_sentinel_url_without_a_database_uses_database_0() -> None:
    spec = plan_from_config({"RQ_CONNECTION": "redis+sentinel://s1/mymaster"}).connections[
        "default"
    ]

    assert spec.options == {"db": 0}


def test_sentinel_dict_keeps_the_sentinel_options_apart_from_the_primary_s() -> None:
    value = {
        "sentinels": [["s1", 26379], ("s2", 26380)],
        "service_name": "mymaster",
        "db": 1,
        "password": "primary-secret",
        "sentinel_kwargs": {"password": "sentinel-secret"},
    }

    spec = plan_from_config({"RQ_QUEUE_CONNECTIONS": {"x": value}, "RQ_QUEUES": ["x"]}).connections[
        "x"
    ]

    assert spec.sentinels is not None
    assert spec.sentinels.addresses == (("s1", 26379), ("s2", 26380))
    assert spec.sentinels.options == {"password": "sentinel-secret"}
    assert spec.options == {"db": 1, "password": "primary-secret"}


def test_a_queue_may_refer_to_a_sentinel_entry() -> None:
    plan = plan_with({"x": "redis+sentinel://s1/mymaster", "y": "x"})

    assert plan.queue_connections["y"] == "x"
    assert plan.connections["x"].sentinels is not None


def test_sentinel_errors_mask_the_passwords() -> None:
    value = {"sentinels": [], "service_name": "m", "sentinel_kwargs": {"password": "s3cret"}}

    with pytest.raises(ConfigError) as excinfo:
        plan_from_config({"RQ_CONNECTION": value})

    assert "s3cret" not in str(excinfo.value)


def test_reference_shares_the_connection_of_the_named_entry() -> None:
    plan = plan_with({"email": "redis://email.example", "email-priority": "email"})

    assert plan.queue_connections["email-priority"] == "email"


def test_reference_chain_resolves_to_the_url_at_its_end() -> None:
    plan = plan_with({"a": "b", "b": "c", "c": "redis://c.example"})

    assert plan.queue_connections == {"a": "c", "b": "c", "c": "c", "default": "default"}


def test_reference_chain_may_end_at_a_dict() -> None:
    plan = plan_with({"a": "b", "b": {"host": "b.example"}})

    assert plan.queue_connections["a"] == "b"


def test_reference_to_default_uses_rq_connection() -> None:
    plan = plan_from_config(
        {
            "RQ_CONNECTION": "redis://main.example",
            "RQ_QUEUES": ["a"],
            "RQ_QUEUE_CONNECTIONS": {"a": "default"},
        }
    )

    assert plan.queue_connections["a"] == "default"


def test_references_add_no_connection_of_their_own() -> None:
    plan = plan_with({"a": "b", "b": "redis://b.example"})

    assert set(plan.connections) == {"default", "b"}


# -- rule 4: None means default -----------------------------------------------------------


def test_none_entry_uses_the_default_connection() -> None:
    plan = plan_with({"email": None})

    assert plan.queue_connections["email"] == "default"


def test_reference_that_reaches_a_none_entry_uses_the_default_connection() -> None:
    plan = plan_with({"a": "b", "b": None})

    assert plan.queue_connections == {"a": "default", "b": "default", "default": "default"}


# -- rule 5: a "default" key is ignored -----------------------------------------------------


def test_default_key_in_queue_connections_does_not_change_the_default_connection() -> None:
    plan = plan_from_config(
        {
            "RQ_CONNECTION": "redis://main.example",
            "RQ_QUEUE_CONNECTIONS": {"default": "redis://other.example"},
        }
    )

    assert plan.connections["default"].url == "redis://main.example"


def test_default_key_in_queue_connections_logs_a_warning_naming_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="aiorq_flask"):
        plan_from_config({"RQ_QUEUE_CONNECTIONS": {"default": "redis://other.example"}})

    [record] = caplog.records
    assert (record.name, record.levelno) == ("aiorq_flask", logging.WARNING)
    assert "RQ_QUEUE_CONNECTIONS['default'] = 'redis://other.example' is ignored" in (
        record.getMessage()
    )


def test_default_key_in_queue_connections_is_not_validated() -> None:
    plan = plan_from_config({"RQ_QUEUE_CONNECTIONS": {"default": 42}})

    assert plan.queue_connections == {"default": "default"}


def test_reference_to_an_ignored_default_entry_uses_rq_connection() -> None:
    plan = plan_with({"default": "redis://other.example", "a": "default"})

    assert plan.queue_connections["a"] == "default"


def test_valid_config_logs_nothing(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="aiorq_flask"):
        plan_from_config(SEED)

    assert caplog.records == []


# -- rule 6: entries for unlisted names -----------------------------------------------------


def test_entry_for_an_unlisted_name_creates_no_queue() -> None:
    plan = plan_with({"archive": "redis://archive.example"}, queues=["email"])

    assert plan.queues == ("email", "default")


def test_entry_for_an_unlisted_name_is_a_valid_reference_target() -> None:
    plan = plan_with({"shared": "redis://shared.example", "email": "shared"}, queues=["email"])

    assert plan.queue_connections["email"] == "shared"
    assert plan.connections["shared"].source == "RQ_QUEUE_CONNECTIONS['shared']"


def test_connections_no_queue_uses_are_left_out_of_the_plan() -> None:
    plan = plan_with({"archive": "redis://archive.example"}, queues=["email"])

    assert set(plan.connections) == {"default"}


@pytest.mark.parametrize(
    ("entries", "fragment"),
    [
        ({"archive": "http://archive.example"}, "RQ_QUEUE_CONNECTIONS['archive']"),
        ({"archive": 6379}, "RQ_QUEUE_CONNECTIONS['archive'] = 6379"),
        ({"archive": {"bogus": 1}}, "RQ_QUEUE_CONNECTIONS['archive']"),
        ({"archive": "nowhere"}, "RQ_QUEUE_CONNECTIONS['archive'] = 'nowhere'"),
        ({"x": "y", "y": "x"}, "reference cycle: x -> y -> x"),
    ],
    ids=["bad-scheme", "bad-type", "bad-dict", "unknown-reference", "cycle"],
)
def test_entries_no_queue_uses_are_still_validated(entries: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(fragment)):
        plan_with(entries, queues=["email"])


# -- rule 7: only references share --------------------------------------------------------


def test_entries_with_identical_urls_are_two_connections() -> None:
    plan = plan_with({"a": "redis://same.example", "b": "redis://same.example"})

    assert plan.queue_connections["a"] != plan.queue_connections["b"]
    assert set(plan.connections) == {"default", "a", "b"}


def test_entry_with_the_same_url_as_rq_connection_is_its_own_connection() -> None:
    plan = plan_from_config(
        {
            "RQ_CONNECTION": "redis://same.example",
            "RQ_QUEUES": ["a"],
            "RQ_QUEUE_CONNECTIONS": {"a": "redis://same.example"},
        }
    )

    assert plan.queue_connections["a"] == "a"


# -- queues_on -----------------------------------------------------------------------------


def test_queues_on_follows_priority_order_not_entry_order() -> None:
    plan = plan_with({"low": "redis://x.example", "high": "low"}, queues=["high", "mid", "low"])

    assert plan.queues_on("low") == ("high", "low")


@pytest.mark.parametrize("name", ["emial", "archive"], ids=["typo", "unused-entry"])
def test_queues_on_unknown_connection_lists_the_connection_names(name: str) -> None:
    plan = plan_from_config(
        {**SEED, "RQ_QUEUE_CONNECTIONS": {**SEED["RQ_QUEUE_CONNECTIONS"], "archive": None}}
    )

    with pytest.raises(ConfigError, match=rf"'{name}'.*'default', 'email'"):
        plan.queues_on(name)


# -- the other keys -------------------------------------------------------------------------


def test_client_class_defaults_to_redis_asyncio() -> None:
    assert plan_from_config({}).client_class is Redis


@pytest.mark.parametrize(
    "value",
    [Redis, "redis.asyncio.Redis", "redis.asyncio:Redis", "redis.asyncio.client:Redis"],
    ids=["class", "dotted", "colon", "colon-module"],
)
def test_client_class_may_be_a_class_or_its_import_path(value: Any) -> None:
    assert plan_from_config({"RQ_CONNECTION_CLASS": value}).client_class is Redis


def test_client_class_is_the_one_that_judges_dict_options() -> None:
    config = {"RQ_CONNECTION_CLASS": HostOnlyClient, "RQ_CONNECTION": {"port": 6380}}

    with pytest.raises(ConfigError, match=r"rejected by HostOnlyClient.*'port'"):
        plan_from_config(config)


@pytest.mark.parametrize("value", [True, False, None])
def test_rq_async_is_kept_as_given(value: bool | None) -> None:
    assert plan_from_config({"RQ_ASYNC": value}).is_async is value


def test_rq_async_defaults_to_none() -> None:
    assert plan_from_config({}).is_async is None


# -- the plan and the input ---------------------------------------------------------------


def test_config_is_not_mutated() -> None:
    config: dict[str, Any] = {
        "RQ_CONNECTION": {"host": "main.example", "max_connections": 4},
        "RQ_QUEUES": ["email", "email-priority"],
        "RQ_QUEUE_CONNECTIONS": {
            "default": "redis://ignored.example",
            "email": {"host": "email.example"},
            "email-priority": "email",
            "other": None,
        },
    }
    before = copy.deepcopy(config)

    plan_from_config(config)

    assert config == before


def test_plan_mappings_are_read_only() -> None:
    plan = plan_from_config(SEED)

    with pytest.raises(TypeError):
        plan.queue_connections["email"] = "default"  # type: ignore[index]


def test_connection_specs_are_hashable_so_pools_can_be_keyed_by_them() -> None:
    plan = plan_with({"a": {"host": "a.example"}})

    assert len({spec: None for spec in plan.connections.values()}) == 2


# -- errors: every one names the key and the value, and says what is valid ----------------

# (id, value, what the message says is wrong with it, what it says would be valid)
URL_ERRORS = [
    (
        "scheme",
        "http://e.example",
        "has the unsupported scheme 'http'",
        "unix:// or redis+sentinel",
    ),
    ("port", "redis://e.example:port", "is not a valid Redis URL", "'redis://host:6379/0'"),
    ("ipv6", "redis://[e.example", "is not a valid Redis URL", "'redis://host:6379/0'"),
    ("query", "redis://e.example?socket_timeout=x", "is not a valid Redis URL", "redis-py can"),
    ("decode", "redis://e.example?decode_responses=true", "sets decode_responses", "binary"),
    ("decode-false", "redis://e.example?decode_responses=false", "sets decode", "remove it"),
    ("max-conn", "redis://e.example?max_connections=0", "sets max_connections=0", "int >= 1"),
    ("sentinel-no-service", "redis+sentinel://s1:26379", "is not a valid Sentinel URL", "/service"),
    ("sentinel-no-host", "redis+sentinel:///mymaster", "is not a valid Sentinel URL", "host:port"),
    ("sentinel-port", "redis+sentinel://s1:x/mymaster", "is not a valid Sentinel URL", "host:port"),
    ("sentinel-db", "redis+sentinel://s1/mymaster/x", "is not a valid Sentinel URL", "[/db]"),
    ("sentinel-ipv6", "redis+sentinel://[::1/mymaster", "is not a valid Sentinel URL", "[/db]"),
    ("sentinel-decode", "redis+sentinel://s1/m?decode_responses=1", "sets decode_resp", "binary"),
]

DICT_ERRORS = [
    ("unknown-kwarg", {"bogus": 1}, "is rejected by Redis", "keyword arguments the client"),
    ("non-str-key", {1: "x"}, "is rejected by Redis: keywords must be strings", "keyword"),
    ("decode", {"decode_responses": True}, "sets decode_responses=True", "binary"),
    ("max-conn-0", {"max_connections": 0}, "sets max_connections=0", "int >= 1"),
    ("max-conn-neg", {"max_connections": -1}, "sets max_connections=-1", "int >= 1"),
    ("max-conn-str", {"max_connections": "8"}, "sets max_connections='8'", "int >= 1"),
    ("max-conn-bool", {"max_connections": True}, "sets max_connections=True", "int >= 1"),
    ("max-conn-float", {"max_connections": 1.5}, "sets max_connections=1.5", "int >= 1"),
    ("pool", {"connection_pool": object()}, "holds a connection_pool", "per event loop"),
    ("sentinels-empty", {"sentinels": [], "service_name": "m"}, "has the sentinels []", "[host,"),
    ("sentinels-str", {"sentinels": "s1:26379", "service_name": "m"}, "has the sentinels", "[["),
    ("sentinels-port", {"sentinels": [["s1", "1"]], "service_name": "m"}, "has the sentin", "port"),
    ("service-missing", {"sentinels": [["s1", 26379]]}, "has the service_name None", "monitor"),
    ("service-empty", {"sentinels": [["s", 1]], "service_name": ""}, "has the service_nam", "mon"),
    (
        "sentinel-host",
        {"sentinels": [["s", 1]], "service_name": "m", "host": "h"},
        "sets 'host'",
        "the sentinels say where",
    ),
    (
        "sentinel-kwargs",
        {"sentinels": [["s", 1]], "service_name": "m", "sentinel_kwargs": 1},
        "has sentinel_kwargs that is not a dict",
        "a password",
    ),
    (
        "sentinel-bogus",
        {"sentinels": [["s", 1]], "service_name": "m", "bogus": 1},
        "is rejected by Redis",
        "keyword arguments the client",
    ),
]


def value_errors(key: str, config_for: Callable[[Any], dict[str, Any]]) -> list[Any]:
    """Every URL and dict error case, with the value placed at ``key`` by ``config_for``."""
    return [
        pytest.param(config_for(value), f"{key} = {value!r} {problem}", hint, id=f"{key}-{id_}")
        for id_, value, problem, hint in [*URL_ERRORS, *DICT_ERRORS]
    ]


OTHER_TYPES = [6379, b"redis://email.example", ["redis://email.example"], Redis()]

ERRORS: list[Any] = [
    # RQ_QUEUES
    pytest.param({"RQ_QUEUES": "email"}, "RQ_QUEUES = 'email'", "list of queue names", id="q-str"),
    pytest.param({"RQ_QUEUES": None}, "RQ_QUEUES = None", "list of queue names", id="q-none"),
    pytest.param({"RQ_QUEUES": {"a"}}, "RQ_QUEUES = {'a'}", "list of queue names", id="q-set"),
    pytest.param({"RQ_QUEUES": ["a", 1]}, "RQ_QUEUES = ['a', 1] holds 1", "strings", id="q-int"),
    pytest.param(
        {"RQ_QUEUES": [""]}, "RQ_QUEUES = [''] holds the blank", "non-empty", id="q-empty"
    ),
    pytest.param(
        {"RQ_QUEUES": [" "]}, "RQ_QUEUES = [' '] holds the blank", "non-empty", id="q-blank"
    ),
    pytest.param(
        {"RQ_QUEUES": ["a,b"]}, "RQ_QUEUES = ['a,b'] holds 'a,b'", "without commas", id="q-comma"
    ),
    pytest.param(
        {"RQ_QUEUES": ["a", "b", "a"]},
        "RQ_QUEUES = ['a', 'b', 'a'] lists 'a' twice",
        "once",
        id="q-dup",
    ),
    # RQ_QUEUE_CONNECTIONS as a whole
    pytest.param(
        {"RQ_QUEUE_CONNECTIONS": None}, "RQ_QUEUE_CONNECTIONS = None", "use a dict", id="qc-none"
    ),
    pytest.param(
        {"RQ_QUEUE_CONNECTIONS": "email"},
        "RQ_QUEUE_CONNECTIONS = 'email'",
        "use a dict",
        id="qc-str",
    ),
    pytest.param(
        {"RQ_QUEUE_CONNECTIONS": [("a", None)]},
        "RQ_QUEUE_CONNECTIONS = [('a', None)]",
        "use a dict",
        id="qc-list",
    ),
    pytest.param(
        {"RQ_QUEUE_CONNECTIONS": {1: None}},
        "RQ_QUEUE_CONNECTIONS has the key 1",
        "queue names",
        id="qc-key",
    ),
    # references
    pytest.param(
        {"RQ_QUEUE_CONNECTIONS": {"email": "emial"}},
        "RQ_QUEUE_CONNECTIONS['email'] = 'emial' refers to 'emial'",
        "another RQ_QUEUE_CONNECTIONS entry or 'default'",
        id="ref-unknown",
    ),
    pytest.param(
        {"RQ_QUEUE_CONNECTIONS": {"email": "localhost:6379"}},
        "RQ_QUEUE_CONNECTIONS['email'] = 'localhost:6379'",
        "a URL must contain '://'",
        id="ref-url-without-scheme",
    ),
    pytest.param(
        {"RQ_QUEUE_CONNECTIONS": {"a": "a"}},
        "RQ_QUEUE_CONNECTIONS has a reference cycle: a -> a",
        "end the chain at",
        id="cycle-self",
    ),
    pytest.param(
        {"RQ_QUEUE_CONNECTIONS": {"a": "b", "b": "a"}},
        "RQ_QUEUE_CONNECTIONS has a reference cycle: a -> b -> a (RQ_QUEUE_CONNECTIONS['b'] = 'a')",
        "end the chain at",
        id="cycle-two",
    ),
    pytest.param(
        {"RQ_QUEUE_CONNECTIONS": {"x": "a", "a": "b", "b": "c", "c": "a"}},
        "RQ_QUEUE_CONNECTIONS has a reference cycle: a -> b -> c -> a",
        "end the chain at",
        id="cycle-reached-by-a-chain",
    ),
    # URLs and dicts, in an entry and in RQ_CONNECTION
    *value_errors(
        "RQ_QUEUE_CONNECTIONS['email']", lambda v: {"RQ_QUEUE_CONNECTIONS": {"email": v}}
    ),
    *value_errors("RQ_CONNECTION", lambda v: {"RQ_CONNECTION": v}),
    # values of any other type
    *[
        pytest.param(
            {"RQ_QUEUE_CONNECTIONS": {"email": value}},
            f"RQ_QUEUE_CONNECTIONS['email'] = {value!r}",
            "describes a connection rather than holding one",
            id=f"entry-type-{type(value).__name__}",
        )
        for value in OTHER_TYPES
    ],
    *[
        pytest.param(
            {"RQ_CONNECTION": value},
            f"RQ_CONNECTION = {value!r}",
            "describes a connection rather than holding one",
            id=f"rq-connection-type-{type(value).__name__}",
        )
        for value in [*OTHER_TYPES, None, {"host"}]
    ],
    pytest.param(
        {"RQ_CONNECTION": "default"},
        "RQ_CONNECTION = 'default'",
        "redis://, rediss://, unix:// or redis+sentinel:// URL",
        id="rq-connection-reference",
    ),
    # RQ_CONNECTION_CLASS
    *[
        pytest.param(
            {"RQ_CONNECTION_CLASS": path},
            f"RQ_CONNECTION_CLASS = {path!r} cannot be imported",
            "dotted path 'module.Class'",
            id=f"class-import-{path}",
        )
        for path in [
            "nope.Client",
            "redis.asyncio.Nope",
            "redis.asyncio:Nope",
            "Redis",
            "",
            "redis:",
        ]
    ],
    *[
        pytest.param(
            {"RQ_CONNECTION_CLASS": value},
            f"RQ_CONNECTION_CLASS = {value!r} is not a class",
            "redis.asyncio.Redis",
            id=f"class-not-a-class-{i}",
        )
        for i, value in enumerate([None, 42, "redis.asyncio.connection.parse_url", Redis()])
    ],
    pytest.param(
        {"RQ_CONNECTION_CLASS": "redis.asyncio.sentinel.Sentinel"},
        "RQ_CONNECTION_CLASS = 'redis.asyncio.sentinel.Sentinel' is not a Redis client class",
        "for Sentinel, set the connection to a redis+sentinel://",
        id="class-sentinel",
    ),
    *[
        pytest.param(
            {"RQ_CONNECTION_CLASS": value},
            f"RQ_CONNECTION_CLASS = {value!r} is the synchronous Redis client",
            "'redis.asyncio.Redis'",
            id=f"class-sync-{i}",
        )
        for i, value in enumerate([redis.Redis, "redis.Redis"])
    ],
    # RQ_ASYNC
    *[
        pytest.param(
            {"RQ_ASYNC": value},
            f"RQ_ASYNC = {value!r}",
            "True, False or None",
            id=f"async-{value!r}",
        )
        for value in ["false", 0, 1]
    ],
]


@pytest.mark.parametrize(("config", "names", "hint"), ERRORS)
def test_invalid_config_error_names_the_key_and_the_value(
    config: dict[str, Any], names: str, hint: str
) -> None:
    with pytest.raises(ConfigError, match=re.escape(names)):
        plan_from_config(config)


@pytest.mark.parametrize(("config", "names", "hint"), ERRORS)
def test_invalid_config_error_says_what_would_be_valid(
    config: dict[str, Any], names: str, hint: str
) -> None:
    with pytest.raises(ConfigError, match=re.escape(hint)):
        plan_from_config(config)


def test_config_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        plan_from_config({"RQ_QUEUES": "email"})


# -- errors and logs never repeat a password ----------------------------------------------


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("http://:s3cret@email.example", "'http://:***@email.example'"),
        ("redis://user:s3cret@email.example:port", "'redis://user:***@email.example:port'"),
        ({"password": "s3cret", "bogus": 1}, "{'password': '***', 'bogus': 1}"),
    ],
    ids=["url-no-user", "url-user", "dict"],
)
def test_errors_mask_the_password_in_the_value_they_repeat(value: Any, shown: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(shown)) as excinfo:
        plan_from_config({"RQ_QUEUE_CONNECTIONS": {"email": value}})

    assert "s3cret" not in str(excinfo.value)


def test_ignored_default_key_warning_masks_the_password(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="aiorq_flask"):
        plan_from_config({"RQ_QUEUE_CONNECTIONS": {"default": "redis://:s3cret@other.example"}})

    assert "redis://:***@other.example" in caplog.text
    assert "s3cret" not in caplog.text
