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
from typing import TYPE_CHECKING, Protocol

import trio

from .._context import current_node_var
from .._errors import PycosError

if TYPE_CHECKING:
    from .._node import Pycos

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
    """Remembers the node whose trio run waited on a descriptor, so that closing it
    (from any thread: pycos scripts close sockets in their main thread) first tells
    that run, in its own thread, to forget the descriptor."""

    __slots__ = ("_node",)

    def __init__(self) -> None:
        self._node: Pycos | None = None

    def note(self) -> None:
        """Called in a task, before waiting: this task's node watches the descriptor."""
        if self._node is None:
            self._node = current_node_var.get()

    def close(self, fd: int, close: Callable[[], None]) -> None:
        """``close()`` the descriptor ``fd`` (a number, or -1 if already closed)."""
        node = self._node
        if node is None or fd < 0:
            close()
            return

        def forget_and_close() -> None:
            with contextlib.suppress(RuntimeError):  # that run has already ended
                trio.lowlevel.notify_closing(fd)
            close()

        if node._thread_id == get_ident():
            forget_and_close()
            return
        try:
            node._call_in_loop(forget_and_close)
        except PycosError:  # the scheduler stopped: nothing watches it any more
            close()
