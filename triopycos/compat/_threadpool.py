"""pycos's ``AsyncThreadPool`` and ``AsyncDBCursor`` on ``trio.to_thread``.

``pool = AsyncThreadPool(n)``; in a task, ``value = yield pool.async_task(fn, *args,
**kwargs)`` runs ``fn`` in one of at most ``n`` worker threads at a time (a trio
``CapacityLimiter``) and gives its result, or raises its exception in the task.  A task
terminated while its call runs stops waiting at once; the call itself finishes in its
thread (a blocking call such as ``input()`` cannot be interrupted), and, as pycos's
daemon threads, it does not keep the program from exiting.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Sequence
from typing import Any

import trio

__all__ = ["AsyncDBCursor", "AsyncThreadPool"]


class _Job:
    __slots__ = ("done", "started")

    def __init__(self) -> None:
        self.started = False
        self.done = False


class AsyncThreadPool:
    def __init__(self, num_threads: int) -> None:
        if isinstance(num_threads, bool) or not isinstance(num_threads, int) or num_threads < 1:
            raise ValueError(f"num_threads must be an int >= 1, not {num_threads!r}")
        self._num_threads = num_threads
        # Made in the first call's trio run (a limiter belongs to one run).
        self._limiter: trio.CapacityLimiter | None = None
        self._busy = 0
        self._idle = threading.Condition()
        self._closed = False

    def async_task(self, target: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Awaitable result of ``target(*args, **kwargs)`` run in a worker thread.  As
        pycos, ``async_task(fn, args=(...), kwargs={...})`` (``threading.Thread``'s
        form) works too."""
        if not args and kwargs and set(kwargs) <= {"args", "kwargs"}:
            args = tuple(kwargs.get("args", ()))
            kwargs = dict(kwargs.get("kwargs", {}))
        if self._closed:
            raise RuntimeError("this AsyncThreadPool was terminated")
        return self._run(functools.partial(target, *args, **kwargs))

    async def _run(self, call: Callable[[], Any]) -> Any:
        if self._limiter is None:
            self._limiter = trio.CapacityLimiter(self._num_threads)
        job = _Job()
        with self._idle:
            self._busy += 1
        try:
            return await trio.to_thread.run_sync(
                self._work, job, call, limiter=self._limiter, abandon_on_cancel=True
            )
        except BaseException:
            # Given up before a thread took the call: it will never run (the thread
            # checks), so it is done now; a call already running counts itself down.
            with self._idle:
                if not job.started:
                    self._count_down(job)
            raise

    def _work(self, job: _Job, call: Callable[[], Any]) -> Any:
        with self._idle:
            if job.done:
                return None
            job.started = True
        try:
            return call()
        finally:
            with self._idle:
                self._count_down(job)

    def _count_down(self, job: _Job) -> None:
        """(with ``self._idle`` held)"""
        if not job.done:
            job.done = True
            self._busy -= 1
            if not self._busy:
                self._idle.notify_all()

    def join(self) -> None:
        """Wait (blocking this thread) until every call made so far has finished."""
        with self._idle:
            self._idle.wait_for(lambda: not self._busy)

    def terminate(self) -> None:
        """Wait for the calls made so far, then refuse new ones."""
        self._closed = True
        self.join()


class AsyncDBCursor:
    """A DB-API cursor whose calls run in ``thread_pool``'s threads, one at a time
    (connections and cursors may not be shared by threads running at once)::

        cursor = AsyncDBCursor(pool, connection.cursor())
        yield cursor.execute("select ...")
        rows = cursor.fetchall()
    """

    def __init__(self, thread_pool: AsyncThreadPool, cursor: Any) -> None:
        self._thread_pool = thread_pool
        self._cursor = cursor
        self._turn: trio.Lock | None = None  # made in the first call's trio run

    def __getattr__(self, name: str) -> Any:
        if name == "_cursor":
            raise AttributeError(name)
        return getattr(self._cursor, name)

    async def _one_at_a_time(self, call: Callable[[], Any]) -> Any:
        if self._turn is None:
            self._turn = trio.Lock()
        async with self._turn:
            return await self._thread_pool.async_task(call)

    def execute(self, query: str, args: Sequence[Any] | dict[str, Any] | None = None) -> Any:
        """``yield cursor.execute(query, args)``: the cursor's ``execute`` result."""
        if args is None:
            return self._one_at_a_time(functools.partial(self._cursor.execute, query))
        return self._one_at_a_time(functools.partial(self._cursor.execute, query, args))

    def executemany(self, query: str, args: Sequence[Any]) -> Any:
        return self._one_at_a_time(functools.partial(self._cursor.executemany, query, args))

    def callproc(self, proc: str, args: Sequence[Any] = ()) -> Any:
        return self._one_at_a_time(functools.partial(self._cursor.callproc, proc, args))
