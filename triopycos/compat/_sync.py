"""pycos's task synchronisation primitives: waiting methods are awaitables (``yield
lock.acquire()`` in a generator task, ``await`` in an ``async def`` one); the rest are
plain calls.  Built on trio's primitives, so fairness and ownership checks are
trio's; a ``timeout`` gives up after that many seconds (the waiting call returns
False)."""

from __future__ import annotations

import math

import trio

__all__ = ["Condition", "Event", "Lock", "RLock", "Semaphore"]


def _limit(timeout: float | None) -> float:
    return math.inf if timeout is None or timeout < 0 else timeout


class Event:
    def __init__(self) -> None:
        self._flag = False
        self._lot = trio.lowlevel.ParkingLot()

    def set(self) -> None:
        self._flag = True
        self._lot.unpark_all()

    def clear(self) -> None:
        self._flag = False

    def is_set(self) -> bool:
        return self._flag

    isSet = is_set

    async def wait(self, timeout: float | None = None) -> bool:
        """True once the event is set; False if ``timeout`` passes first."""
        if self._flag:
            await trio.lowlevel.checkpoint()
            return True
        with trio.move_on_after(_limit(timeout)):
            await self._lot.park()
        return self._flag


async def _acquire(lock: trio.Lock, blocking: bool, timeout: float | None) -> bool:
    if lock.statistics().owner is trio.lowlevel.current_task():
        # Taking a plain lock twice never succeeds: after ``timeout`` say so (as
        # pycos does); with no timeout it would wait forever, so that is an error.
        if blocking and _limit(timeout) == math.inf:
            raise RuntimeError("this task already holds the lock (use RLock to take it again)")
        await trio.sleep(_limit(timeout) if blocking else 0)
        return False
    if not blocking:
        try:
            lock.acquire_nowait()
        except trio.WouldBlock:
            await trio.lowlevel.checkpoint()
            return False
        await trio.lowlevel.checkpoint()
        return True
    with trio.move_on_after(_limit(timeout)):
        await lock.acquire()
        return True
    return False


class Lock:
    def __init__(self) -> None:
        self._lock = trio.Lock()

    async def acquire(self, blocking: bool = True, timeout: float | None = -1) -> bool:
        return await _acquire(self._lock, blocking, timeout)

    def release(self) -> None:
        """Release; only the task holding the lock may (``RuntimeError`` otherwise)."""
        self._lock.release()

    def locked(self) -> bool:
        return self._lock.locked()


class RLock:
    """A lock its owner may take again; it is free when released as often."""

    def __init__(self) -> None:
        self._lock = trio.Lock()
        self._owner: trio.lowlevel.Task | None = None
        self._depth = 0

    async def acquire(self, blocking: bool = True, timeout: float | None = -1) -> bool:
        me = trio.lowlevel.current_task()
        if self._owner is me:
            self._depth += 1
            await trio.lowlevel.checkpoint()
            return True
        if not await _acquire(self._lock, blocking, timeout):
            return False
        self._owner, self._depth = me, 1
        return True

    def release(self) -> None:
        if self._owner is not trio.lowlevel.current_task():
            raise RuntimeError("RLock released by a task that does not hold it")
        self._depth -= 1
        if self._depth == 0:
            self._owner = None
            self._lock.release()


class Semaphore:
    def __init__(self, value: int = 1) -> None:
        self._semaphore = trio.Semaphore(value)

    async def acquire(self, blocking: bool = True, timeout: float | None = -1) -> bool:
        if not blocking:
            try:
                self._semaphore.acquire_nowait()
            except trio.WouldBlock:
                await trio.lowlevel.checkpoint()
                return False
            await trio.lowlevel.checkpoint()
            return True
        with trio.move_on_after(_limit(timeout)):
            await self._semaphore.acquire()
            return True
        return False

    def release(self) -> None:
        self._semaphore.release()

    @property
    def value(self) -> int:
        return self._semaphore.value


class Condition:
    """A condition variable with its own lock: ``yield cv.acquire()``, ``yield
    cv.wait(timeout)`` (True if notified), ``cv.notify(n)``, ``cv.release()``."""

    def __init__(self) -> None:
        self._lock = trio.Lock()
        self._condition = trio.Condition(self._lock)

    async def acquire(self, blocking: bool = True, timeout: float | None = -1) -> bool:
        return await _acquire(self._lock, blocking, timeout)

    def release(self) -> None:
        self._condition.release()

    async def wait(self, timeout: float | None = None) -> bool:
        """Release the lock, wait for a notify, take the lock back: True if notified,
        False if ``timeout`` passed (the lock is held again either way)."""
        with trio.move_on_after(_limit(timeout)):
            await self._condition.wait()
            return True
        return False

    def notify(self, n: int = 1) -> None:
        self._condition.notify(n)

    def notify_all(self) -> None:
        self._condition.notify_all()

    notifyAll = notify_all
