"""Routing: marking, tables, filters, includes, matching and the served defaults."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from chanlite import Message, Routes, consumer, include, route
from chanlite.default_routes import default_connect, drop, served_routes
from chanlite.exceptions import ConfigurationError, ImportStringError
from chanlite.routing import Route, flatten

MakeModule = Callable[[str, str], ModuleType]


def first(message: Any, **kwargs: Any) -> None:
    """A consumer."""


def second(message: Any, **kwargs: Any) -> None:
    """Another consumer."""


async def async_consumer(message: Any, **kwargs: Any) -> None:
    """An async consumer."""


@pytest.fixture
def make_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[MakeModule]:
    """Write and import a module from a temporary directory; forget it afterwards."""
    monkeypatch.syspath_prepend(str(tmp_path))
    before = set(sys.modules)

    def make(name: str, source: str) -> ModuleType:
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
        __import__(name)
        return sys.modules[name]

    yield make
    for name in set(sys.modules) - before:
        del sys.modules[name]


def matched(routes: Routes, channel: str, **content: Any) -> tuple[Any, dict[str, str]] | None:
    return routes.match(Message(content, channel))


# -- consumer() marks ----------------------------------------------------------------


def test_consumer_returns_the_function_unchanged() -> None:
    def fn(message: Any) -> None:
        pass

    assert consumer("chat")(fn) is fn


def test_consumer_marks_a_route() -> None:
    @consumer("chat", kind=r"^a$")
    def fn(message: Any) -> None:
        pass

    [only] = flatten([fn])
    assert only.channels == ("chat",)
    assert only.consumer is fn
    assert only.patterns == {"kind": "^a$"}


def test_stacked_consumer_marks_keep_top_down_order() -> None:
    @consumer("websocket.connect", path=r"^/a/$")
    @consumer("websocket.keepalive")
    @consumer("websocket.receive", path=r"^/b/$")
    def fn(message: Any) -> None:
        pass

    channels = [item.channels for item in flatten([fn])]
    assert channels == [("websocket.connect",), ("websocket.keepalive",), ("websocket.receive",)]


def test_consumer_checks_filters_when_marking_and_names_the_function() -> None:
    with pytest.raises(ValueError, match=r"positional group") as info:

        @consumer("chat", path=r"^/(\d+)/$")
        def numbered(message: Any) -> None:
            pass

    assert "numbered" in str(info.value)


def test_consumer_checks_the_channel_name() -> None:
    with pytest.raises(ValueError, match="invalid name 'bad name'"):
        consumer("bad name")


def test_routes_consumer_registers_in_the_table() -> None:
    routes = Routes()

    @routes.consumer("chat", room=r"^(?P<room>\w+)$")
    def fn(message: Any, room: str) -> None:
        pass

    assert [item.consumer for item in routes] == [fn]
    assert matched(routes, "chat", room="lobby") == (fn, {"room": "lobby"})


def test_routes_consumer_returns_the_function_unmarked() -> None:
    routes = Routes()

    def fn(message: Any) -> None:
        pass

    assert routes.consumer("chat")(fn) is fn
    assert not hasattr(fn, "__chanlite_routes__")


def test_routes_consumer_registers_in_decoration_order() -> None:
    routes = Routes()
    routes.consumer("a")(first)
    routes.consumer("b")(second)
    assert [item.consumer for item in routes] == [first, second]


def test_routes_consumer_bad_filter_names_the_function() -> None:
    routes = Routes()
    with pytest.raises(ValueError, match="not a valid regex") as info:

        @routes.consumer("chat", path=r"^(?P<x>")
        def broken(message: Any) -> None:
            pass

    assert "broken" in str(info.value)
    assert len(routes) == 0


# -- route() -----------------------------------------------------------------------


def test_route_with_one_channel() -> None:
    item = route("chat", first)
    assert item.channels == ("chat",)
    assert item.consumer is first


def test_route_with_a_list_of_channels() -> None:
    routes = Routes([route(["a", "b"], first)])
    assert routes.channels == {"a", "b"}
    assert matched(routes, "a") == (first, {})
    assert matched(routes, "b") == (first, {})
    assert matched(routes, "c") is None


def test_route_with_no_channels() -> None:
    with pytest.raises(ValueError, match="at least one channel"):
        route([], first)


def test_route_to_a_string_consumer(make_module: MakeModule) -> None:
    module = make_module("rt_strcons", "def handler(message):\n    pass\n")
    assert route("chat", "rt_strcons:handler").consumer is module.handler


def test_route_to_an_unresolvable_string_consumer() -> None:
    with pytest.raises(ImportStringError, match="could not import module"):
        route("chat", "rt_no_such_module:handler")


def test_route_to_something_not_callable(make_module: MakeModule) -> None:
    make_module("rt_notcallable", "handler = 3\n")
    with pytest.raises(ImportStringError, match="is not callable"):
        route("chat", "rt_notcallable:handler")


def test_route_knows_async_consumers() -> None:
    assert route("a", async_consumer).is_async
    assert not route("a", first).is_async


# -- filters -----------------------------------------------------------------------


def test_filters_are_anded() -> None:
    routes = Routes([route("http.request", first, path=r"^/poll/$", method=r"^POST$")])
    assert matched(routes, "http.request", path="/poll/", method="POST") == (first, {})
    assert matched(routes, "http.request", path="/poll/", method="GET") is None
    assert matched(routes, "http.request", path="/other/", method="POST") is None


def test_filter_key_missing_from_content_does_not_match() -> None:
    routes = Routes([route("chat", first, path=r"^/")])
    assert matched(routes, "chat", other="/") is None


def test_filters_use_re_match_anchored_at_start() -> None:
    routes = Routes([route("chat", first, path=r"/x")])
    assert matched(routes, "chat", path="/x/y") == (first, {})
    assert matched(routes, "chat", path="/a/x") is None


def test_named_groups_become_kwargs() -> None:
    routes = Routes(
        [route("chat", first, path=r"^/(?P<room>\w+)/$", method=r"^(?P<verb>GET|POST)$")]
    )
    assert matched(routes, "chat", path="/lobby/", method="GET") == (
        first,
        {"room": "lobby", "verb": "GET"},
    )


def test_non_capturing_groups_are_allowed() -> None:
    routes = Routes([route("chat", first, path=r"^/(?:a|b)/$")])
    assert matched(routes, "chat", path="/b/") == (first, {})


def test_positional_group_fails_when_the_route_is_built() -> None:
    with pytest.raises(ValueError) as info:
        route("chat", first, path=r"^/(\w+)/$")
    message = str(info.value)
    assert "positional group" in message
    assert "path=" in message
    assert "first" in message


# Every mistake in a table that building it finds (bad names aside), one of each kind.
BAD_TABLES: dict[str, Callable[[], object]] = {
    "positional group": lambda: route("chat", first, path=r"^/(\w+)/$"),
    "invalid regex": lambda: route("chat", first, path=r"^("),
    "filter not a string": lambda: route("chat", first, path=3),  # type: ignore[arg-type]
    "no channels": lambda: route([], first),
    "marked with a positional group": lambda: consumer("chat", path=r"^(\d+)$")(first),
    "include prefix without ^": lambda: Routes(
        [include([route("c", first, path="^/x")], path="/c")]
    ),
    "include prefix with $": lambda: Routes(
        [include([route("c", first, path="^/x")], path="^/c$")]
    ),
    "inner filter without ^": lambda: Routes([include([route("c", first, path="/x")], path="^/c")]),
}


@pytest.mark.parametrize("build", BAD_TABLES.values(), ids=BAD_TABLES.keys())
def test_table_mistakes_are_configuration_errors_and_still_value_errors(
    build: Callable[[], object],
) -> None:
    with pytest.raises(ConfigurationError) as info:
        build()
    assert isinstance(info.value, ValueError)  # what the routing contract promises


def test_invalid_regex() -> None:
    with pytest.raises(ValueError, match=r"filter path='\^\(' of route to .*first is not a valid"):
        route("chat", first, path=r"^(")


@pytest.mark.parametrize("value", [3, None, b"^/x", ["^/x"]])
def test_non_string_filter(value: object) -> None:
    with pytest.raises(ValueError, match=r"filter 'path' of route to .* must be a regex string"):
        route("chat", first, path=value)  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [3, None, b"/x", ["/x"], {"a": "/x"}, 1.5, True])
def test_non_str_content_values_never_match_and_never_raise(value: object) -> None:
    routes = Routes([route("chat", first, path=r".*")])
    assert matched(routes, "chat", path=value) is None


def test_first_match_wins() -> None:
    routes = Routes(
        [
            route("chat", first, path=r"^/special/$"),
            route("chat", second, path=r"^/"),
            route("chat", async_consumer),
        ]
    )
    assert matched(routes, "chat", path="/special/") == (first, {})
    assert matched(routes, "chat", path="/other/") == (second, {})
    assert matched(routes, "chat", path=3) == (async_consumer, {})


def test_routes_on_other_channels_do_not_match() -> None:
    routes = Routes([route("a", first)])
    assert matched(routes, "b") is None


# -- include() -----------------------------------------------------------------------


def test_include_joins_prefix_and_pattern() -> None:
    chat = [route("websocket.connect", first, path=r"^/(?P<room>\w+)/$")]
    routes = Routes([include(chat, path=r"^/chat")])
    [item] = routes
    assert item.patterns == {"path": r"^/chat/(?P<room>\w+)/$"}
    assert matched(routes, "websocket.connect", path="/chat/lobby/") == (first, {"room": "lobby"})
    assert matched(routes, "websocket.connect", path="/lobby/") is None


def test_include_prefix_applies_alone_when_inner_lacks_the_key() -> None:
    routes = Routes([include([route("websocket.disconnect", first)], path=r"^/chat")])
    assert matched(routes, "websocket.disconnect", path="/chat/lobby/") == (first, {})
    assert matched(routes, "websocket.disconnect", path="/other/") is None


def test_include_prefix_named_groups_become_kwargs() -> None:
    inner = [route("chat", first, path=r"^/(?P<room>\w+)/$")]
    routes = Routes([include(inner, path=r"^/(?P<site>\w+)")])
    assert matched(routes, "chat", path="/main/lobby/") == (
        first,
        {"site": "main", "room": "lobby"},
    )


def test_include_adds_filters_for_other_keys() -> None:
    inner = [route("http.request", first, path=r"^/poll/$")]
    routes = Routes([include(inner, method=r"^POST$")])
    assert matched(routes, "http.request", path="/poll/", method="POST") == (first, {})
    assert matched(routes, "http.request", path="/poll/", method="GET") is None


def test_include_prefix_without_caret() -> None:
    inner = [route("chat", first, path=r"^/(?P<room>\w+)/$")]
    with pytest.raises(ValueError) as info:
        Routes([include(inner, path=r"/chat")])
    message = str(info.value)
    assert "path='/chat'" in message
    assert "must start with '^'" in message
    assert "<Route chat -> " in message
    assert "first" in message


def test_include_prefix_with_dollar() -> None:
    inner = [route("chat", first, path=r"^/x/$")]
    with pytest.raises(ValueError) as info:
        Routes([include(inner, path=r"^/chat$")])
    message = str(info.value)
    assert "must not contain '$'" in message
    assert "path='^/chat$'" in message
    assert "first" in message


def test_include_prefix_with_escaped_dollar_is_fine() -> None:
    inner = [route("chat", first, path=r"^/x/$")]
    routes = Routes([include(inner, path=r"^/\$")])
    assert matched(routes, "chat", path="/$/x/") == (first, {})


def test_include_over_inner_pattern_without_caret() -> None:
    inner = [route("chat", first, path=r"/(?P<room>\w+)/$")]
    with pytest.raises(ValueError) as info:
        Routes([include(inner, path=r"^/chat")])
    message = str(info.value)
    assert "path='/(?P<room>\\\\w+)/$'" in message
    assert "must start with '^'" in message
    assert "first" in message


def test_nested_includes() -> None:
    rooms = [route("chat", first, path=r"^/(?P<room>\w+)/$")]
    chat = [include(rooms, path=r"^/rooms")]
    routes = Routes([include(chat, path=r"^/chat")])
    [item] = routes
    assert item.patterns["path"] == r"^/chat/rooms/(?P<room>\w+)/$"
    assert matched(routes, "chat", path="/chat/rooms/lobby/") == (first, {"room": "lobby"})


def test_include_of_a_module_attr_string(make_module: MakeModule) -> None:
    module = make_module(
        "rt_included",
        """
        from chanlite import route

        def handler(message, room):
            pass

        routing = [route("websocket.connect", handler, path=r"^/(?P<room>\\w+)/$")]
        """,
    )
    routes = Routes([include("rt_included:routing", path=r"^/chat")])
    assert matched(routes, "websocket.connect", path="/chat/lobby/") == (
        module.handler,
        {"room": "lobby"},
    )


def test_include_of_a_routes_object() -> None:
    inner = Routes()
    inner.consumer("chat", path=r"^/(?P<room>\w+)/$")(first)
    routes = Routes([include(inner, path=r"^/chat")])
    assert matched(routes, "chat", path="/chat/x/") == (first, {"room": "x"})


def test_include_of_marked_function() -> None:
    @consumer("chat", path=r"^/(?P<room>\w+)/$")
    def fn(message: Any, room: str) -> None:
        pass

    routes = Routes([include([fn], path=r"^/chat")])
    assert matched(routes, "chat", path="/chat/x/") == (fn, {"room": "x"})


def test_include_does_not_change_the_inner_table() -> None:
    inner = [route("chat", first, path=r"^/x/$")]
    Routes([include(inner, path=r"^/chat")])
    assert inner[0].patterns == {"path": r"^/x/$"}


# -- tables ------------------------------------------------------------------------


def test_routes_from_a_mixed_list() -> None:
    @consumer("marked")
    def marked(message: Any) -> None:
        pass

    table = [
        route("a", first),
        include([route("b", second, path=r"^/x")], path=r"^/inc"),
        marked,
    ]
    routes = Routes(table)
    assert [(item.channels, item.consumer) for item in routes] == [
        (("a",), first),
        (("b",), second),
        (("marked",), marked),
    ]


def test_routes_from_a_tuple_and_nested_lists() -> None:
    routes = Routes((route("a", first), [route("b", second)]))
    assert [item.consumer for item in routes] == [first, second]


def test_routes_from_a_module_attr_string(make_module: MakeModule) -> None:
    module = make_module(
        "rt_table",
        """
        from chanlite import route

        def handler(message):
            pass

        routes = [route("chat", handler)]
        """,
    )
    assert [item.consumer for item in Routes("rt_table:routes")] == [module.handler]


def test_routes_from_another_routes() -> None:
    inner = Routes([route("a", first)])
    assert [item.consumer for item in Routes(inner)] == [first]


def test_routes_rejects_unknown_table_items() -> None:
    with pytest.raises(TypeError, match="a routing table must be"):
        Routes([route("a", first), 42])


def test_routes_rejects_unmarked_functions() -> None:
    with pytest.raises(TypeError, match="not function"):
        Routes([first])


def test_routes_from_module_in_definition_order(make_module: MakeModule) -> None:
    module = make_module(
        "rt_marked",
        """
        from chanlite import consumer

        @consumer("zeta")
        def zulu(message):
            pass

        helper = 1

        @consumer("alpha", path=r"^/(?P<room>\\w+)/$")
        @consumer("beta")
        def alpha(message, room=None):
            pass

        def unmarked(message):
            pass

        @consumer("mid")
        async def mike(message):
            pass
        """,
    )
    routes = Routes.from_module(module)
    assert [(item.channels, item.consumer) for item in routes] == [
        (("zeta",), module.zulu),
        (("alpha",), module.alpha),
        (("beta",), module.alpha),
        (("mid",), module.mike),
    ]
    assert matched(routes, "alpha", path="/lobby/") == (module.alpha, {"room": "lobby"})


def test_routes_from_module_by_name(make_module: MakeModule) -> None:
    module = make_module(
        "rt_by_name",
        """
        from chanlite import consumer

        @consumer("chat")
        def handler(message):
            pass
        """,
    )
    assert [item.consumer for item in Routes.from_module("rt_by_name")] == [module.handler]


def test_flatten_a_module_collects_its_marks(make_module: MakeModule) -> None:
    module = make_module(
        "rt_flatten_mod",
        """
        from chanlite import consumer

        @consumer("chat")
        def handler(message):
            pass
        """,
    )
    assert [item.consumer for item in Routes([module])] == [module.handler]


def test_routes_channels() -> None:
    routes = Routes([route(["a", "b"], first), route("c", second)])
    assert routes.channels == {"a", "b", "c"}
    assert len(routes) == 2


# -- match ---------------------------------------------------------------------------


def test_match_returns_consumer_and_kwargs() -> None:
    routes = Routes([route("chat", first, path=r"^/(?P<room>\w+)/$")])
    assert routes.match(Message({"path": "/x/"}, "chat")) == (first, {"room": "x"})


def test_match_returns_none_when_nothing_matches() -> None:
    routes = Routes([route("chat", first, path=r"^/(?P<room>\w+)/$")])
    assert routes.match(Message({"path": "nope"}, "chat")) is None


def test_match_of_an_empty_table() -> None:
    assert Routes().match(Message({}, "chat")) is None


def test_match_does_not_include_the_served_defaults() -> None:
    assert Routes([route("chat", first)]).match(Message({}, "websocket.connect")) is None


# -- served routes -------------------------------------------------------------------


def test_served_routes_append_the_default_connect_last() -> None:
    routes = Routes([route("chat", first)])
    served = served_routes(routes)
    assert [item.consumer for item in served] == [first, default_connect, drop]
    assert served.match(Message({"path": "/"}, "websocket.connect")) == (default_connect, {})


def test_routed_connect_wins_over_the_default() -> None:
    served = served_routes(Routes([route("websocket.connect", first, path=r"^/chat/")]))
    assert served.match(Message({"path": "/chat/x"}, "websocket.connect")) == (first, {})
    assert served.match(Message({"path": "/other"}, "websocket.connect")) == (default_connect, {})


def test_served_routes_drop_receive_and_disconnect() -> None:
    served = served_routes(Routes())
    assert served.match(Message({}, "websocket.receive")) == (drop, {})
    assert served.match(Message({}, "websocket.disconnect")) == (drop, {})


def test_served_routes_leave_the_table_alone() -> None:
    routes = Routes([route("chat", first)])
    served_routes(routes)
    assert [item.consumer for item in routes] == [first]


# -- repr ------------------------------------------------------------------------------


def test_route_repr() -> None:
    item = route(["a", "b"], first, path=r"^/x/$", method="^GET$")
    assert repr(item) == f"<Route a,b -> {__name__}.first path='^/x/$' method='^GET$'>"


def test_route_repr_without_filters() -> None:
    assert repr(route("a", async_consumer)) == f"<Route a -> {__name__}.async_consumer>"


def test_route_name_is_the_qualified_name() -> None:
    assert route("a", first).name == f"{__name__}.first"
    assert isinstance(route("a", first), Route)


def test_routes_repr() -> None:
    assert repr(Routes([route("a", first), route("b", second)])) == "<Routes 2 routes>"
