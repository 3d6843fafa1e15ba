"""pycos's ``CategorizeMessages``: receive messages of one category at a time, keeping
the others (in order) for later."""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from typing import Any

import trio

from .._task import Task
from .._task_arguments import check_timeout

__all__ = ["CategorizeMessages"]

Categorizer = Callable[[Any], Any]
_NOTHING = object()


class CategorizeMessages:
    """``cm = CategorizeMessages(task)``; ``cm.add(fn)`` adds a function giving a
    message's category (or None: try the next function); ``msg = yield
    cm.receive(category)`` returns the oldest message of that category (None: any
    message without one)."""

    def __init__(self, task: Task) -> None:
        self._task = task
        self._categorizers: list[Categorizer] = []
        self._kept: dict[Any, deque[Any]] = {}

    def add(self, categorize: Categorizer) -> None:
        """Add a function; the one added last is tried first (as pycos)."""
        if categorize not in self._categorizers:
            self._categorizers.insert(0, categorize)

    def remove(self, categorize: Categorizer) -> None:
        if categorize in self._categorizers:
            self._categorizers.remove(categorize)

    def _category(self, message: Any) -> Any:
        for categorize in self._categorizers:
            category = categorize(message)
            if category is not None:
                return category
        return None

    async def receive(
        self, category: Any = None, timeout: float | None = None, alarm_value: Any = None
    ) -> Any:
        check_timeout(timeout)
        kept = self._kept.get(category)
        if kept:
            await trio.lowlevel.checkpoint()
            return kept.popleft()
        deadline = trio.current_time() + (math.inf if timeout is None else timeout)
        while True:
            # Messages already queued are taken even with timeout=0.
            left = max(0.0, deadline - trio.current_time())
            message = await self._task.receive(None if left == math.inf else left, _NOTHING)
            if message is _NOTHING:
                return alarm_value
            found = self._category(message)
            if found == category:
                return message
            self._kept.setdefault(found, deque()).append(message)

    recv = receive
