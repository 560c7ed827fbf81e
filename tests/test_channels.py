"""Message, Channel and Group: access, validation, sending and which layer they use."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import threading
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest

import chanlite.runtime as runtime
from chanlite import ChanliteError, Channel, Group, InvalidChannelName, Message, get_layer
from chanlite.layers.base import BaseChannelLayer
from chanlite.layers.memory import InMemoryChannelLayer
from chanlite.protocol import GROUP_KEY, POSITION_KEY
from chanlite.runtime import (
    AppServices,
    ConsumerScope,
    current_app,
    enter_app,
    enter_scope,
    exit_app,
    resolve_layer,
)

T = TypeVar("T")


@pytest.fixture
def layer() -> BaseChannelLayer:
    return get_layer("memory://")


@pytest.fixture
def fresh_runtime(monkeypatch: pytest.MonkeyPatch) -> None:
    """No current app, no cached default layer, no CHANLITE_LAYER."""
    assert current_app() is None
    monkeypatch.setattr(runtime, "_default_layer", None)
    monkeypatch.delenv("CHANLITE_LAYER", raising=False)


def receive_now(layer: BaseChannelLayer, *channels: str) -> tuple[Any, Any]:
    """Take what is waiting on ``channels`` (not waiting), from sync code."""
    return asyncio.run(layer.receive(list(channels), timeout=0))


@contextlib.contextmanager
def app_current(
    layer: BaseChannelLayer, loop: asyncio.AbstractEventLoop | None = None
) -> Iterator[None]:
    """Run the block as code of an app with ``layer`` (and event ``loop``)."""
    token = enter_app(AppServices(layer=layer, loop=loop))
    try:
        yield
    finally:
        exit_app(token)


def in_scope[T](scope: ConsumerScope, fn: Callable[[], T]) -> T:
    """Run ``fn`` as if inside a consumer with ``scope``, in a context of its own."""

    def run() -> T:
        enter_scope(scope)
        return fn()

    return contextvars.Context().run(run)


# -- Message ---------------------------------------------------------------------------


def test_message_reads_like_its_content(layer: BaseChannelLayer) -> None:
    message = Message({"text": "hi", "n": 1}, "chat", layer)
    assert message["text"] == "hi"
    assert message.get("n") == 1
    assert message.get("missing") is None
    assert message.get("missing", "default") == "default"
    assert "text" in message
    assert "missing" not in message
    assert list(message.keys()) == ["text", "n"]
    assert list(message.items()) == [("text", "hi"), ("n", 1)]
    assert list(message) == ["text", "n"]


def test_message_missing_key_raises_key_error() -> None:
    with pytest.raises(KeyError):
        Message({}, "chat")["absent"]


def test_message_channel_and_layer(layer: BaseChannelLayer) -> None:
    message = Message({}, "chat", layer)
    assert message.channel == Channel("chat")
    assert message.channel.layer is layer
    assert message.channel_layer is layer


def test_message_reply_channel(layer: BaseChannelLayer) -> None:
    message = Message({"reply_channel": "chanlite!abc"}, "websocket.connect", layer)
    assert message.reply_channel == Channel("chanlite!abc")
    assert message.reply_channel is not None
    assert message.reply_channel.layer is layer


def test_message_reply_channel_none_when_absent() -> None:
    assert Message({"text": "x"}, "chat").reply_channel is None


def test_message_invalid_reply_channel() -> None:
    with pytest.raises(InvalidChannelName):
        Message({"reply_channel": "not valid"}, "chat")


def test_message_content_must_be_a_dict() -> None:
    with pytest.raises(TypeError, match="must be a dict, not list"):
        Message([("a", 1)], "chat")  # type: ignore[arg-type]


def test_message_channel_name_is_validated() -> None:
    with pytest.raises(InvalidChannelName):
        Message({}, "bad channel")


def test_message_copy_is_deep(layer: BaseChannelLayer) -> None:
    message = Message({"nested": {"list": [1, 2]}, "reply_channel": "p!x"}, "chat", layer)
    clone = message.copy()
    clone["nested"]["list"].append(3)
    clone.content["new"] = True
    assert message.content == {"nested": {"list": [1, 2]}, "reply_channel": "p!x"}
    assert clone.channel == message.channel
    assert clone.reply_channel == message.reply_channel
    assert clone.channel_layer is layer


def test_message_decorator_attributes_absent_by_default() -> None:
    message = Message({}, "chat")
    for name in ("channel_session", "http_session", "user"):
        assert not hasattr(message, name)


def test_message_repr_never_shows_values() -> None:
    message = Message({"password": "hunter2", "token": b"s3cr3t"}, "chat")
    text = repr(message)
    assert text == "<Message channel='chat' keys=['password', 'token']>"
    assert "hunter2" not in text
    assert "s3cr3t" not in text


# -- names -------------------------------------------------------------------------------


def test_channel_name_validated_on_construction() -> None:
    with pytest.raises(InvalidChannelName, match="may contain only"):
        Channel("has space")


def test_group_name_validated_on_construction() -> None:
    with pytest.raises(InvalidChannelName, match="a group name may contain only"):
        Group("p!x")


def test_channel_name_and_repr() -> None:
    channel = Channel("chat-messages")
    assert channel.name == "chat-messages"
    assert repr(channel) == "<Channel 'chat-messages'>"


def test_group_name_and_repr() -> None:
    group = Group("room")
    assert group.name == "room"
    assert repr(group) == "<Group 'room'>"


def test_channels_compare_by_name() -> None:
    assert Channel("a") == Channel("a", get_layer("memory://"))
    assert Channel("a") != Channel("b")
    assert Channel("a") != "a"
    assert len({Channel("a"), Channel("a"), Channel("b")}) == 2


# -- sending outside a consumer (sync, no event loop) ---------------------------------


def test_channel_send_outside_a_consumer_goes_at_once(layer: BaseChannelLayer) -> None:
    Channel("out", layer).send({"text": "hi", "data": b"\x00"})
    assert receive_now(layer, "out") == ("out", {"text": "hi", "data": b"\x00"})


def test_channel_sends_arrive_in_call_order(layer: BaseChannelLayer) -> None:
    channel = Channel("out", layer)
    for index in range(3):
        channel.send({"i": index})
    received = [receive_now(layer, "out")[1]["i"] for _ in range(3)]
    assert received == [0, 1, 2]


def test_channel_send_refuses_bad_content(layer: BaseChannelLayer) -> None:
    with pytest.raises(TypeError, match=r"content\['x'\]"):
        Channel("out", layer).send({"x": object()})
    assert receive_now(layer, "out") == (None, None)


def test_group_add_channels_and_discard(layer: BaseChannelLayer) -> None:
    group = Group("room", layer)
    group.add(Channel("p!a"))
    group.add("p!b")
    assert group.channels() == {"p!a", "p!b"}
    group.discard("p!a")
    group.discard(Channel("p!never"))
    assert group.channels() == {"p!b"}


def test_group_add_refuses_bad_channel_names(layer: BaseChannelLayer) -> None:
    with pytest.raises(InvalidChannelName):
        Group("room", layer).add("bad name")


def test_group_send_reaches_every_member(layer: BaseChannelLayer) -> None:
    group = Group("room", layer)
    group.add("one")
    group.add("two")
    group.send({"text": "all"})
    assert receive_now(layer, "one") == ("one", {"text": "all"})
    assert receive_now(layer, "two") == ("two", {"text": "all"})


# -- async twins ---------------------------------------------------------------------


@pytest.mark.anyio
async def test_channel_asend(layer: BaseChannelLayer) -> None:
    await Channel("out", layer).asend({"text": "async"})
    assert await layer.receive(["out"], timeout=0) == ("out", {"text": "async"})


@pytest.mark.anyio
async def test_group_async_twins(layer: BaseChannelLayer) -> None:
    group = Group("room", layer)
    await group.aadd(Channel("one"))
    await group.aadd("two")
    assert await group.achannels() == {"one", "two"}
    await group.adiscard("two")
    assert await group.achannels() == {"one"}
    await group.asend({"n": 1})
    assert await layer.receive(["one"], timeout=0) == ("one", {"n": 1})
    assert await layer.receive(["two"], timeout=0) == (None, None)


@pytest.mark.anyio
async def test_group_ahistory_reads_the_layers_group_history() -> None:
    layer = get_layer("memory://", group_history={"room-*": 2})
    group = Group("room-1", layer)
    await group.aadd("one")
    for n in range(1, 4):
        await group.asend({"n": n})
    history = await group.ahistory()
    epoch = history.position.partition(":")[0]
    assert history.position == f"{epoch}:3"
    assert history.messages == [(f"{epoch}:2", {"n": 2}), (f"{epoch}:3", {"n": 3})]
    assert history.complete
    assert (await group.ahistory(since=f"{epoch}:2")).messages == [(f"{epoch}:3", {"n": 3})]
    assert (await group.ahistory(limit=1)).messages == [(f"{epoch}:3", {"n": 3})]
    assert (await group.ahistory(since=f"{epoch}:0")).complete is False
    # Members get each message stamped with its group and position.
    received = await layer.receive(["one"], timeout=0)
    assert received == ("one", {"n": 1, GROUP_KEY: "room-1", POSITION_KEY: f"{epoch}:1"})


def test_group_history_from_sync_code() -> None:
    layer = get_layer("memory://", group_history={"room-*": 5})
    group = Group("room-2", layer)
    group.send({"n": 1})
    history = group.history()
    assert [content for _, content in history.messages] == [{"n": 1}]
    assert history.position is not None and history.position.endswith(":1")


@pytest.mark.anyio
async def test_group_without_history_has_an_empty_one(layer: BaseChannelLayer) -> None:
    group = Group("room", layer)
    await group.asend({"n": 1})
    history = await group.ahistory()
    assert (history.messages, history.position, history.complete) == ([], None, True)


@pytest.mark.anyio
async def test_blocking_channel_send_in_a_running_loop_raises(layer: BaseChannelLayer) -> None:
    with pytest.raises(ChanliteError, match="asend"):
        Channel("out", layer).send({"x": 1})
    assert await layer.receive(["out"], timeout=0) == (None, None)


@pytest.mark.anyio
@pytest.mark.parametrize("call", ["add", "discard", "send", "channels", "history"])
async def test_blocking_group_calls_in_a_running_loop_raise(
    layer: BaseChannelLayer, call: str
) -> None:
    group = Group("room", layer)
    args: tuple[Any, ...] = {
        "add": ("c",),
        "discard": ("c",),
        "send": ({},),
        "channels": (),
        "history": (),
    }[call]
    with pytest.raises(ChanliteError, match="async twin"):
        getattr(group, call)(*args)


# -- buffering inside a consumer scope -----------------------------------------------


def test_send_inside_a_consumer_is_buffered_until_flush(layer: BaseChannelLayer) -> None:
    scope = ConsumerScope(layer)
    in_scope(scope, lambda: Channel("out").send({"n": 1}))
    in_scope(scope, lambda: Group("room").send({"n": 2}))
    assert receive_now(layer, "out") == (None, None)
    assert [(is_group, name) for is_group, name, _ in scope.outbox] == [
        (False, "out"),
        (True, "room"),
    ]
    asyncio.run(scope.flush())
    assert receive_now(layer, "out") == ("out", {"n": 1})
    assert scope.outbox == []


def test_immediately_skips_the_buffer(layer: BaseChannelLayer) -> None:
    scope = ConsumerScope(layer)
    in_scope(scope, lambda: Channel("out").send({"n": 1}, immediately=True))
    assert scope.outbox == []
    assert receive_now(layer, "out") == ("out", {"n": 1})


def test_send_to_another_layer_inside_a_consumer_goes_at_once(layer: BaseChannelLayer) -> None:
    other = get_layer("memory://")
    scope = ConsumerScope(layer)
    in_scope(scope, lambda: Channel("out", other).send({"n": 1}))
    assert scope.outbox == []
    assert receive_now(other, "out") == ("out", {"n": 1})


def test_group_add_inside_a_consumer_acts_at_once(layer: BaseChannelLayer) -> None:
    scope = ConsumerScope(layer)
    in_scope(scope, lambda: Group("room").add("p!x"))
    assert scope.outbox == []
    assert Group("room", layer).channels() == {"p!x"}


def test_accept_on_the_reply_channel_marks_the_scope(layer: BaseChannelLayer) -> None:
    scope = ConsumerScope(layer, reply_channel="p!x")
    in_scope(scope, lambda: Channel("p!other").send({"accept": True}))
    assert not scope.accepted
    in_scope(scope, lambda: Channel("p!x").send({"text": "hello"}))
    assert scope.accepted


# -- which layer -----------------------------------------------------------------------


def test_explicit_layer_wins(layer: BaseChannelLayer, fresh_runtime: None) -> None:
    other = get_layer("memory://")
    with app_current(other):
        assert Channel("x", layer).layer is layer
        assert Group("g", layer).layer is layer
        assert in_scope(ConsumerScope(other), lambda: Channel("x", layer).layer) is layer


def test_consumer_layer_comes_next(layer: BaseChannelLayer, fresh_runtime: None) -> None:
    app_layer = get_layer("memory://")
    with app_current(app_layer):
        assert in_scope(ConsumerScope(layer), lambda: Channel("x").layer) is layer
        assert in_scope(ConsumerScope(layer), lambda: Group("g").layer) is layer


def test_app_layer_comes_next(layer: BaseChannelLayer, fresh_runtime: None) -> None:
    with app_current(layer):
        assert Channel("x").layer is layer
        assert Group("g").layer is layer
        Channel("x").send({"via": "app"})
        assert receive_now(layer, "x") == ("x", {"via": "app"})
    assert current_app() is None


def test_env_layer_comes_next(fresh_runtime: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHANLITE_LAYER", "memory://?capacity=7")
    resolved = Channel("x").layer
    assert isinstance(resolved, InMemoryChannelLayer)
    assert resolved.capacity == 7
    assert Group("g").layer is resolved


def test_default_is_one_process_wide_memory_layer(fresh_runtime: None) -> None:
    resolved = resolve_layer()
    assert isinstance(resolved, InMemoryChannelLayer)
    assert resolved.capacity == 100
    assert Channel("x").layer is resolved
    assert Group("g").layer is resolved


def test_default_layer_send_and_read_back(fresh_runtime: None) -> None:
    Channel("script-out").send({"from": "script"})
    assert receive_now(resolve_layer(), "script-out") == ("script-out", {"from": "script"})


class LoopRecordingLayer(InMemoryChannelLayer):
    """A memory layer that records the event loop each send ran on."""

    def __init__(self) -> None:
        super().__init__()
        self.loops: list[asyncio.AbstractEventLoop] = []

    async def send_encoded(self, channel: str, payload: bytes) -> None:
        self.loops.append(asyncio.get_running_loop())
        await super().send_encoded(channel, payload)


@pytest.fixture
def app_loop() -> Iterator[asyncio.AbstractEventLoop]:
    """An event loop running in a thread of its own, as a server's would."""
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    thread = threading.Thread(target=_serve_loop, args=(loop, ready), daemon=True)
    thread.start()
    assert ready.wait(5)
    yield loop
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)
    loop.close()


def _serve_loop(loop: asyncio.AbstractEventLoop, ready: threading.Event) -> None:
    asyncio.set_event_loop(loop)
    loop.call_soon(ready.set)
    loop.run_forever()


def test_sync_send_runs_on_the_app_loop(
    fresh_runtime: None, app_loop: asyncio.AbstractEventLoop
) -> None:
    layer = LoopRecordingLayer()
    with app_current(layer, app_loop):
        Channel("x").send({"n": 1})
    assert layer.loops == [app_loop]
    assert receive_now(layer, "x") == ("x", {"n": 1})


def test_sync_send_without_an_app_loop_uses_a_background_loop(fresh_runtime: None) -> None:
    layer = LoopRecordingLayer()
    Channel("x", layer).send({"n": 1})
    Channel("x", layer).send({"n": 2})
    assert len(layer.loops) == 2
    assert layer.loops[0] is layer.loops[1]
    assert layer.loops[0].is_running()


def test_sync_send_from_a_thread(layer: BaseChannelLayer) -> None:
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            Channel("from-thread", layer).send({"ok": True})
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join(5)
    assert errors == []
    assert receive_now(layer, "from-thread") == ("from-thread", {"ok": True})
