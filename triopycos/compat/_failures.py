"""Failures inside tasks shown as pycos shows them: an uncaught exception in a task is
logged by pycos's ``logger`` on stdout ("pycos - uncaught exception in ..."), with
the traceback starting at the task's own code.

triopycos logs through the standard ``logging`` module (logger ``triopycos``); unless
the program configured logging itself, the compat scheduler sends those records
(warnings and worse) to pycos's logger instead of Python's last-resort stderr output.
"""

from __future__ import annotations

import logging
import os
import re

from ._logger import logger

__all__ = ["install", "without_library_frames"]

_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_FRAME = re.compile(r'  File "(?P<path>[^"]+)", line \d+')


def without_library_frames(text: str) -> str:
    """``text`` (a formatted traceback, or a message holding one) without the frames
    of triopycos's own code (the scheduler's loop), as pycos leaves out its own."""
    kept: list[str] = []
    skipping = False
    for line in text.splitlines(keepends=True):
        frame = _FRAME.match(line)
        if frame is not None:
            skipping = os.path.abspath(frame.group("path")).startswith(_PACKAGE + os.sep)
            if skipping:
                continue
        elif skipping and line.startswith("    "):
            continue  # the skipped frame's source line and its ^^^ marks
        else:
            skipping = False
        kept.append(line)
    return "".join(kept)


class _ToPycosLogger(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
            if record.exc_info:
                text += "\n" + logging.Formatter().formatException(record.exc_info)
            logger._at(record.levelno, without_library_frames(text).rstrip("\n"), ())
        except Exception:
            self.handleError(record)


def install() -> None:
    """Route triopycos's warnings to pycos's logger, unless logging is configured."""
    library = logging.getLogger("triopycos")
    if library.handlers or logging.getLogger().handlers:
        return
    library.addHandler(_ToPycosLogger(logging.WARNING))
