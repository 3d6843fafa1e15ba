"""How the services log a failure that a peer's input may have caused.

Such an exception may quote the peer's values (``KeyError(key)``, a parser's
message with the text it choked on), so neither its ``repr`` nor a formatted
traceback goes to the log: only the exception's type, its text when every
argument is a str (escaped and cut, see ``protocol.printable``), a type name for
every other argument, and the code locations it went through (file, line and
function: our code, never the peer's data).
"""

from __future__ import annotations

import os
import traceback
from typing import Final

from ..protocol.printable import describe, escape

__all__ = ["failure_text"]

#: Frames of the traceback named (the innermost ones, where it went wrong).
_FRAMES: Final = 4


def failure_text(exc: BaseException) -> str:
    """A one-line, bounded, escaped account of ``exc`` and where it was raised."""
    args = exc.args if isinstance(exc.args, tuple) else ()
    if args and all(type(arg) is str for arg in args):
        detail = escape("; ".join(args), 200)
    else:
        detail = ", ".join(describe(arg) for arg in args[:3])
    text = type(exc).__qualname__ + (f": {detail}" if detail else "")
    frames = traceback.extract_tb(exc.__traceback__)[-_FRAMES:]
    if frames:
        where = " <- ".join(
            f"{os.path.basename(frame.filename)}:{frame.lineno} in {frame.name}"
            for frame in reversed(frames)
        )
        text += f" (at {escape(where, 400)})"
    return text
