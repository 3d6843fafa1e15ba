"""pycos's hot swapping of generator task bodies.

``task.hot_swap(fn, *args, **kwargs)`` (from any thread) asks that a new body,
``fn(*args, **kwargs)`` with ``task=`` the same task, take over ``task``.  The
request waits until the task allows it (``task.hot_swappable(True)``, which only the
task itself may call) and runs its top generator (not a sub-generator it yielded).
Then ``HotSwapException(new_generator)`` is raised in the task at its yield point: at
once if it waits in ``receive``, ``sleep`` or ``suspend``, else when it next resumes.
If the body lets the exception out (or raises it again), the new generator replaces
it, under the new function's name, with the same mailbox (messages already queued
are the new body's); if the body catches it, the swap is refused and it goes on.

The generator driver (``triopycos/_generator.py``) calls this module through its
``swap_hook``; nothing of this is used by tasks that never swap.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable, Generator
from typing import Any

import trio

from .. import _generator
from .._task import Task
from .._task_arguments import _body_kind
from ..values import PycosError

__all__ = ["HotSwapException", "install"]

log = logging.getLogger("triopycos.compat")


class HotSwapException(Exception):
    """Raised in a task to swap its body; ``args[0]`` is the new generator.  A body
    that catches it refuses the swap; one that raises it (again) accepts."""


class _Run:
    """One generator task's swapping state."""

    __slots__ = ("callers", "inbox", "pending", "swappable", "task")

    def __init__(self, callers: _generator.Frames) -> None:
        self.callers = callers
        self.inbox: list[BaseException] = []
        self.task: Task | None = None
        self.swappable = False
        self.pending: Generator[Any, Any, Any] | None = None


class _HotSwapping:
    def __init__(self) -> None:
        self._runs: weakref.WeakKeyDictionary[trio.lowlevel.Task, _Run] = (
            weakref.WeakKeyDictionary()
        )
        # Requests for tasks that have not started running yet.
        self._early: weakref.WeakKeyDictionary[Task, Generator[Any, Any, Any]] = (
            weakref.WeakKeyDictionary()
        )

    # -- the driver's side ------------------------------------------------------------

    def started(self, callers: _generator.Frames) -> list[BaseException]:
        run = _Run(callers)
        self._runs[trio.lowlevel.current_task()] = run
        return run.inbox

    def replacement(self, error: BaseException) -> Generator[Any, Any, Any] | None:
        if not isinstance(error, HotSwapException):
            return None
        run = self._runs.get(trio.lowlevel.current_task())
        new = error.args[0] if error.args else None
        if run is None or run.task is None or not isinstance(new, Generator):
            return None
        if not run.swappable:
            log.warning("%r raised HotSwapException while not hot swappable", run.task)
            return None
        run.task._name = getattr(new, "__name__", run.task._name)
        return new

    # -- the task's side ----------------------------------------------------------------

    def hot_swappable(self, task: Task, flag: bool) -> int:
        """Allow (or forbid) swapping; only the task itself may call it: 0, or -1."""
        try:
            me = trio.lowlevel.current_task()
        except RuntimeError:
            me = None
        run = self._runs.get(me) if me is not None else None
        if run is None or task._trio_task is not me:
            log.warning("hot_swappable must be called by the task %r itself", task)
            return -1
        run.task = task
        run.swappable = bool(flag)
        early = self._early.pop(task, None)
        if early is not None and run.pending is None:
            run.pending = early
        if run.swappable:
            self._offer(task, run)
        return 0

    def hot_swap(self, task: Task, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> int:
        """Ask for ``fn(*args, **kwargs)`` to take over ``task``: 0, or -1 if it cannot
        (not a generator function, or the task is not alive here)."""
        try:
            is_generator, task_at = _body_kind(fn)
        except TypeError:
            is_generator, task_at = False, None
        if not is_generator:
            log.warning("hot_swap needs a generator function, not %r", fn)
            return -1
        if task_at is not None and "task" not in kwargs:
            if 0 <= task_at <= len(args):
                args = (*args[:task_at], task, *args[task_at:])
            else:
                kwargs["task"] = task
        if not task._local:
            return -1
        new = fn(*args, **kwargs)
        try:
            result: int = task._node._thread.run(self._request, task, new)
        except PycosError:  # its node has stopped
            new.close()
            return -1
        return result

    def _request(self, task: Task, new: Generator[Any, Any, Any]) -> int:
        if not task._alive:
            new.close()
            return -1
        run = self._runs.get(task._trio_task) if task._trio_task is not None else None
        if run is None:  # not running yet (so not hot swappable yet either)
            self._early[task] = new
            return 0
        run.task = task
        if run.pending is not None:
            run.pending.close()
        run.pending = new
        if run.swappable:
            self._offer(task, run)
        return 0

    def _offer(self, task: Task, run: _Run) -> None:
        """Raise the pending swap in the task: now if it waits at its top generator,
        else at its next yield point there."""
        new, run.pending = run.pending, None
        if new is None:
            return
        exc = HotSwapException(new)
        waiting = task._waiter is not None or task._suspender is not None
        if waiting and not run.callers:
            task.throw(exc)
        else:
            run.inbox.append(exc)


def install() -> None:
    """Plug hot swapping into the generator driver (once; pycos programs only)."""
    if _generator.swap_hook is None:
        _generator.swap_hook = _HotSwapping()
