"""The worker's in-flight accounting: jobs, room, thread slots and hung threads."""

from __future__ import annotations

import asyncio

import pytest

from chanlite.inflight import InFlight

pytestmark = pytest.mark.anyio


async def test_a_job_counts_until_it_ends_and_ends_only_once() -> None:
    inflight = InFlight(limit=2, threads=1)
    job = inflight.start()
    assert inflight.count == 1
    with job:
        pass
    job.end()
    assert inflight.count == 0


async def test_room_comes_back_when_a_job_ends() -> None:
    inflight = InFlight(limit=1, threads=1)
    job = inflight.start()
    assert not inflight.has_room
    waiting = asyncio.get_running_loop().create_task(inflight.wait_room())
    await asyncio.sleep(0)
    assert not waiting.done()
    job.end()
    await asyncio.wait_for(waiting, 5)
    assert inflight.has_room


async def test_wait_settled_returns_when_a_job_ends() -> None:
    inflight = InFlight(limit=2, threads=1)
    job = inflight.start()
    settled = asyncio.get_running_loop().create_task(inflight.wait_settled())
    await asyncio.sleep(0)
    assert not settled.done()
    job.end()
    await asyncio.wait_for(settled, 5)


async def test_a_thread_slot_is_given_back_as_its_job_ends() -> None:
    inflight = InFlight(limit=4, threads=1)
    first = inflight.start()
    await inflight.take_thread(first)
    second = inflight.start()
    taking = asyncio.get_running_loop().create_task(inflight.take_thread(second))
    await asyncio.sleep(0)
    assert not taking.done() and not second.threaded
    first.end()
    await asyncio.wait_for(taking, 5)
    assert second.threaded


async def test_a_hung_thread_keeps_its_slot_until_it_returns() -> None:
    inflight = InFlight(limit=4, threads=1)
    job = inflight.start()
    await inflight.take_thread(job)
    inflight.thread_hung()
    job.end()  # the job is over, but its thread runs on
    assert inflight.count == 0 and inflight.hung_threads == 1
    other = inflight.start()
    taking = asyncio.get_running_loop().create_task(inflight.take_thread(other))
    await asyncio.sleep(0)
    assert not taking.done()
    inflight.hung_thread_returned()
    await asyncio.wait_for(taking, 5)
    assert inflight.hung_threads == 0
