"""The task table of a node: its live tasks, those that ended recently, the nursery
they run in, and the counts that ``finish()`` and leaving ``open_pycos`` wait on.

* Task ids count up from 1 and are never reused within a node's run.
* Ended tasks are kept (the last ``ENDED_KEPT``), so a peer's ``finish()`` or
  ``monitor()`` that arrives just after the end still gets the result.
* ``finish()`` waits until no non-daemon task is left; leaving the ``async with``
  block does too, and says, after ``LEAVE_GRACE`` seconds and again at growing
  intervals, which tasks it waits for.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING

import trio

if TYPE_CHECKING:
    from ._task import Task
    from .services.timer import Timer

__all__ = ["ENDED_KEPT", "LEAVE_GRACE", "TaskStatistics", "TaskTable"]

log = logging.getLogger("triopycos.node")

ENDED_KEPT = 4096
#: Seconds (trio time) that leaving ``open_pycos`` waits for non-daemon tasks before
#: it warns; the warning repeats after twice as long each time, up to
#: ``_LEAVE_WARN_MAX``.
LEAVE_GRACE = 10.0
_LEAVE_WARN_MAX = 600.0
#: Tasks named in one such warning (a node may run thousands).
_LEAVE_NAMED = 100


@dataclass(frozen=True, slots=True)
class TaskStatistics:
    """A snapshot of the task table's counters."""

    tasks: int = 0
    daemon_tasks: int = 0
    tasks_started: int = 0
    #: Messages refused by full mailboxes (``Limits.max_mailbox``).
    messages_refused: int = 0


class TaskTable:
    """The tasks of one node, by id."""

    def __init__(self) -> None:
        self.tasks: dict[int, Task] = {}
        # Bounded: old entries fall off (see the module docstring).
        self.ended: OrderedDict[int, Task] = OrderedDict()
        self.refused = 0
        self._started = 0
        self._nondaemon = 0
        self._daemons = 0
        self._idle: trio.Event | None = None  # set when _nondaemon reaches 0
        self.nursery: trio.Nursery | None = None
        self._gone = trio.Event()

    def statistics(self) -> TaskStatistics:
        return TaskStatistics(len(self.tasks), self._daemons, self._started, self.refused)

    # -- running ------------------------------------------------------------------

    async def serve(self, timer: Timer, *, task_status: trio.TaskStatus[None]) -> None:
        """Run the nursery tasks start in, with the timer of their timeouts (it
        lives as long as the tasks that wait)."""
        try:
            async with trio.open_nursery() as nursery:
                self.nursery = nursery
                task_status.started()
                await timer.run()
        finally:
            self._gone.set()

    async def end_all(self, limit: float) -> None:
        """Cancel every task and wait (up to ``limit`` seconds) until they are gone,
        so their exit statuses are queued for their monitors."""
        if self.nursery is None:
            return
        self.nursery.cancel_scope.cancel()
        with trio.move_on_after(limit):
            await self._gone.wait()

    # -- one task -----------------------------------------------------------------

    def new_id(self) -> int:
        self._started += 1
        return self._started

    def adopt(self, task: Task) -> None:
        assert self.nursery is not None
        self.tasks[task._task_id] = task
        self._nondaemon += 1
        self.nursery.start_soon(task._run, name=task._name)

    def forget(self, task: Task) -> None:
        del self.tasks[task._task_id]
        self.ended[task._task_id] = task
        if len(self.ended) > ENDED_KEPT:
            self.ended.popitem(last=False)
        if task._daemon:
            self._daemons -= 1
        else:
            self._count_nondaemon(-1)

    def daemon_changed(self, daemon: bool) -> None:
        self._daemons += 1 if daemon else -1
        self._count_nondaemon(-1 if daemon else 1)

    def _count_nondaemon(self, change: int) -> None:
        self._nondaemon += change
        if self._nondaemon == 0 and self._idle is not None:
            self._idle.set()
            self._idle = None

    # -- waiting for them ---------------------------------------------------------

    async def finish(self) -> None:
        """Wait until every non-daemon task has ended."""
        if self._nondaemon == 0:
            await trio.lowlevel.checkpoint()
            return
        if self._idle is None:
            self._idle = trio.Event()
        await self._idle.wait()

    async def finish_on_leaving(self, node_name: str) -> None:
        """``finish()`` for the end of the ``async with`` block.  A task that never
        ends keeps the block open forever, silently (under an autojump clock the
        heartbeats keep the clock jumping: a test spins instead of hanging), so
        after a grace period, and again at growing intervals, say who is waited for
        and how to end them."""
        waited = 0.0
        interval = LEAVE_GRACE
        while self._nondaemon:
            with trio.move_on_after(interval):
                await self.finish()
                return
            waited += interval
            running = [t for t in self.tasks.values() if not t._daemon]
            shown = ", ".join(repr(t) for t in running[:_LEAVE_NAMED])
            if len(running) > _LEAVE_NAMED:
                shown += f" and {len(running) - _LEAVE_NAMED} more"
            log.warning(
                "leaving open_pycos of node %r waits for %d non-daemon task(s) still "
                "running after %g s: %s; each must return, be ended with terminate(), "
                "or be marked with set_daemon() so that leaving does not wait for it",
                node_name,
                len(running),
                waited,
                shown,
            )
            interval = min(interval * 2, _LEAVE_WARN_MAX)
        await trio.lowlevel.checkpoint()
