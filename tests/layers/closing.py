"""What every built-in layer does once closed: each operation raises ``LayerError``.

A backend's test module mixes :class:`ClosedLayerContract` into its contract class,
which already implements ``make_layer``::

    class TestMemoryLayer(LayerContract, ClosedLayerContract):
        async def make_layer(self, **options):
            return get_layer("memory://", **options)

The tests here close the layers they make themselves, so they never go through the
contract's cleanup (which flushes, and a closed layer refuses that too). The failures
of one backend (a Redis outage, an SQLite error) are tested in its own module.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import pytest

from chanlite import LayerError
from chanlite.layers import BaseChannelLayer

from .contract import PATIENCE

#: Every operation of the layer API that reaches the backend.
OPERATIONS: dict[str, Callable[[BaseChannelLayer], Awaitable[Any]]] = {
    "send": lambda layer: layer.send("closed", {"n": 1}),
    "group_send": lambda layer: layer.group_send("closed", {"n": 1}),
    "receive, not waiting": lambda layer: layer.receive(["closed"], timeout=0),
    "receive, with a timeout": lambda layer: layer.receive(["closed"], timeout=PATIENCE),
    "receive, no timeout": lambda layer: layer.receive(["closed", "closed.too"]),
    "group_add": lambda layer: layer.group_add("closed", "member"),
    "group_discard": lambda layer: layer.group_discard("closed", "member"),
    "group_channels": lambda layer: layer.group_channels("closed"),
    "flush": lambda layer: layer.flush(),
    "stats": lambda layer: layer.stats(),
}


class ClosedLayerContract:
    """A closed layer refuses every operation with ``LayerError``, at once, and so do
    the receives waiting when it closes."""

    pytestmark = pytest.mark.anyio

    async def make_layer(self, **options: Any) -> BaseChannelLayer:
        raise NotImplementedError("a ClosedLayerContract subclass must implement make_layer()")

    @pytest.mark.parametrize("operation", OPERATIONS.values(), ids=OPERATIONS.keys())
    async def test_every_operation_of_a_closed_layer_raises_layer_error(
        self, operation: Callable[[BaseChannelLayer], Awaitable[Any]]
    ) -> None:
        layer = await self.make_layer()
        # Used before, and left empty: closing is what makes it refuse.
        await layer.send("closed", {"n": 0})
        assert await layer.receive(["closed"], timeout=PATIENCE) == ("closed", {"n": 0})
        await layer.aclose()
        with anyio.fail_after(PATIENCE), pytest.raises(LayerError, match="closed by aclose"):
            await operation(layer)
        await layer.aclose()  # closing again is harmless

    async def test_an_async_with_block_closes_the_layer_as_it_ends(self) -> None:
        layer = await self.make_layer()
        async with layer as entered:
            assert entered is layer
            await layer.send("closed", {"n": 0})
            assert await layer.receive(["closed"], timeout=PATIENCE) == ("closed", {"n": 0})
        with anyio.fail_after(PATIENCE), pytest.raises(LayerError, match="closed by aclose"):
            await layer.send("closed", {"n": 1})

    async def test_a_receive_waiting_when_the_layer_closes_raises_layer_error(self) -> None:
        layer = await self.make_layer()
        failures: list[LayerError] = []

        async def receive() -> None:
            try:
                await layer.receive(["waiting"])
            except LayerError as error:
                failures.append(error)

        with anyio.fail_after(PATIENCE):
            async with anyio.create_task_group() as tg:
                tg.start_soon(receive)
                await anyio.wait_all_tasks_blocked()  # the receive waits for a message
                await layer.aclose()
        assert len(failures) == 1
        assert "closed by aclose" in str(failures[0])

    async def test_group_history_of_a_closed_layer_raises_layer_error(self) -> None:
        layer = await self.make_layer(group_history={"closed*": 5})
        await layer.group_send("closed", {"n": 0})
        assert len((await layer.group_history("closed")).messages) == 1
        await layer.aclose()
        with anyio.fail_after(PATIENCE), pytest.raises(LayerError, match="closed by aclose"):
            await layer.group_history("closed")
