"""The receiving side of the file service: ``FileReceiver`` serves every connection
whose hello said purpose "file" (``PeerManager.file_handler``).

One request per connection: a transfer (``SendRequest``) or a deletion
(``DeleteRequest``); the wire rules are ``protocol/files.py``'s, the file-system
rules ``disk.py``'s.  The content is read in the trio thread and written by a
worker thread that stays up for the transfer (``thread_stage``), so the network and
the disk work at the same time; on a plain socket the whole loop runs in one worker
thread instead (``bulk_receive``).

Limits (``Limits``): at most ``max_file_transfers`` transfers at once (more are
refused), ``file_chunk_size`` bytes per chunk, and ``file_idle_timeout`` seconds for
each step (the request, each chunk, each reply).  A sender may ask for a shorter step
bound with ``timeout``; the receiver never waits longer than its own.  Every request
not carried out is counted (``refused``), logged once, and, where the connection
still works, told why.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
from collections.abc import AsyncGenerator
from contextlib import aclosing
from dataclasses import dataclass
from typing import Protocol

import trio

from ...protocol.errors import ProtocolError
from ...protocol.files import (
    Data,
    DeleteRequest,
    End,
    Event,
    FileReceiving,
    FileRefused,
    SendRequest,
    check_path,
)
from ...protocol.handshake import Authenticated
from ...protocol.printable import describe, escape
from ...transport import thread_socket
from ...transport.errors import STREAM_ERRORS
from .._failures import failure_text
from ..limits import Limits
from .bulk_receive import MAX_PIECES, STALLED, receive_in_thread
from .disk import Partial, as_refusal, delete_file, prepare, run_fs
from .thread_stage import ThreadStage, thread_stage

__all__ = ["FileCounters", "FileReceiver", "FileSettings", "FileStatistics"]

log = logging.getLogger("triopycos.files")

#: Bytes asked of the transport per read.
_RECEIVE_SIZE = 256 * 1024
#: Bytes of content handed to the writer thread at a time.
_BATCH = 1024 * 1024
#: Batches handed to the writer thread and not yet written (each about ``_BATCH``).
_WRITE_DEPTH = 3
#: How long a refusal may take to send (the sender may have stopped reading).
_REFUSAL_SEND_TIMEOUT = 1.0


class FileSettings(Protocol):
    """Where received files go and how big they may be (the node's attributes, read
    at each request, so changing them on a running node takes effect)."""

    dest_path: str
    max_file_size: int | None


@dataclass
class FileCounters:
    """The file receiver's counters, as it counts (``FileReceiver.stats``)."""

    received: int = 0
    #: Requests (transfers or deletions) this node did not carry out: refused,
    #: cut off (too big, timed out, malformed) or broken off by the connection.
    refused: int = 0
    deleted: int = 0
    #: Transfers in progress now.
    active: int = 0


@dataclass(frozen=True, slots=True)
class FileStatistics:
    """A snapshot of the file receiver's counters (``FileReceiver.statistics()``;
    ``received`` and ``refused`` are in ``Pycos.statistics()`` as
    ``files_received`` and ``files_refused``)."""

    received: int = 0
    refused: int = 0
    deleted: int = 0
    active: int = 0


