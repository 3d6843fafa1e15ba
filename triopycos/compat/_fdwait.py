"""Waiting on a file descriptor from a task, and closing one that trio may watch:
what ``AsyncSocket`` and ``asyncfile`` share.

pycos's rule, kept here: an operation waiting on a descriptor that another task (or
the main program) closes never completes; its task stays parked until terminated, as
pycos's poller forgets the descriptor without waking anyone.  Trio itself would raise
``ClosedResourceError`` in the waiter; we park it instead.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from threading import get_ident
from typing import Protocol

import trio

__all__ = ["HasFileno", "Watched", "wait_fd"]


class HasFileno(Protocol):
    def fileno(self) -> int: ...


async def wait_fd(fd: int | HasFileno, *, readable: bool) -> None:
    """Until ``fd`` is ready (readable or writable); forever if it is closed meanwhile."""
    try:
        if readable:
            await trio.lowlevel.wait_readable(fd)
        else:
            await trio.lowlevel.wait_writable(fd)
    except trio.ClosedResourceError:
        await trio.sleep_forever()


class Watched:
    """Remembers the trio run that waited on a descriptor, so that closing it (from
    any thread: pycos scripts close sockets in their main thread) first tells that
    run, in its own thread, to forget the descriptor."""

    __slots__ = ("_thread", "_token")

    def __init__(self) -> None:
        self._token: trio.lowlevel.TrioToken | None = None
        self._thread = 0

    def note(self) -> None:
        """Called in a task, before waiting: this trio run watches the descriptor."""
        if self._token is None:
            self._token = trio.lowlevel.current_trio_token()
            self._thread = get_ident()

    def close(self, fd: int, close: Callable[[], None]) -> None:
        """``close()`` the descriptor ``fd`` (a number, or -1 if already closed)."""
        token = self._token
        if token is None or fd < 0:
            close()
            return

        def forget_and_close() -> None:
            trio.lowlevel.notify_closing(fd)
            close()

        if self._thread == get_ident():
            with contextlib.suppress(RuntimeError):  # (that run has ended)
                forget_and_close()
                return
            close()
            return
        try:
            trio.from_thread.run_sync(forget_and_close, trio_token=token)
        except trio.RunFinishedError:  # nothing watches it any more
            close()
