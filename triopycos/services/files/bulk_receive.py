"""Receiving a file's content on a plain TCP socket in one worker thread.

The general receiver (``receiver._pipeline``) reads in the trio thread and writes in a
worker thread.  On a 2-core machine that makes three busy threads for two processes
(the sender's, the receiver's reader, its writer), and the kernel often puts the
writer on the sender's CPU: measured, the same transfer then ran at a third of its
speed, one run in three.  So on a plain socket the receiver's whole loop, reading
and writing, runs in one worker thread, as a single-threaded program would (pycos
does this in its scheduler's thread); the node's trio thread stays free for its
messages.

The worker reads the socket through ``transport.ThreadSocket`` (a duplicate of its
descriptor, with its own timeouts; every socket call and error stays there) and
feeds the same sans-IO state machine, so every check of a chunk happens as on the
general path.  A chunk
must arrive within ``step`` seconds, as there.  Cancelling the caller shuts the
connection down, which ends the worker's wait at once; the caller returns only when
the worker has stopped, so nothing touches the file afterwards.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import outcome
import trio

from ...protocol.files import Data, End, FileReceiving, FileRefused
from ...transport import ThreadSocket

__all__ = ["MAX_PIECES", "STALLED", "receive_in_thread"]

#: Bytes the worker waits for before it is woken (SO_RCVLOWAT; Linux, BSDs, macOS).
_LOWAT = 1024 * 1024

#: Pieces of content (views of received bytes) handed to the writer at most at
#: once: a sender dribbling tiny segments must not make a batch of millions.
MAX_PIECES = 4096

#: The refusal when a chunk did not arrive in time.
STALLED = "timed out: the sender stalled"


async def receive_in_thread(
    sock: ThreadSocket,
    proto: FileReceiving,
    write: Callable[[list[memoryview]], None],
    *,
    step: float,
    batch: int,
) -> End:
    """Receive the content from ``sock`` (closed here) until the end frame, in
    reads of up to ``batch`` bytes, handing batches of about that many bytes to
    ``write``, in a worker thread.  ``write``'s errors come out as they are; a
    stalled sender is a ``FileRefused(STALLED)``; a closed connection is a
    ``trio.BrokenResourceError``."""
    stop = threading.Event()
    token = trio.lowlevel.current_trio_token()
    finished = trio.Event()
    result: list[outcome.Outcome[End]] = []

    def work() -> End:
        try:
            return _receive(sock, proto, write, stop, step, batch)
        finally:
            sock.release()

    def deliver(got: outcome.Outcome[End]) -> None:
        result.append(got)
        token.run_sync_soon(finished.set)

    try:
        trio.lowlevel.start_thread_soon(work, deliver, name="triopycos file receiver")
        try:
            await finished.wait()
        except BaseException:
            stop.set()
            sock.interrupt()  # ends the worker's wait on the socket at once
            with trio.CancelScope(shield=True):
                await finished.wait()
            raise
    finally:
        sock.close()
    return result[0].unwrap()


def _receive(
    sock: ThreadSocket,
    proto: FileReceiving,
    write: Callable[[list[memoryview]], None],
    stop: threading.Event,
    step: float,
    batch_size: int,
) -> End:
    batch: list[memoryview] = []
    size = 0
    deadline = time.monotonic() + step
    while True:
        event = proto.next_event()
        if event is None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise FileRefused(STALLED)
            # Woken once per MiB or so, not per segment: with both processes on one
            # CPU, per-segment wake-ups made the two sides preempt each other all
            # the time (a third of the throughput).
            sock.wake_after(min(max(proto.content_to_come(), 1), _LOWAT))
            data = sock.recv(batch_size, left)
            if data is None:
                # Nothing in time; bytes below the wake-up mark may still have ended
                # a chunk (then the next chunk has a deadline of its own): the
                # deadline, at the top, says whether this is a stall.
                continue
            if stop.is_set():
                raise trio.BrokenResourceError("cancelled")
            if not data:
                raise trio.BrokenResourceError("the sender closed the connection")
            proto.receive_data(data)
            continue
        if isinstance(event, End):
            if batch:
                write(batch)
            return event
        assert isinstance(event, Data)
        batch.append(event.data)
        size += len(event.data)
        if event.chunk_end:
            deadline = time.monotonic() + step
        if size >= batch_size or len(batch) >= MAX_PIECES:
            write(batch)
            batch = []
            size = 0
