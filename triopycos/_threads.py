"""Calling a node from plain threads (a pycos script's main thread, a worker thread).

A node's state belongs to the trio thread that runs it.  The synchronous methods
users call (``Task(...)``, ``send``, ``register``, ``terminate``, ...) check which
thread they are on and, from any other, run themselves in the node's thread through
``trio.from_thread`` and return its answer: nothing is touched from two threads.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from threading import get_ident
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar

import trio

from .values import PycosError

if TYPE_CHECKING:
    from ._entity import Entity

__all__ = ["NodeThread", "from_any_thread", "get_ident"]

P = ParamSpec("P")
R = TypeVar("R")
E = TypeVar("E", bound="Entity")


def from_any_thread(
    method: Callable[Concatenate[E, P], R],
) -> Callable[Concatenate[E, P], R]:
    """Run ``method`` in its node's trio thread when called from another thread."""

    def wrapper(self: E, /, *args: P.args, **kwargs: P.kwargs) -> R:
        node = self._node
        if node._thread_id != get_ident():
            result: R = node._thread.call(method, self, *args, **kwargs)
            return result
        return method(self, *args, **kwargs)

    functools.update_wrapper(wrapper, method)
    return wrapper


class NodeThread:
    """The trio thread a node runs in (made inside that run), and how code in
    other threads has a function run there.  ``name()`` and ``closed()`` say which
    node, and whether it still takes calls."""

    def __init__(self, name: Callable[[], str], closed: Callable[[], bool]) -> None:
        self.ident = get_ident()
        self.token = trio.lowlevel.current_trio_token()
        self._name = name
        self._closed = closed

    def run(self, fn: Callable[..., R], /, *args: Any) -> R:
        """``fn(*args)`` here if this is the node's thread, else run there."""
        if self.ident == get_ident():
            return fn(*args)
        return self.call(fn, *args)

    def call(self, fn: Callable[..., R], /, *args: Any, **kwargs: Any) -> R:
        """``fn(*args, **kwargs)`` run in the node's trio thread (from another one)."""
        if self._closed():
            raise PycosError(f"node {self._name()!r} is not running")
        try:
            return trio.from_thread.run_sync(
                functools.partial(fn, *args, **kwargs), trio_token=self.token
            )
        except trio.RunFinishedError:
            raise PycosError(f"node {self._name()!r} is not running") from None

    def wait(self, fn: Callable[..., Awaitable[R]], /, *args: Any) -> R:
        """Block this (non-trio) thread until ``await fn(*args)`` is done in the node."""
        if self.ident == get_ident():
            raise PycosError("this blocks its thread: inside a task, await the coroutine")
        try:
            return trio.from_thread.run(fn, *args, trio_token=self.token)
        except trio.RunFinishedError:
            raise PycosError(f"node {self._name()!r} is not running") from None
