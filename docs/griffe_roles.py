"""Griffe extension: show Sphinx roles in docstrings (:class:`~a.B`) as code (`B`)."""

from __future__ import annotations

import re
from typing import Any

import griffe

# :role:`target` or :role:`~dotted.target`; the tilde shows only the last part.
_ROLE = re.compile(r":(?:class|meth|func|data|attr|mod|exc|obj):`(~?)([^`]+)`")


def _code(match: re.Match[str]) -> str:
    tilde, target = match.groups()
    return f"`{target.rsplit('.', 1)[-1] if tilde else target}`"


class SphinxRoles(griffe.Extension):
    """Turn Sphinx cross-reference roles into inline code before rendering."""

    def on_object(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = _ROLE.sub(_code, obj.docstring.value)
