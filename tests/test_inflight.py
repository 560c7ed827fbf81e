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


async def test_a_consumer_whose_job_waits_past_its_deadline_is_cancelled() -> None:
    loop = asyncio.get_running_loop()
    job = InFlight(limit=2, threads=1).start()
    gate = asyncio.Event()

    async def consumer() -> bool:
        job.consumer_started(loop.time() + 0.01)
        try:
            await gate.wait()
        except asyncio.CancelledError:
            return job.consumer_ended()
        return False

    task = loop.create_task(consumer())
    job.waits_in(task)
    assert await asyncio.wait_for(task, 5) is True
    assert task.cancelling() == 0  # the deadline's cancellation was taken back


async def test_a_job_that_never_waits_sets_no_timer() -> None:
    job = InFlight(limit=2, threads=1).start()
    job.consumer_started(asyncio.get_running_loop().time() - 1)  # already past
    assert job.consumer_ended() is False  # no task to cancel, nothing expired


async def test_a_consumer_that_starts_after_its_job_waits_gets_its_timer_at_once() -> None:
    loop = asyncio.get_running_loop()
    job = InFlight(limit=2, threads=1).start()
    first_wait = asyncio.Event()

    async def ordered_consumers() -> bool:
        await first_wait.wait()  # the job waits before its consumer starts
        job.consumer_started(loop.time() + 0.01)
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            return job.consumer_ended()
        return False

    task = loop.create_task(ordered_consumers())
    job.waits_in(task)
    first_wait.set()
    assert await asyncio.wait_for(task, 5) is True


async def test_a_consumer_that_ends_in_time_is_not_cancelled() -> None:
    loop = asyncio.get_running_loop()
    job = InFlight(limit=2, threads=1).start()

    async def quick() -> bool:
        job.consumer_started(loop.time() + 60)
        await asyncio.sleep(0)
        return job.consumer_ended()

    task = loop.create_task(quick())
    job.waits_in(task)
    assert await asyncio.wait_for(task, 5) is False
