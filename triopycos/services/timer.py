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

``Parked`` is that wait, the only one: a task's ``receive``, a request waiting for
its reply (``services/peer.py``) and a ``finish`` waiting for a pushed RPS result
(``_remote.py``) each park one.

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
from collections.abc import AsyncGenerator, Awaitable, Generator
from typing import Any, NoReturn, Protocol

import outcome
import trio

__all__ = ["Expiry", "Parked", "Timer"]

_reschedule = trio.lowlevel.reschedule
_wait_rescheduled = trio.lowlevel.wait_task_rescheduled
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


class Parked(outcome.Outcome[Any]):
    """One task parked until it is woken with a value, its deadline comes, or it is
    cancelled, whichever is first: an Event, a cancel scope and a result in one small
    object (the ``Expiry`` the timer fires).  Every wait of the message path is one:
    a ``receive``, a request waiting for its reply, a ``finish`` waiting for a pushed
    result.

    The first of ``wake``, ``throw``, ``expire`` and cancellation ends the wait
    (``done``); the others are then no-ops (``wake`` and ``throw`` return False, so
    the caller can keep what it had: a message goes to the mailbox instead).
    ``value`` is what the wait gives if its deadline comes first (or it is
    ``expire``d), then whatever ``wake`` gave.

    A ``Parked`` is its own ``outcome``: trio hands it back to the waiting task, which
    unwraps it (once).  So a wake-up allocates nothing; an ``outcome.Value`` (a frozen
    attrs class) would cost about as much as the rest of the hand-over.
    """

    __slots__ = ("done", "task", "value")

    # Outcome is an attrs class whose generated __eq__ makes all instances of a
    # subclass without fields equal (and unhashable): a wait is itself, nothing else.
    def __eq__(self, other: object) -> bool:
        return self is other

    def __hash__(self) -> int:  # type: ignore[override]
        return id(self)

    def __init__(self, value: Any = None) -> None:
        self.done = False
        self.task: trio.lowlevel.Task | None = None
        self.value = value

    def wait(self, timer: Timer, timeout: float | None) -> Awaitable[Any]:
        """Park the calling task; await the result at once.  It is the value (see the
        class docstring); cancellation raises as usual.

        Not ``async`` on purpose: it hands back trio's own awaitable, so the waiting
        task runs one coroutine frame fewer on every message it waits for."""
        if self.done:
            return _ready(self.value)
        self.task = trio.lowlevel.current_task()
        if timeout is not None:
            timer.add(_now() + timeout, self)
        return _wait_rescheduled(self._abort)

    def wake(self, value: Any) -> bool:
        """End the wait with ``value``: True, or False if it had already ended."""
        if self.done:
            return False
        self.done = True
        self.value = value
        task = self.task
        if task is not None:
            self.task = None
            _reschedule(task, self)
        return True

    def throw(self, exc: BaseException) -> bool:
        """End the wait by raising ``exc`` in the waiting task (False if it had ended)."""
        if self.done:
            return False
        self.done = True
        task = self.task
        if task is not None:
            self.task = None
            _reschedule(task, outcome.Error(exc))
        return True

    def expire(self) -> None:
        """The deadline came first (the timer's call): end the wait with ``value``."""
        if not self.done:
            self.done = True
            task = self.task
            if task is not None:
                self.task = None
                _reschedule(task, self)

    def _abort(self, _: object) -> trio.lowlevel.Abort:
        self.done = True
        self.task = None
        return trio.lowlevel.Abort.SUCCEEDED

    # -- the outcome trio hands back ----------------------------------------------

    def unwrap(self) -> Any:
        return self.value

    def send(self, gen: Generator[Any, Any, object]) -> Any:
        return gen.send(self.value)

    async def asend(self, agen: AsyncGenerator[Any, Any]) -> Any:
        return await agen.asend(self.value)


async def _ready(value: Any) -> Any:
    await trio.lowlevel.checkpoint()
    return value
