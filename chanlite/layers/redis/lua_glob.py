"""``fnmatch`` globs as Lua patterns, for the scripts that match channel names in Redis
(the channel capacities of ``channel_capacity``)."""

from __future__ import annotations

import fnmatch
import string

__all__ = ["lua_pattern"]

# Characters a channel name can hold: capacity globs are resolved against them.
_NAME_ALPHABET = string.ascii_letters + string.digits + "-_.!?"


def lua_pattern(glob: str) -> str:
    """Translate an ``fnmatch`` glob to an anchored Lua pattern.

    Exact for channel names: a ``[...]`` set becomes the characters of the channel
    name alphabet that ``fnmatch`` itself says it matches.
    """
    out, index = ["^"], 0
    while index < len(glob):
        char = glob[index]
        index += 1
        if char == "*":
            out.append(".*")
        elif char == "?":
            out.append(".")
        elif char == "[" and (end := _set_end(glob, index)) >= 0:
            matched = [
                c for c in _NAME_ALPHABET if fnmatch.fnmatchcase(c, glob[index - 1 : end + 1])
            ]
            # %z (the NUL byte) is in no name: an empty set matches nothing.
            out.append("[" + "".join(map(_lua_escape, matched)) + "]" if matched else "%z")
            index = end + 1
        else:
            out.append(_lua_escape(char))
    return "".join(out) + "$"


def _set_end(glob: str, start: int) -> int:
    """Where the ``]`` closing a set opened just before ``start`` is, as fnmatch reads
    it; -1 if the ``[`` is a literal."""
    end = start
    if end < len(glob) and glob[end] == "!":
        end += 1
    if end < len(glob) and glob[end] == "]":
        end += 1
    while end < len(glob) and glob[end] != "]":
        end += 1
    return end if end < len(glob) else -1


def _lua_escape(char: str) -> str:
    return char if char.isascii() and char.isalnum() else "%" + char
