"""An app that runs no in-process workers: its consumers run in ``chanlite worker``
processes, and ``chanlite serve`` must not start any of its own."""

from __future__ import annotations

from chanlite import Chanlite

from .table import routes

app = Chanlite(routes, workers=False, secret_key="no-workers-test-secret-key-0123456789")
