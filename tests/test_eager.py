"""start_eagerly and start_each_eagerly: a coroutine's first step runs in the caller's
turn, and a task is left only when there is a rest to run."""

from __future__ import annotations

import asyncio
import contextvars
import inspect
from collections.abc import Coroutine, Iterator
from typing import Any

import pytest

from chanlite._eager import start_each_eagerly, start_eagerly

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


# -- start_each_eagerly ----------------------------------------------------------------


def noting(log: list[tuple[str, object]], name: str) -> Coroutine[Any, Any, None]:
    async def note() -> None:
        log.append((name, asyncio.current_task()))

    return note()


async def test_coroutines_that_never_wait_all_run_in_the_call_in_one_task() -> None:
    log: list[tuple[str, object]] = []
    started = start_each_eagerly([noting(log, name) for name in "abc"])
    assert [name for name, _ in log] == ["a", "b", "c"]
    tasks = {task for _, task in log}
    assert len(tasks) == 1 and asyncio.current_task() not in tasks
    assert started.waiting == {} and started.failed == set()


async def test_one_that_waits_keeps_its_task_and_the_next_start_in_a_new_one() -> None:
    log: list[tuple[str, object]] = []
    gate = asyncio.Event()

    async def waits() -> None:
        log.append(("waits, first step", asyncio.current_task()))
        await gate.wait()
        log.append(("waits, rest", asyncio.current_task()))

    coros = [noting(log, "a"), waits(), noting(log, "c"), noting(log, "d")]
    started = start_each_eagerly(coros)
    assert [name for name, _ in log] == ["a", "waits, first step", "c", "d"]
    assert set(started.waiting) == {1} and started.failed == set()
    first_task, later_task = log[0][1], log[2][1]
    assert log[1][1] is first_task is started.waiting[1]
    assert later_task is not first_task and log[3][1] is later_task
    gate.set()
    await started.waiting[1]
    # The task finishes only the coroutine that waited: nothing runs twice.
    assert [name for name, _ in log] == ["a", "waits, first step", "c", "d", "waits, rest"]
    assert log[-1][1] is first_task


async def test_what_a_first_step_raises_is_kept_and_the_next_one_still_starts() -> None:
    log: list[tuple[str, object]] = []

    async def fail() -> None:
        raise ConnectionResetError("gone")

    started = start_each_eagerly([noting(log, "a"), fail(), noting(log, "c")])
    assert [name for name, _ in log] == ["a", "c"]
    assert started.failed == {1}
    assert started.waiting == {}


async def test_what_the_rest_of_one_that_waited_raises_is_raised_by_its_task() -> None:
    gate = asyncio.Event()

    async def fail_later() -> None:
        await gate.wait()
        raise ConnectionResetError("gone later")

    started = start_each_eagerly([fail_later()])
    gate.set()
    with pytest.raises(ConnectionResetError, match="gone later"):
        await started.waiting[0]
    assert started.failed == set()


class Stop(BaseException):
    pass


async def test_a_base_exception_propagates_and_the_coroutines_after_it_are_closed() -> None:
    log: list[tuple[str, object]] = []

    async def stop() -> None:
        raise Stop

    later = noting(log, "never")
    with pytest.raises(Stop):
        start_each_eagerly([noting(log, "a"), stop(), later])
    assert [name for name, _ in log] == ["a"]
    assert inspect.getcoroutinestate(later) == inspect.CORO_CLOSED


async def test_each_coroutine_is_made_only_once_the_one_before_it_has_ended() -> None:
    # A fan-out holds no list of finished coroutines (see start_each_eagerly).
    log: list[str] = []

    async def step(name: str) -> None:
        log.append(f"{name} runs")

    def made() -> Iterator[Coroutine[Any, Any, None]]:
        for name in "abc":
            log.append(f"{name} made")
            yield step(name)

    start_each_eagerly(made())
    assert log == ["a made", "a runs", "b made", "b runs", "c made", "c runs"]
