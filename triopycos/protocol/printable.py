"""Safe text for values that came from outside the node.

A peer's or a stranger's value never reaches a log line or an error message as
``repr``/``str``: a big integer refuses to print (or costs quadratic time), a
shared-reference graph expands exponentially, and text can carry newlines and
terminal control codes that forge log lines.  ``describe`` gives a bounded,
escaped excerpt of text and bytes, and only the type name of anything else.
"""

from __future__ import annotations

from typing import Final

__all__ = ["EXCERPT_LIMIT", "describe", "escape"]

EXCERPT_LIMIT: Final = 60


def escape(text: str, limit: int = EXCERPT_LIMIT) -> str:
    """``text`` cut to ``limit`` characters, every character outside printable
    ASCII escaped (``\\n``, ``\\x1b``, ``\\u2028``...), so it fits on one log line."""
    if type(text) is not str:  # a str subclass may override slicing or encode
        text = str.__str__(text) if isinstance(text, str) else ""
    cut = text[:limit]
    escaped = cut.encode("unicode_escape").decode("ascii")
    if len(text) > limit:
        escaped += f"... ({len(text)} characters)"
    return escaped


def describe(value: object, limit: int = EXCERPT_LIMIT) -> str:
    """A bounded description of an outside value: an escaped, quoted excerpt of a
    str or bytes-like value, the type name of anything else (never its ``repr``)."""
    if isinstance(value, str):
        return "'" + escape(value, limit).replace("'", "\\'") + "'"
    if isinstance(value, bytes | bytearray | memoryview):
        raw = bytes(memoryview(value)[:limit])
        text = repr(raw)
        if len(value) > limit:
            text += f"... ({len(value)} bytes)"
        return text
    return f"a value of type {type(value).__name__}"
