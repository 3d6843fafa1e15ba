"""The current-node context variable (its own module so the hot paths of tasks and
the node can both bind it at import time)."""

from __future__ import annotations

from contextvars import ContextVar
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._node import Pycos

__all__ = ["current_node_var"]

current_node_var: ContextVar[Pycos | None] = ContextVar("triopycos_current_node", default=None)
