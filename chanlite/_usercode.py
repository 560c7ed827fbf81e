"""Tell an error in the user's own code from chanlite's, and show it as the user's.

The CLI imports the user's module. When that fails inside their code (a SyntaxError,
a NameError at import, a bad route filter, a missing dependency of theirs), the
report shows their file, line and code, not the frames of ``chanlite`` and
``importlib`` that ran it. An error with no frame of theirs (a module that does not
exist) is chanlite's own to report, and is left alone.
"""

from __future__ import annotations

import contextlib
import importlib
import traceback
from collections.abc import Iterator
from pathlib import Path

# Frames from these directories are chanlite's or the import system's, never the user's.
_OWN_DIRECTORIES = tuple(
    Path(module.__file__).resolve().parent
    for module in (importlib.import_module("chanlite"), importlib)
    if module.__file__ is not None
)


class UserCodeError(Exception):
    """The user's code raised ``error`` while chanlite ran it; ``report`` shows it
    as theirs (see :func:`user_traceback`)."""

    def __init__(self, error: BaseException, report: str) -> None:
        self.error = error
        self.report = report
        super().__init__(report)


@contextlib.contextmanager
def running_user_code() -> Iterator[None]:
    """Raise :class:`UserCodeError` for an exception raised in a frame of the user's
    code inside the block; let any other exception through unchanged."""
    try:
        yield
    except Exception as exc:
        report = user_traceback(exc)
        if report is None:
            raise
        raise UserCodeError(exc, report) from exc


def user_traceback(exc: BaseException) -> str | None:
    """The report of ``exc`` as an error in the user's code, or None when no frame
    of the user's code raised it.

    A SyntaxError shows its file, line, code and caret; any other exception shows
    a traceback of the user's frames only, then the exception itself.
    """
    if isinstance(exc, SyntaxError):
        if exc.filename is None or _is_own_file(exc.filename):
            return None
        return "".join(traceback.format_exception_only(exc))
    stack = traceback.extract_tb(exc.__traceback__)
    frames = [frame for frame in stack if not _is_own_file(frame.filename)]
    if not frames:
        return None
    return (
        "Traceback (most recent call last):\n"
        + "".join(traceback.format_list(frames))
        + "".join(traceback.format_exception_only(exc))
    )


def _is_own_file(filename: str) -> bool:
    if filename.startswith("<frozen "):  # importlib's bootstrap, frozen into Python
        return True
    try:
        path = Path(filename).resolve()
    except OSError:
        return False
    return any(path.is_relative_to(directory) for directory in _OWN_DIRECTORIES)
