"""Where chanlite's log lines go: beside uvicorn's, in uvicorn's format and at its level.

chanlite logs under the ``chanlite`` logger (``chanlite.server``, ``chanlite.worker``).
Served by uvicorn, whether as ``chanlite serve`` or as plain ``uvicorn main:app``,
those lines go to the handlers uvicorn configured for its own (``--log-config``
included) at the level of ``uvicorn.error`` (``--log-level``), so both commands
print the same lines. Logging that the user set up (a handler on the root logger or
on ``chanlite``) is left as it is. Commands that run no uvicorn (``chanlite worker``,
``send``, ``stats``, ``flush``) print in the same format as uvicorn's default.
"""

from __future__ import annotations

import logging
import sys

#: The logger every chanlite module logs under (as ``chanlite.<module>``).
LOGGER = "chanlite"
# The logger uvicorn's own configuration gives handlers, and the one whose level
# ``--log-level`` sets.
_UVICORN_HANDLERS = "uvicorn"
_UVICORN_LEVEL = "uvicorn.error"


def follow_uvicorn() -> None:
    """Send chanlite's records to uvicorn's handlers, at uvicorn's level, unless
    logging is already set up for them or uvicorn configured no handlers."""
    ours = logging.getLogger(LOGGER)
    if ours.handlers or logging.getLogger().handlers:
        return
    handlers = logging.getLogger(_UVICORN_HANDLERS).handlers
    if not handlers:
        return
    for handler in handlers:
        ours.addHandler(handler)
    ours.setLevel(logging.getLogger(_UVICORN_LEVEL).getEffectiveLevel())
    ours.propagate = False


def configure_cli(level: str) -> None:
    """Log to standard error at ``level``, as uvicorn's default format does, for the
    commands that run no uvicorn."""
    from uvicorn.logging import DefaultFormatter

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(DefaultFormatter("%(levelprefix)s %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(level.upper())
