"""Resolve ``"module:attr"``, ``"path/to/file.py:attr"`` and bare-module strings.

Errors say exactly what is wrong. An ImportError raised *inside* the user's module
(a missing dependency of theirs, say) is not ours to explain, and surfaces unchanged.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from .exceptions import ConfigurationError, ImportStringError


def import_from_string(target: str) -> object:
    """Return the object named by ``"module:attr"`` (attr may be dotted)."""
    if not isinstance(target, str) or target.count(":") != 1:
        raise ImportStringError(f"import string {target!r} must be of the form 'module:attribute'")
    module_name, _, attr = target.partition(":")
    if not module_name or not attr:
        raise ImportStringError(f"import string {target!r} must be of the form 'module:attribute'")
    module = import_module(module_name)
    return get_attribute(module, attr, target)


def import_module(name: str) -> ModuleType:
    """Import a module by dotted name or by ``.py`` file path."""
    if name.endswith(".py"):
        return _import_file(Path(name))
    if name.startswith("."):
        raise ImportStringError(f"module {name!r} is relative; give its full dotted name")
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (name == exc.name or name.startswith(exc.name + ".")):
            raise ImportStringError(f"could not import module {name!r}") from None
        raise


def get_attribute(module: ModuleType, attr: str, target: str) -> object:
    """Follow a dotted ``attr`` from ``module``, naming the missing part."""
    value: object = module
    parts = attr.split(".")
    for index, part in enumerate(parts):
        try:
            value = getattr(value, part)
        except AttributeError:
            missing = ".".join(parts[: index + 1])
            raise ImportStringError(
                f"attribute {missing!r} not found in module {module.__name__!r} ({target})"
            ) from None
    return value


def _import_file(path: Path) -> ModuleType:
    if not path.is_file():
        raise ImportStringError(f"file {str(path)!r} does not exist")
    name = path.stem
    if not name.isidentifier():
        raise ImportStringError(f"file name {path.name!r} is not a valid module name")
    directory = str(path.resolve().parent)
    if directory not in sys.path:
        sys.path.insert(0, directory)
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportStringError(f"cannot load {str(path)!r} as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        # As the import system does: a module that failed to run is not left behind.
        sys.modules.pop(name, None)
        raise
    return module


def import_backend(spec: str, scheme: str, kind: str) -> Any:
    """Import a backend named ``"module:Class"`` lazily, for the URL scheme ``scheme``.

    A missing third-party package raises ConfigurationError with an install hint;
    ``kind`` ("layer", "session store") names what the backend is in that message.
    """
    module_name, _, class_name = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.startswith("chanlite."):
            raise ConfigurationError(
                f"the {scheme}:// {kind} is not available in this version"
            ) from None
        raise ConfigurationError(
            f"the {scheme}:// {kind} needs the package {exc.name!r}: pip install {exc.name}"
        ) from None
    return getattr(module, class_name)
