"""Calling a node from plain threads (a pycos script's main thread, a worker thread).

A node's state belongs to the trio thread that runs it.  The synchronous methods
users call (``Task(...)``, ``send``, ``register``, ``terminate``, ...) check which
thread they are on and, from any other, run themselves in the node's thread through
``trio.from_thread`` and return its answer: nothing is touched from two threads.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from threading import get_ident
from typing import TYPE_CHECKING, Concatenate, ParamSpec, TypeVar

if TYPE_CHECKING:
    from ._entity import Entity

__all__ = ["from_any_thread", "get_ident"]

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
            result: R = node._call_in_loop(method, self, *args, **kwargs)
            return result
        return method(self, *args, **kwargs)

    functools.update_wrapper(wrapper, method)
    return wrapper
