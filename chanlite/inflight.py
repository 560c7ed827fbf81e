"""A worker's in-flight accounting: the messages it has taken and not finished.

Every message a worker takes is a :class:`Job` from the moment it leaves its channel
(counted in the same step, so :meth:`InFlight.wait_settled` never misses one that is
neither on its channel nor running) until its consumer and its sends are done.
:class:`InFlight` bounds the jobs at ``limit`` (the worker's ``concurrency``) and
hands out the ``threads`` thread slots that ``def`` consumers run in.

A ``def`` consumer that ran past ``consumer_timeout`` cannot be stopped: its thread
runs on, so its slot stays taken until the function returns
(:meth:`InFlight.thread_hung`, :meth:`InFlight.hung_thread_returned`).
"""

from __future__ import annotations

import asyncio
from types import TracebackType


class InFlight:
    """The jobs a worker runs now, at most ``limit``, and its ``threads`` slots."""

    def __init__(self, limit: int, threads: int) -> None:
        self.limit = limit
        self.threads = threads
        #: Jobs started and not finished.
        self.count = 0
        #: ``def`` consumers still running past ``consumer_timeout``.
        self.hung_threads = 0
        # Slots that finishing jobs owe to hung threads, which hold them until they return.
        self._owed_threads = 0
        self._free_threads = asyncio.Semaphore(threads)
        self._room: asyncio.Future[None] | None = None
        self._settled = asyncio.Event()

    def start(self) -> Job:
        """Count one more job; it ends when the returned :class:`Job` exits."""
        self.count += 1
        return Job(self)

    @property
    def has_room(self) -> bool:
        """Whether another job may start now."""
        return self.count < self.limit

    async def wait_room(self) -> None:
        """Wait until fewer than ``limit`` jobs run."""
        while self.count >= self.limit:
            self._room = asyncio.get_running_loop().create_future()
            try:
                await self._room
            finally:
                self._room = None

    async def wait_settled(self) -> None:
        """Wait until the next job ends."""
        self._settled.clear()
        await self._settled.wait()

    async def take_thread(self, job: Job) -> None:
        """Wait for a free thread slot for ``job``; it gives the slot back as it ends."""
        await self._free_threads.acquire()
        job.threaded = True

    def thread_hung(self) -> None:
        """A ``def`` consumer ran past its timeout: its slot stays taken until it returns."""
        self.hung_threads += 1
        self._owed_threads += 1

    def hung_thread_returned(self) -> None:
        """A ``def`` consumer that ran past its timeout has returned: its slot is free."""
        self.hung_threads -= 1
        self._free_threads.release()

    def _end(self, job: Job) -> None:
        self.count -= 1
        if job.threaded:
            self._release_thread()
        self._settled.set()
        if self._room is not None and not self._room.done():
            self._room.set_result(None)

    def _release_thread(self) -> None:
        if self._owed_threads:
            self._owed_threads -= 1  # kept by a hung thread until it returns
        else:
            self._free_threads.release()


class Job:
    """One message in flight: a context manager that ends it, exactly once, and the
    deadline of the ``async def`` consumer it runs.

    A job whose consumer finishes within the step that started it never needs a
    timer: only once the job's task is known to wait (:meth:`waits_in`) and a
    consumer runs with a deadline is a timer set, which cancels the task when due
    (:attr:`expired` then says why).
    """

    __slots__ = ("_deadline", "_inflight", "_task", "_timer", "expired", "threaded")

    def __init__(self, inflight: InFlight) -> None:
        self._inflight: InFlight | None = inflight
        #: Whether the job holds a thread slot.
        self.threaded = False
        #: Whether the running consumer's deadline passed and its task was cancelled.
        self.expired = False
        self._task: asyncio.Task[None] | None = None
        self._deadline: float | None = None
        self._timer: asyncio.TimerHandle | None = None

    def waits_in(self, task: asyncio.Task[None]) -> None:
        """The job goes on in ``task``: a running consumer's deadline now needs a timer."""
        self._task = task
        self._arm()

    def consumer_started(self, deadline: float) -> None:
        """A consumer with loop-time ``deadline`` starts in this job."""
        self._deadline = deadline
        if self._task is not None:
            self._arm()

    def consumer_ended(self) -> bool:
        """The consumer is done; True if it was cancelled for its deadline (that
        cancellation is then taken back from the task)."""
        self._deadline = None
        if self._timer is None and not self.expired:
            return False  # the common case: it never waited, or ended in time
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        expired, self.expired = self.expired, False
        if expired and self._task is not None:
            self._task.uncancel()
        return expired

    def _arm(self) -> None:
        if self._task is None or self._deadline is None or self._timer is not None:
            return
        self._timer = self._task.get_loop().call_at(self._deadline, self._expire)

    def _expire(self) -> None:
        self._timer = None
        if self._deadline is not None and self._task is not None and not self._task.done():
            self.expired = True
            self._task.cancel()

    def __enter__(self) -> Job:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.end()

    def end(self) -> None:
        """End the job (and give back its thread slot); later calls do nothing."""
        inflight, self._inflight = self._inflight, None
        if inflight is not None:
            inflight._end(self)
