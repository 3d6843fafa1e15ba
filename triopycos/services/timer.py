"""``Timer``: timeouts of waits on the message path without a cancel scope each.

A ``trio.move_on_after`` around every ``deliver(timeout=...)``, ``receive(timeout=...)``
or ``finish(timeout=...)`` costs a cancel scope (entered, registered in trio's deadline
heap, closed): several microseconds on every message's path.  Instead such a wait
parks its task with an abort function (so outer cancellations still work) and gives
the node's timer an *expiry*: an object with a ``done`` flag and an ``expire()``
method.  One timer task sleeps until the earliest deadline and calls ``expire()`` on
every expiry that is due and not done; ``expire()`` wakes the waiting task with its
timeout value.  The wait's normal ending (the message, the reply) sets ``done``
first, so an expiry fires at most once and never after the wait ended.

Rules:

* ``add(deadline, expiry)`` never waits.  The timer task wakes by the earliest
  deadline of any expiry added: a deadline earlier than the one it sleeps until
  wakes it to sleep less.
* Expiries that ended (``done``) stay in the heap until they reach its top or the
  heap is compacted (when it has grown to twice its size after the last compaction):
  amortised O(log n) per wait, and the heap never holds more than about twice the
  waits in progress (plus 256).
* The timer task runs in the node's task nursery: it lives exactly as long as the
  tasks whose waits it ends.  A timer that is not running fires nothing (tests of
  the services alone run one with ``run``).
"""

from __future__ import annotations

import heapq
import math
from typing import NoReturn, Protocol

import trio

__all__ = ["Expiry", "Timer", "Waiter"]

_reschedule = trio.lowlevel.reschedule
_now = trio.current_time
_COMPACT_MIN = 256


class Expiry(Protocol):
    """What waits with a timeout: ``done`` once the wait ended, and what to do when
    its deadline comes first."""

    done: bool

    def expire(self) -> None: ...


class Timer:
    """Fires expiries at their deadlines (see the module docstring)."""

    __slots__ = ("_compact_at", "_heap", "_seq", "_sleeper", "_until")

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Expiry]] = []
        self._seq = 0  # ties broken by order of arrival (expiries do not compare)
        self._sleeper: trio.lowlevel.Task | None = None  # the timer task, when parked
        self._until = math.inf  # the timer task wakes by then
        self._compact_at = _COMPACT_MIN

    def add(self, deadline: float, expiry: Expiry) -> None:
        """Call ``expiry.expire()`` at trio time ``deadline`` unless it is done by then."""
        self._seq += 1
        heap = self._heap
        heapq.heappush(heap, (deadline, self._seq, expiry))
        if deadline < self._until:
            self._until = deadline
            sleeper = self._sleeper
            if sleeper is not None:
                self._sleeper = None
                _reschedule(sleeper)
        if len(heap) >= self._compact_at:
            live = [entry for entry in heap if not entry[2].done]
            heapq.heapify(live)
            self._heap = live
            self._compact_at = max(_COMPACT_MIN, 2 * len(live))

    async def run(self) -> NoReturn:
        """The timer task: fire what is due, sleep until the next deadline, forever."""
        current = trio.lowlevel.current_task()

        def abort(_: object) -> trio.lowlevel.Abort:
            self._sleeper = None
            return trio.lowlevel.Abort.SUCCEEDED

        while True:
            now = _now()
            heap = self._heap
            while heap and (heap[0][2].done or heap[0][0] <= now):
                expiry = heapq.heappop(heap)[2]
                if not expiry.done:
                    expiry.expire()
            self._until = heap[0][0] if heap else math.inf
            with trio.CancelScope(deadline=self._until):
                self._sleeper = current
                await trio.lowlevel.wait_task_rescheduled(abort)


class Waiter:
    """One task waiting for something (``wake()``) or its timeout, whichever is first:
    an Event and a cancel scope in one small object, for the waits on the message
    path."""

    __slots__ = ("done", "task", "woken")

    def __init__(self) -> None:
        self.done = False  # the wait ended (woken, timed out or cancelled)
        self.woken = False
        self.task: trio.lowlevel.Task | None = None

    async def wait(self, timer: Timer, timeout: float | None) -> bool:
        """Park until ``wake()`` (True) or ``timeout`` seconds (False).  Call it once."""
        if self.done:
            await trio.lowlevel.checkpoint()
            return self.woken
        self.task = trio.lowlevel.current_task()
        if timeout is not None:
            timer.add(_now() + timeout, self)
        await trio.lowlevel.wait_task_rescheduled(self._abort)
        return self.woken

    def wake(self) -> None:
        if not self.done:
            self.done = self.woken = True
            self._resume()

    def expire(self) -> None:
        if not self.done:
            self.done = True
            self._resume()

    def _resume(self) -> None:
        task = self.task
        if task is not None:
            self.task = None
            _reschedule(task)

    def _abort(self, _: object) -> trio.lowlevel.Abort:
        self.done = True
        self.task = None
        return trio.lowlevel.Abort.SUCCEEDED
