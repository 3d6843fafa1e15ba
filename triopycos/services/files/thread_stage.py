"""A pipeline stage in a worker thread that stays up for a whole file transfer.

``trio.to_thread.run_sync`` per chunk costs two cross-thread wake-ups before the
worker can start the next chunk (trio hands it the job, then waits to be told it
finished before handing it the next one).  On a small VM that hand-off measured about
0.5 ms per job, as much as writing and hashing the MiB itself, and the disk stood
idle meanwhile.  Here the worker takes its jobs from a queue and runs them back to
back; trio only learns of each result (``TrioToken.run_sync_soon``), so the wake-ups
overlap with the work instead of separating it.

At most ``depth`` jobs are submitted and not yet collected (queued, running, or done
with their result waiting), which bounds the memory a transfer holds.  Results come
back in submission order; after a job fails, the later ones are not run and their
results are errors.  Leaving the ``thread_stage`` block stops the worker after
the job it is running (the rest of the queue is dropped) and waits for it, so nothing
touches a file after the block, also when it is left by cancellation.
"""

from __future__ import annotations

import math
import queue
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Generic, TypeVar, cast

import outcome
import trio

__all__ = ["ThreadStage", "thread_stage"]

A = TypeVar("A")
R = TypeVar("R")

#: Tells the worker to stop (any other item, None included, is a job).
_STOP = object()


class ThreadStage(Generic[A, R]):
    """Submit jobs with ``submit_nowait``; collect their results with ``get``."""

    def __init__(self, fn: Callable[[A], R], depth: int) -> None:
        if depth < 1:
            raise ValueError("depth must be >= 1")
        self._fn = fn
        self.depth = depth
        #: Jobs submitted and not yet collected by ``get``.
        self.pending = 0
        self._jobs: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._stopping = threading.Event()
        self._token = trio.lowlevel.current_trio_token()
        self._results_send, self._results = trio.open_memory_channel[outcome.Outcome[R]](math.inf)

    def submit_nowait(self, item: A) -> None:
        if self.pending >= self.depth:
            raise trio.WouldBlock
        self.pending += 1
        self._jobs.put(item)

    async def get(self) -> R:
        """The result of the oldest job not yet collected (its exception, raised)."""
        if not self.pending:
            raise RuntimeError("no job pending")
        result = await self._results.receive()
        self.pending -= 1
        return result.unwrap()

    def _work(self) -> None:
        """The worker thread: run jobs until told to stop."""
        failed = False
        while True:
            item = self._jobs.get()
            if item is _STOP or self._stopping.is_set():
                return
            if failed:
                # Later jobs build on the failed one (the next bytes of the same
                # file): they are not run, and say so rather than never answer.
                result: outcome.Outcome[R] = outcome.Error(
                    RuntimeError("not run: an earlier job of this stage failed")
                )
            else:
                result = outcome.capture(self._fn, cast(A, item))
                failed = isinstance(result, outcome.Error)
            self._token.run_sync_soon(self._results_send.send_nowait, result)

    def _stop(self) -> None:
        self._stopping.set()
        self._jobs.put(_STOP)


@asynccontextmanager
async def thread_stage(fn: Callable[[A], R], depth: int) -> AsyncIterator[ThreadStage[A, R]]:
    """A ``ThreadStage`` running ``fn`` in its own worker thread for the block."""
    stage = ThreadStage(fn, depth)
    finished = trio.Event()
    token = stage._token

    def deliver(_: outcome.Outcome[None]) -> None:
        token.run_sync_soon(finished.set)

    # No nursery: an exception of the block comes out as itself, not in a group.
    trio.lowlevel.start_thread_soon(stage._work, deliver, name="triopycos file stage")
    try:
        yield stage
    finally:
        stage._stop()
        # Also when cancelled: nothing may touch the file after the block.
        with trio.CancelScope(shield=True):
            await finished.wait()
