"""pycos's task synchronisation primitives.

Waiting methods are awaitables (``yield lock.acquire()`` in a generator task,
``await`` in an ``async def`` one); the others are plain calls, and as in pycos they
may be made from any thread (the script's main thread setting an event, say): off
the scheduler's thread they run in it.  A ``timeout`` gives up after that many
seconds (the call returns False); what needs no waiting succeeds even with
``timeout=0``.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from typing import Any, TypeVar

import trio

__all__ = ["Condition", "Event", "Lock", "RLock", "Semaphore"]

R = TypeVar("R")


def _limit(timeout: float | None) -> float:
    return math.inf if timeout is None or timeout < 0 else timeout


def _in_scheduler(fn: Callable[..., R], *args: Any) -> R:
    """``fn(*args)`` in the scheduler's thread (here, if this is it)."""
    from ._scheduler import Pycos

    return Pycos.instance().node._thread.run(fn, *args)


class _Waiters:
    """Tasks parked until woken (True) or their timeout passes (False)."""

    def __init__(self) -> None:
        self._queue: deque[trio.Event] = deque()

    async def wait(self, timeout: float | None, abandon: Callable[[], None] | None = None) -> bool:
        """Park; ``abandon()`` is called if what woke us (a lock or a unit handed
        over) arrives just as the task is cancelled, so it is passed on, not lost."""
        woken = trio.Event()
        self._queue.append(woken)
        try:
            with trio.move_on_after(_limit(timeout)):
                await woken.wait()
        except BaseException:
            if woken.is_set():
                if abandon is not None:
                    abandon()
            else:
                self._queue.remove(woken)
            raise
        if not woken.is_set():
            self._queue.remove(woken)
            return False
        return True

    def wake(self, n: int | None = None) -> int:
        count = 0
        while self._queue and (n is None or count < n):
            self._queue.popleft().set()
            count += 1
        return count

    def __len__(self) -> int:
        return len(self._queue)


class Event:
    def __init__(self) -> None:
        self._flag = False
        self._waiters = _Waiters()

    def set(self) -> None:
        _in_scheduler(self._set)

    def _set(self) -> None:
        self._flag = True
        self._waiters.wake()

    def clear(self) -> None:
        self._flag = False

    def is_set(self) -> bool:
        return self._flag

    isSet = is_set  # pycos's name

    async def wait(self, timeout: float | None = None) -> bool:
        """True once the event is set (even if cleared again since); False if
        ``timeout`` passes first."""
        if self._flag:
            await trio.lowlevel.checkpoint()
            return True
        return await self._waiters.wait(timeout)


class RLock:
    """A lock its owner may take again; it is free when released as often."""

    def __init__(self) -> None:
        self._owner: trio.lowlevel.Task | None = None
        self._depth = 0
        self._waiters = _Waiters()
        self._reentrant = True

    async def acquire(self, blocking: bool = True, timeout: float | None = -1) -> bool:
        me = trio.lowlevel.current_task()
        if self._owner is me:
            if not self._reentrant:
                # A plain lock taken twice never succeeds: after ``timeout`` say so
                # (as pycos); with no timeout it would wait forever: an error.
                if blocking and _limit(timeout) == math.inf:
                    raise RuntimeError("this task already holds the lock (use RLock)")
                await trio.sleep(_limit(timeout) if blocking else 0)
                return False
            self._depth += 1
            await trio.lowlevel.checkpoint()
            return True
        if self._owner is None:
            self._owner, self._depth = me, 1
            await trio.lowlevel.checkpoint()
            return True
        if not blocking:
            await trio.lowlevel.checkpoint()
            return False
        # release() hands the lock to the first waiter directly (no barging).
        if not await self._waiters.wait(timeout, self._hand_on):
            return False
        self._owner, self._depth = me, 1
        return True

    def release(self) -> None:
        """Release; only the task holding the lock may (``RuntimeError`` otherwise)."""
        try:
            me = trio.lowlevel.current_task()
        except RuntimeError:
            me = None
        if self._owner is None or self._owner is not me:
            raise RuntimeError("lock released by a task that does not hold it")
        self._depth -= 1
        if self._depth == 0:
            self._hand_on()

    def _hand_on(self) -> None:
        self._owner = None
        if self._waiters.wake(1):
            self._owner = _HANDED_OVER  # taken by the woken waiter when it runs

    def locked(self) -> bool:
        return self._owner is not None


class _HandedOver:
    """The owner of a lock between release() and the woken waiter running."""


_HANDED_OVER: Any = _HandedOver()


class Lock(RLock):
    """A lock (not reentrant)."""

    def __init__(self) -> None:
        super().__init__()
        self._reentrant = False


class Semaphore:
    def __init__(self, value: int = 1) -> None:
        if value < 0:
            raise ValueError("semaphore value must be >= 0")
        self._value = value
        self._waiters = _Waiters()

    async def acquire(self, blocking: bool = True, timeout: float | None = -1) -> bool:
        if self._value > 0:
            self._value -= 1
            await trio.lowlevel.checkpoint()
            return True
        if not blocking:
            await trio.lowlevel.checkpoint()
            return False
        return await self._waiters.wait(timeout, self._release)  # release() gave its unit

    def release(self) -> None:
        _in_scheduler(self._release)

    def _release(self) -> None:
        if not self._waiters.wake(1):
            self._value += 1

    @property
    def value(self) -> int:
        return self._value


class Condition(RLock):
    """A condition variable with its own reentrant lock: ``yield cv.acquire()``,
    ``yield cv.wait(timeout)`` (True if notified), ``cv.notify(n)``,
    ``cv.release()``.  As in pycos, ``notify`` does not need the lock."""

    def __init__(self) -> None:
        super().__init__()
        self._notified = _Waiters()

    async def wait(self, timeout: float | None = None) -> bool:
        """Release the lock (all levels), wait for a notify, take it back as it was:
        True if notified, False if ``timeout`` passed first."""
        me = trio.lowlevel.current_task()
        if self._owner is not me:
            raise RuntimeError("wait() needs the condition's lock")
        depth, self._depth = self._depth, 1
        self.release()
        notified = await self._notified.wait(timeout)
        with trio.CancelScope(shield=True):  # the caller gets its lock back, always
            await self.acquire()
        self._depth = depth
        return notified

    def notify(self, n: int = 1) -> None:
        _in_scheduler(self._notified.wake, n)

    def notify_all(self) -> None:
        _in_scheduler(self._notified.wake)

    notifyAll = notify_all  # pycos's name
