"""``python -m chanlite``: the same as the ``chanlite`` command."""

from __future__ import annotations

import sys

from .cli import main

sys.exit(main())
