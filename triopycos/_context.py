"""Which node a call means: the current-node context variable and ``current_node``.

Inside a task, the task's own node (each task sets the variable when it starts);
elsewhere the innermost ``open_pycos`` block.  (The variable has its own module so
the hot paths of tasks and the node can both bind it at import time.)
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar
from typing import TYPE_CHECKING

import trio

from .values import PycosError

if TYPE_CHECKING:
    from ._node import Pycos

__all__ = ["current_node", "current_node_var", "default_node_hook"]

current_node_var: ContextVar[Pycos | None] = ContextVar("triopycos_current_node", default=None)

# Set by triopycos.compat: the node a call from plain (non-trio) code means, pycos's
# implicit scheduler, started on first use.  Code inside a trio run is never given
# it: there, no current node stays an error.
default_node_hook: Callable[[], Pycos] | None = None


def current_node() -> Pycos:
    """The node a call without an explicit node means (see the module docstring)."""
    node = current_node_var.get()
    if node is None and default_node_hook is not None and not trio.lowlevel.in_trio_run():
        node = default_node_hook()
    if node is None:
        raise PycosError(
            "no current triopycos node: call this inside `async with open_pycos(...)` "
            "or inside a task, or use pycos.spawn()"
        )
    return node
