"""A worker app for fault tests: every processed job leaves a durable trace.

``chanlite worker tests.apps.faults:routes`` with ``CHANLITE_FAULTS_DIR`` set runs
:func:`record`, which appends the job's ``id`` as one line to
``$CHANLITE_FAULTS_DIR/<pid>.log``. Each line is a single ``write`` on a file opened
with ``O_APPEND``: it is in the kernel's page cache when the consumer returns, so it
survives a SIGKILL of the worker a moment later, and lines from the worker's threads
never interleave. A test reads every worker's file to see which ids were processed,
by whom, and how often.

The same table serves the WebSocket side of the fault tests: ``/echo/`` echoes each
frame, ``/room/<name>/`` is a chat room (a group), and ``/slow/`` runs a consumer that
takes as many seconds as the frame says.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from chanlite import Group, Message, Routes

#: The channel the fault tests send numbered jobs to.
JOBS = "faults.jobs"
#: The directory the per-process logs go to.
DIR_ENV = "CHANLITE_FAULTS_DIR"

routes = Routes()
_log_fd: int | None = None
_log_lock = threading.Lock()


def log_path(directory: Path, pid: int) -> Path:
    """The log of worker process ``pid`` under ``directory``."""
    return directory / f"{pid}.log"


def _log() -> int:
    """This process's log, opened once for appending."""
    global _log_fd
    with _log_lock:
        if _log_fd is None:
            path = log_path(Path(os.environ[DIR_ENV]), os.getpid())
            _log_fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        return _log_fd


@routes.consumer(JOBS)
def record(message: Message) -> None:
    """Append the job's id to this process's log (``def``: runs in a worker thread)."""
    os.write(_log(), f"{message['id']}\n".encode())


@routes.consumer("websocket.receive", path=r"^/echo/$")
async def echo(message: Message) -> None:
    await message.reply_channel.asend({"text": message["text"]})  # type: ignore[union-attr]


@routes.consumer("websocket.connect", path=r"^/room/(?P<room>[\w-]+)/$")
async def join(message: Message, room: str) -> None:
    await message.reply_channel.asend({"accept": True})  # type: ignore[union-attr]
    await Group(f"room-{room}").aadd(message.reply_channel)  # type: ignore[arg-type]


@routes.consumer("websocket.receive", path=r"^/room/(?P<room>[\w-]+)/$")
async def say(message: Message, room: str) -> None:
    await Group(f"room-{room}").asend({"text": message["text"]})


@routes.consumer("websocket.receive", path=r"^/slow/$")
def slow(message: Message) -> None:
    """Replies ``started:<pid>`` at once, sleeps as many seconds as the frame says,
    then replies ``finished`` (buffered: it leaves only when the consumer returns)."""
    reply = message.reply_channel
    assert reply is not None
    reply.send({"text": f"started:{os.getpid()}"}, immediately=True)
    time.sleep(float(message["text"]))
    reply.send({"text": "finished"})
