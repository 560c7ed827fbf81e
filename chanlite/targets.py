"""What the ``chanlite`` command's arguments name: the app a target string loads,
and the cross-process layer a ``--layer`` URL builds.

A mistake in either is a :class:`UsageError`: one line, exit code 2.
"""

from __future__ import annotations

import os
import sys
from types import ModuleType
from typing import Any

from ._usercode import running_user_code
from .app import Chanlite
from .config import LAYER_ENV
from .exceptions import ChanliteError
from .layers import get_layer
from .layers.base import BaseChannelLayer
from .routing import Routes


class UsageError(ChanliteError):
    """A command-line mistake: printed as one line, exit code 2."""


def load_app(target: str) -> Chanlite:
    """A ``Chanlite`` app from ``target``: an app, a routing table, or a module
    (see :func:`find_routable`)."""
    from ._importer import import_from_string, import_module

    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    if ":" in target:
        with running_user_code():
            obj: object = import_from_string(target)
    else:
        with running_user_code():
            module = import_module(target)
        obj = find_routable(module, target)
    if isinstance(obj, Chanlite):
        return obj
    try:
        routes = obj if isinstance(obj, Routes) else Routes(obj)
    except TypeError as exc:
        raise UsageError(
            f"{target!r} is neither a Chanlite app nor a routing table: {exc}"
        ) from None
    return Chanlite(routes)


def find_routable(module: ModuleType, target: str) -> Chanlite | Routes:
    """What a bare-module target serves: the module's one ``Chanlite`` app, else its
    one non-empty ``Routes`` table, else its ``@consumer``-marked functions.

    Raises UsageError when there are several apps or tables to choose from, or
    nothing routable at all, suggesting the ``module:attr`` form.
    """
    for kind in (Chanlite, Routes):
        found = _named_instances(module, kind)
        if len(found) == 1:
            only: Chanlite | Routes = next(iter(found.values()))
            return only
        if found:
            names = ", ".join(sorted(found))
            raise UsageError(
                f"module {target!r} has {len(found)} {kind.__name__} objects ({names}); "
                f"name the one to serve, e.g. {target}:{min(found)}"
            )
    routes = Routes.from_module(module)
    if not len(routes):
        raise UsageError(
            f"module {target!r} has no Chanlite app, no Routes table with routes and no "
            f"@consumer functions; name what to serve, e.g. {target}:routes"
        )
    return routes


def _named_instances(module: ModuleType, kind: type[Any]) -> dict[str, Any]:
    """Public module attributes that are ``kind`` instances (empty tables left out),
    one name per object."""
    found: dict[str, Any] = {}
    for name, value in vars(module).items():
        if name.startswith("_") or not isinstance(value, kind):
            continue
        if isinstance(value, Routes) and not len(value):
            continue
        if all(value is not other for other in found.values()):
            found[name] = value
    return found


def cross_process_layer(url: str | None, command: str) -> BaseChannelLayer:
    url = url or os.environ.get(LAYER_ENV)
    if not url:
        raise UsageError(
            f"chanlite {command} needs a cross-process layer: pass --layer redis://... "
            f"or sqlite:///path.db, or set {LAYER_ENV}"
        )
    layer = get_layer(url)
    if layer.process_local:
        raise UsageError(
            f"chanlite {command} cannot use memory:// (it lives inside one process); "
            "use redis://... or sqlite:///path.db"
        )
    return layer
