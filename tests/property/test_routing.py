"""Routing never raises on message content, and picks the route DESIGN §3 says it does.

Whatever a message carries (any keys, any value types, any paths), matching returns
either None or the first route in table order whose every filter ``re.match``-es a
str value of the content, with the named groups of all its filters as keyword
arguments.
"""

from __future__ import annotations

import re
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from chanlite import Message, Routes, include, route
from chanlite.routing import Route

SETTINGS = settings(max_examples=200, deadline=None, database=None)
ROOM = r"^/chat/(?P<room>[\w-]+)/$"
INNER_POST = r"^/(?P<year>\d{4})/(?P<slug>[a-z-]+)/$"
BLOG_PREFIX = "/blog"


def connect(message: Message, **kwargs: str) -> None: ...
def receive(message: Message, **kwargs: str) -> None: ...
def receive_any(message: Message, **kwargs: str) -> None: ...
def post(message: Message, **kwargs: str) -> None: ...
def blog_home(message: Message, **kwargs: str) -> None: ...
def task(message: Message, **kwargs: str) -> None: ...


blog = [
    route("http.request", post, path=INNER_POST, method=r"^(?P<method>GET|HEAD)$"),
    route("http.request", blog_home),
]
TABLE = Routes(
    [
        route("websocket.connect", connect, path=ROOM),
        route(["websocket.receive", "websocket.disconnect"], receive, path=ROOM, text=r"^/"),
        route("websocket.receive", receive_any, path=r"^/chat/"),
        include(blog, path=rf"^{BLOG_PREFIX}"),
        route("chat-messages", task),
    ]
)
FLAT: list[Route] = list(TABLE)
CHANNELS = sorted(TABLE.channels)

paths = st.one_of(
    st.from_regex(ROOM, fullmatch=True),
    st.from_regex(BLOG_PREFIX + INNER_POST[1:], fullmatch=True),
    st.from_regex(r"\A/(chat|blog)/.*", fullmatch=True),
    st.text(max_size=30),
)
any_value = st.recursive(
    st.one_of(
        st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=10), st.binary()
    ),
    lambda children: st.one_of(
        st.lists(children, max_size=3), st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=8,
)
filter_keys = st.sampled_from(["path", "method", "text"])
contents = st.dictionaries(
    st.one_of(filter_keys, st.text(max_size=8), st.integers()),
    st.one_of(paths, st.sampled_from(["GET", "HEAD", "POST", "/x"]), any_value),
    max_size=5,
)
channels = st.one_of(st.sampled_from(CHANNELS), st.text(max_size=20))


def expected_match(channel: str, content: dict[Any, Any]) -> tuple[Route, dict[str, str]] | None:
    """The first route for ``channel`` whose filters all match, worked out with ``re``."""
    for item in FLAT:
        if channel not in item.channels:
            continue
        kwargs: dict[str, str] = {}
        for key, pattern in item.patterns.items():
            value = content.get(key)
            found = re.match(pattern, value) if isinstance(value, str) else None
            if found is None:
                break
            kwargs.update(found.groupdict())
        else:
            return item, kwargs
    return None


@SETTINGS
@given(channels, contents)
def test_matching_never_raises_and_picks_the_first_matching_route(
    channel: str, content: dict[Any, Any]
) -> None:
    found = TABLE.match_content(channel, content)
    expected = expected_match(channel, content)
    if expected is None:
        assert found is None
    else:
        assert found is not None
        assert (found[0], found[1]) == expected


@SETTINGS
@given(st.sampled_from(CHANNELS), contents.filter(lambda content: "reply_channel" not in content))
def test_routes_match_on_a_message_agrees(channel: str, content: dict[str, Any]) -> None:
    found = TABLE.match(Message(content, channel))
    expected = expected_match(channel, content)
    assert found == (None if expected is None else (expected[0].consumer, expected[1]))


@SETTINGS
@given(paths, st.sampled_from(["GET", "HEAD"]))
def test_an_include_prefix_is_joined_to_the_inner_filter(path: str, method: str) -> None:
    # The included route matches exactly the paths that start with the prefix and
    # whose rest matches the inner filter on its own.
    found = TABLE.match_content("http.request", {"path": path, "method": method})
    rest = path[len(BLOG_PREFIX) :] if path.startswith(BLOG_PREFIX) else None
    inner = re.match(INNER_POST, rest) if rest is not None else None
    if inner is not None:
        assert found is not None
        assert found[0].consumer is post
        assert found[1] == {**inner.groupdict(), "method": method}
    elif rest is not None:
        assert found is not None and found[0].consumer is blog_home
    else:
        assert found is None
