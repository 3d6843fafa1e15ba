"""A text progress bar for file transfers: ``send_file(..., progress=bar)``.

On a terminal it redraws one line in place (``\\r``), at most ten times a second and
always at the end.  Elsewhere (a pipe, a log file) a redrawn line would be noise, so
it writes a whole line at 0, 25, 50, 75 and 100 percent instead.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TextIO

__all__ = ["ProgressBar", "render", "size_text"]

_WIDTH = 30
_REDRAW_EVERY = 0.1  # seconds, on a terminal
_STEPS = 4  # whole lines per transfer elsewhere: every quarter


def size_text(count: float) -> str:
    """``512 B``, ``3.0 KiB``, ``4.0 MiB``, ``1.5 GiB``."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if count < 1024 or unit == "GiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    raise AssertionError("unreachable")  # pragma: no cover


def render(sent: int, total: int, *, width: int = _WIDTH) -> str:
    """``[###############...............]  50%  2.0 MiB of 4.0 MiB``"""
    fraction = 1.0 if total <= 0 else min(1.0, sent / total)
    filled = int(fraction * width)
    bar = "#" * filled + "." * (width - filled)
    # Rounded down: 100% only when everything is sent.
    return f"[{bar}] {int(fraction * 100):3d}%  {size_text(sent)} of {size_text(total)}"


class ProgressBar:
    """Call it as ``bar(sent, total)``; ``close()`` ends the line on a terminal."""

    def __init__(
        self,
        out: TextIO,
        *,
        prefix: str = "",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._out = out
        self._prefix = prefix
        self._clock = clock
        self._tty = out.isatty()
        self._drawn_at: float | None = None
        self._step = -1  # the last quarter written (elsewhere)
        self._open_line = False
        self._started = clock()

    def __call__(self, sent: int, total: int) -> None:
        line = self._prefix + render(sent, total)
        done = sent >= total
        if self._tty:
            now = self._clock()
            if not done and self._drawn_at is not None and now - self._drawn_at < _REDRAW_EVERY:
                return
            self._drawn_at = now
            rate = sent / max(now - self._started, 1e-9)
            self._out.write(f"\r{line}  {size_text(rate)}/s\x1b[K")
            self._open_line = True
        else:
            step = _STEPS if done else (sent * _STEPS) // max(total, 1)
            if step <= self._step:
                return
            self._step = step
            self._out.write(line + "\n")
        self._out.flush()

    def close(self) -> None:
        if self._open_line:
            self._out.write("\n")
            self._out.flush()
            self._open_line = False