class FileReceiver:
    """Serves file connections: set it as ``PeerManager.file_handler``."""

    def __init__(self, settings: FileSettings, limits: Limits) -> None:
        # Checked here, when the node starts, rather than at the first transfer.
        if not 1 <= limits.file_chunk_size <= 0xFFFF_FFFF:
            raise ValueError(f"file_chunk_size must be 1..2**32-1, not {limits.file_chunk_size}")
        if limits.max_file_transfers < 0:
            raise ValueError(f"max_file_transfers must be >= 0, not {limits.max_file_transfers}")
        if not limits.file_idle_timeout > 0:
            raise ValueError(f"file_idle_timeout must be > 0, not {limits.file_idle_timeout}")
        self._settings = settings
        self._limits = limits
        self.stats = FileCounters()

    def statistics(self) -> FileStatistics:
        stats = self.stats
        return FileStatistics(stats.received, stats.refused, stats.deleted, stats.active)

    async def __call__(self, stream: trio.abc.Stream, authenticated: Authenticated) -> None:
        peer = describe(authenticated.peer.name)  # the peer's own word: escaped
        try:
            await self._serve(stream, authenticated.leftover, peer)
        except Exception as exc:
            # A bug must end this transfer, never the node (this runs in the
            # listener's nursery); its text may quote the request, so no repr.
            log.error("file request from %s failed: %s", peer, failure_text(exc))
            self.stats.refused += 1
        finally:
            with trio.CancelScope(shield=True):
                await trio.aclose_forcefully(stream)

    async def _serve(self, stream: trio.abc.Stream, leftover: bytes, peer: str) -> None:
        """Serve one request; count and log it (once) if it is not carried out."""
        proto = FileReceiving(self._limits.file_chunk_size)
        proto.receive_data(leftover)
        what = "file request"
        refusal: str | None = None
        reason: str
        # The idle bound: the request must arrive within file_idle_timeout; a transfer
        # moves the deadline on at every chunk.
        with trio.CancelScope(
            deadline=trio.current_time() + self._limits.file_idle_timeout
        ) as idle:
            try:
                request = await _next_event(stream, proto)
                if isinstance(request, SendRequest):
                    what = _describe("file", request.name, request.dir)
                    await self._receive(stream, proto, request, idle)
                elif isinstance(request, DeleteRequest):
                    what = _describe("deletion of", request.name, request.dir)
                    await self._delete(stream, proto, request)
                else:  # pragma: no cover - the state machine starts with a request
                    raise ProtocolError("expected a request")
                return
            except FileRefused as exc:
                reason = refusal = exc.reason
            except ProtocolError as exc:
                reason = f"protocol error: {exc}"
                refusal = "protocol error"
            except STREAM_ERRORS as exc:
                reason = f"connection lost ({exc})"
        if idle.cancelled_caught:
            reason = refusal = STALLED
        # Counted before the sender can hear of it, and after any clean-up (the
        # partial file is gone by now): one line per request not carried out.
        self.stats.refused += 1
        log.warning("%s from %s not carried out: %s", what, peer, escape(reason, 300))
        if refusal is not None:
            # Best effort: tell the sender why before closing.
            with trio.move_on_after(_REFUSAL_SEND_TIMEOUT):
                with contextlib.suppress(*STREAM_ERRORS):
                    await stream.send_all(proto.refuse(refusal))

    async def _receive(
        self,
        stream: trio.abc.Stream,
        proto: FileReceiving,
        request: SendRequest,
        idle: trio.CancelScope,
    ) -> None:
        parts, name = check_path(request.dir, request.name)
        limit = self._settings.max_file_size or None
        if limit is not None and request.size > limit:
            raise FileRefused(f"file of {request.size} bytes exceeds max_file_size ({limit} bytes)")
        busy = self.stats.active
        if busy >= self._limits.max_file_transfers:
            raise FileRefused(f"busy: {busy} transfers in progress")
        step = self._limits.file_idle_timeout
        if request.timeout is not None:
            step = min(step, request.timeout)
        idle.deadline = trio.current_time() + step
        # No await between the check above and this: the count cannot be overtaken.
        self.stats.active += 1
        partial: Partial | None = None
        try:
            plan = await run_fs(prepare, self._settings.dest_path, parts, name, request)
            if plan is None:
                await stream.send_all(proto.same())
                return
            if isinstance(plan, os.stat_result):
                await stream.send_all(proto.exists(plan))
                return
            partial = plan
            await stream.send_all(proto.go(request.size, limit))
            sock = thread_socket(stream)
            if sock is None:
                await _pipeline(self._read_content(stream, proto, idle, step), partial)
            else:
                # The worker thread keeps the per-chunk bound itself.
                idle.deadline = math.inf
                with as_refusal():
                    await receive_in_thread(sock, proto, partial.write, step=step, batch=_BATCH)
                idle.deadline = trio.current_time() + step
            await run_fs(partial.commit, request)
            partial = None
            self.stats.received += 1
            await stream.send_all(proto.done())
        finally:
            self.stats.active -= 1
            if partial is not None:
                # Also when cancelled: the thread of an interrupted write has finished
                # (to_thread waits for it), so the temporary file can go now.
                with trio.CancelScope(shield=True):
                    await trio.to_thread.run_sync(partial.discard)

    @staticmethod
    async def _read_content(
        stream: trio.abc.Stream, proto: FileReceiving, idle: trio.CancelScope, step: float
    ) -> AsyncGenerator[list[memoryview] | End]:
        """Batches of received content (about ``_BATCH`` bytes each), then the End."""
        batch: list[memoryview] = []
        size = 0
        while True:
            event = await _next_event(stream, proto)
            if isinstance(event, End):
                if batch:
                    yield batch
                yield event
                return
            assert isinstance(event, Data)
            batch.append(event.data)
            size += len(event.data)
            if event.chunk_end:
                # The idle bound is per chunk: a whole chunk must arrive in time.
                idle.deadline = trio.current_time() + step
            if size >= _BATCH or len(batch) >= MAX_PIECES:
                # Counted in pieces too: a sender that dribbles a byte per segment
                # would make a batch of a million views, ~200 bytes each.
                yield batch
                batch = []
                size = 0

    async def _delete(
        self, stream: trio.abc.Stream, proto: FileReceiving, request: DeleteRequest
    ) -> None:
        parts, name = check_path(request.dir, request.name)
        await run_fs(delete_file, self._settings.dest_path, parts, name)
        self.stats.deleted += 1
        await stream.send_all(proto.done())


async def _next_event(stream: trio.abc.Stream, proto: FileReceiving) -> Event:
    while (event := proto.next_event()) is None:
        data = await stream.receive_some(_RECEIVE_SIZE)
        if not data:
            raise trio.BrokenResourceError("the sender closed the connection")
        proto.receive_data(data)
    return event


async def _pipeline(batches: AsyncGenerator[list[memoryview] | End], partial: Partial) -> End:
    """Write batches in a worker thread while the next ones are received:
    the network and the disk work at the same time, with at most ``_WRITE_DEPTH``
    batches handed to the writer and not yet written."""

    async with thread_stage(partial.write, _WRITE_DEPTH) as writer, aclosing(batches):
        async for item in batches:
            if isinstance(item, End):
                while writer.pending:
                    await _written(writer)
                return item
            if writer.pending >= writer.depth:
                await _written(writer)
            writer.submit_nowait(item)
    raise AssertionError("the content ended without its End")  # pragma: no cover


async def _written(writer: ThreadStage[list[memoryview], None]) -> None:
    """Wait for the oldest batch handed to ``writer`` to be written."""
    with as_refusal():
        await writer.get()


def _describe(what: str, name: str, dir: str | None) -> str:
    return f"{what} {describe(name)}" + (f" in {describe(dir)}" if dir else "")
