"""start_eagerly: a coroutine's first step runs in the caller's turn, and a task is
left only when there is a rest to run."""

from __future__ import annotations

import asyncio
import contextvars

import pytest

from chanlite._eager import start_eagerly

pytestmark = pytest.mark.anyio

color: contextvars.ContextVar[str] = contextvars.ContextVar("color", default="none")


async def test_a_coroutine_that_never_waits_is_done_when_the_call_returns() -> None:
    ran: list[str] = []

    async def note() -> None:
        ran.append("ran")

    assert start_eagerly(note()) is None
    assert ran == ["ran"]


async def test_a_coroutine_that_waits_runs_its_first_step_now_and_its_rest_as_the_task() -> None:
    steps: list[str] = []
    gate = asyncio.Event()

    async def two_steps() -> str:
        steps.append("first")
        await gate.wait()
        steps.append("rest")
        return "result"

    task = start_eagerly(two_steps())
    assert task is not None and steps == ["first"]
    gate.set()
    assert await task == "result"
    assert steps == ["first", "rest"]


async def test_what_the_first_step_raises_is_raised_by_the_call() -> None:
    async def fail() -> None:
        raise LookupError("from the first step")

    with pytest.raises(LookupError, match="from the first step"):
        start_eagerly(fail())


async def test_the_coroutine_runs_as_a_task_of_its_own_in_the_given_context() -> None:
    seen: list[object] = []
    caller = asyncio.current_task()

    async def look() -> None:
        seen.append(asyncio.current_task())
        seen.append(color.get())
        color.set("changed")

    context = contextvars.copy_context()
    context.run(color.set, "blue")
    assert start_eagerly(look(), context) is None
    assert seen[0] is not caller and seen[0] is not None
    assert seen[1] == "blue"
    assert context[color] == "changed" and color.get() == "none"


async def test_a_timeout_in_the_rest_binds_to_its_own_task() -> None:
    async def waits_too_long() -> str:
        try:
            async with asyncio.timeout(0.01):
                await asyncio.Event().wait()
        except TimeoutError:
            return "timed out"
        return "not reached"

    task = start_eagerly(waits_too_long())
    assert task is not None
    assert await task == "timed out"
