"""``PeerConnection``: one authenticated, persistent connection to one peer incarnation.

Both directions are multiplexed on it. Two tasks serve it:

* the reader feeds bytes to a ``FrameDecoder``, decodes each frame and hands it to
  the node's dispatcher synchronously, so a message is in its task's mailbox before
  the next frame is even decoded (that is what orders ``PeerStatus`` Offline after
  every message already received);
* the writer drains the outbox: everything queued since its last write goes out in
  one ``send_all``.

Fast path: when the writer is idle (so the outbox is empty and no write is under
way), ``send`` first tries to write the frame itself with one non-blocking attempt
(``transport.nowait_sender``): no scheduler pass for the writer, none for
``send_all``'s checkpoint.  Whatever the attempt does not take goes to the outbox and
the writer, as usual, so a stuck link never holds a sender.  Only a few frames
(``_INLINE_FRAMES``) go this way between two runs of the reader or the writer: the
rest of a burst is batched by the writer into one ``send_all``, as before.

Heartbeats are the node's (``PeerManager``'s sweep calls ``heartbeat``), not a task
per connection.

Outbox policy: the outbox holds at most ``max_outbox_bytes``; a message that does not
fit is refused (``send`` returns -1, ``deliver`` 0) and counted, rather than letting a
slow peer make us hold unbounded memory.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import trio

from .._location import Location
from ..protocol.codec import Codec
from ..protocol.errors import DecodeError, ProtocolError
from ..protocol.framing import FrameDecoder, encode_frame_header
from ..protocol.handshake import PeerHello
from ..protocol.messages import FAILURE_VALUES, Kind
from ..protocol.printable import describe, escape
from ..transport import nowait_sender, receiver
from ._failures import failure_text
from .timer import Timer

__all__ = ["PeerConnection", "PeerStatistics"]

log = logging.getLogger("triopycos.peer")

_reschedule = trio.lowlevel.reschedule
_now = trio.current_time
#: Frames a connection may write from the sender's task (see the module docstring)
#: before the reader or the writer runs again; the rest go through the writer.
_INLINE_FRAMES = 4


@dataclass
class PeerStatistics:
    """Counters of the peer service (part of ``Pycos.statistics()``)."""

    connections_accepted: int = 0
    connections_opened: int = 0
    handshakes_failed: int = 0
    handshakes_refused_busy: int = 0
    duplicate_connections: int = 0
    messages_refused: int = 0  # did not fit in a peer's outbox or frame limit
    protocol_errors: int = 0  # connections closed for breaking the protocol


class _Pending:
    """One request waiting for its reply: the waiting trio task is parked and
    rescheduled directly by ``resolve`` (no Event, no extra hop), or by the node's
    timer when its timeout comes first (an ``Expiry``: no cancel scope per request)."""

    __slots__ = ("done", "on_reply", "task", "value")

    def __init__(self, failure: object, on_reply: Callable[[Any], None] | None) -> None:
        self.done = False
        self.task: trio.lowlevel.Task | None = None
        self.value = failure
        self.on_reply = on_reply

    def finish(self, value: object) -> None:
        self.value = value
        self.done = True
        task = self.task
        if task is not None:
            self.task = None
            _reschedule(task)

    def expire(self) -> None:
        self.finish(self.value)  # still the failure value


class PeerConnection:
    """A live session with one peer. Created after the handshake succeeded."""

    def __init__(
        self,
        *,
        stream: trio.abc.Stream,
        hello: PeerHello,
        leftover: bytes,
        codec: Codec,
        initiated_by_us: bool,
        own_id: bytes,
        dispatch: Callable[[PeerConnection, list[Any]], None],
        max_frame_size: int,
        max_outbox_bytes: int,
        peer_timeout: float,
        stats: PeerStatistics,
        timer: Timer,
    ) -> None:
        self.stream = stream
        self._timer = timer
        self.node_id = hello.node_id
        self.name = hello.name
        self.locations = tuple(Location(h, p) for h, p in hello.locations)
        self.location = self.locations[0] if self.locations else Location("?", 0)
        # The connection opened by the node with the smaller id wins a simultaneous
        # connect; both sides compute the same answer.
        self.initiator_id = own_id if initiated_by_us else hello.node_id
        self.codec = codec
        self._dispatch = dispatch
        self._decoder = FrameDecoder(max_frame_size)
        self._decoder.receive_data(leftover)
        self._max_frame_size = max_frame_size
        self._max_outbox = max_outbox_bytes
        self._outbox: list[bytes] = []
        self._outbox_bytes = 0
        self._writer: trio.lowlevel.Task | None = None
        self._send_nowait = nowait_sender(stream)
        self._inline = _INLINE_FRAMES
        self._pending: dict[int, _Pending] = {}
        self._next_request = 0
        # Requests of the peer that wait here (a handler task each, see start_soon):
        # the node caps them per connection (Limits.max_parked_requests).
        self.parked = 0
        self._drained: trio.Event | None = None
        self._scope: trio.CancelScope | None = None
        self._nursery: trio.Nursery | None = None
        self.closed = False
        self.leaving = False  # the peer said BYE
        self.closed_here = False  # this node closed it on purpose
        self.end_reason = "closed"  # why it ended, for the reconnect log lines
        self.stats = stats
        self._logged: set[str] = set()
        self._peer_timeout = peer_timeout
        self.last_heard = self.last_sent = trio.current_time()

    def __repr__(self) -> str:
        # The name and the addresses are the peer's own words (its hello).
        return f"<peer {describe(self.name)} at {escape(str(self.location))}>"

    # -- sending ------------------------------------------------------------------

    def send(self, message: list[Any]) -> int:
        """Queue one message: 0, or -1 if it cannot be (closed, too big, outbox full).
        A message the codec cannot encode raises ``TypeError`` (unsupported type) or
        ``ValueError`` (too deep, cyclic) to the caller."""
        if self.closed:
            return -1
        payload = self.codec.encode(message)
        size = len(payload)
        if size > self._max_frame_size:
            self.log_once("big", "message of %d bytes exceeds the frame limit", size)
            self.stats.messages_refused += 1
            return -1
        frame = encode_frame_header(size) + payload
        writer = self._writer
        if writer is None:
            # The writer is busy (or already woken): it takes this with the rest.
            if self._outbox_bytes + size > self._max_outbox and self._outbox:
                self.log_once("full", "outbox full (peer is slower than its senders)")
                self.stats.messages_refused += 1
                return -1
        elif self._inline and self._send_nowait is not None:
            # The writer is idle: nothing is queued or being written, so writing
            # here keeps the order.  One attempt that cannot wait.
            self._inline -= 1
            try:
                written = self._send_nowait(frame)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                written = 0  # the writer meets the same error and ends the session
            if written == len(frame):
                self.last_sent = _now()
                return 0
            if written:
                frame = frame[written:]
        self._outbox.append(frame)
        self._outbox_bytes += len(frame)
        if writer is not None:
            self._writer = None
            _reschedule(writer)
        return 0

    async def request(
        self,
        kind: int,
        *fields: Any,
        timeout: float | None = None,
        on_reply: Callable[[Any], None] | None = None,
    ) -> Any:
        """Send a request and wait for its reply; the kind's failure value if the
        peer goes away, the message cannot be queued, or ``timeout`` passes.

        ``on_reply(value)``, if given, is called with the reply by the reader, as it
        reads it: before any later message from the peer is dispatched (the waiting
        task itself runs only later)."""
        failure = FAILURE_VALUES[kind]
        self._next_request += 1
        rid = self._next_request
        if self.send([kind, rid, *fields]) < 0:
            await trio.lowlevel.checkpoint()
            return failure
        slot = self._pending[rid] = _Pending(failure, on_reply)
        try:
            slot.task = trio.lowlevel.current_task()

            def abort(_: object) -> trio.lowlevel.Abort:
                slot.task = None
                slot.done = True  # the timer can forget it
                return trio.lowlevel.Abort.SUCCEEDED

            if timeout is not None:
                self._timer.add(_now() + timeout, slot)
            await trio.lowlevel.wait_task_rescheduled(abort)
            return slot.value
        finally:
            self._pending.pop(rid, None)

    def start_soon(self, fn: Callable[[], Awaitable[None]]) -> None:
        """Run a request handler that must wait; it ends with the connection.  A
        handler that fails is logged: it must not end the session."""
        if self._nursery is not None and not self.closed:
            self._nursery.start_soon(self._guarded, fn)

    async def _guarded(self, fn: Callable[[], Awaitable[None]]) -> None:
        try:
            await fn()
        except Exception as exc:
            log.error("%r: a request handler failed: %s", self, failure_text(exc))

    def reply(self, rid: int, value: Any) -> None:
        try:
            self.send([Kind.REPLY, rid, value])
        except (TypeError, ValueError) as exc:
            self.log_once("reply", "reply cannot be encoded (%s); sending None", exc)
            self.send([Kind.REPLY, rid, None])

    def push_result(self, task_id: int, value: Any) -> None:
        """Tell the peer how a task it started ended (see Kind.TASK_RESULT)."""
        try:
            self.send([Kind.TASK_RESULT, task_id, value])
        except (TypeError, ValueError) as exc:
            self.log_once("result", "task result cannot be encoded (%s); sending None", exc)
            self.send([Kind.TASK_RESULT, task_id, None])

    def resolve(self, rid: int, value: Any) -> None:
        slot = self._pending.pop(rid, None)
        if slot is not None:
            if slot.on_reply is None:
                slot.finish(value)
                return
            try:
                slot.on_reply(value)
            finally:
                slot.finish(value)  # the requester is never left waiting

    # -- running ------------------------------------------------------------------

    async def run(self) -> None:
        """Serve the connection until it closes; never raises for network reasons."""
        try:
            async with trio.open_nursery() as nursery:
                self._scope = nursery.cancel_scope
                self._nursery = nursery
                if self.closed:
                    nursery.cancel_scope.cancel()
                nursery.start_soon(self._write_loop)
                try:
                    await self._read_loop()
                finally:
                    # Close first: a write stuck on a dead link then fails at once
                    # instead of holding this connection (and its node) open.
                    await trio.aclose_forcefully(self.stream)
                nursery.cancel_scope.cancel()
        except* (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as group:
            lost = group.exceptions[0]
            self.end_reason = f"connection lost: {lost or type(lost).__name__}"
            log.info("connection to %r lost: %s", self, lost)
        except* ProtocolError as group:
            self.stats.protocol_errors += 1
            self.end_reason = f"closed for a protocol error: {group.exceptions[0]}"
            log.warning("closing connection to %r: %s", self, group.exceptions[0])
        except* Exception as group:
            # A bug, or a message the dispatcher could not handle: it ends this
            # connection, never the node.  Logged without repr or a formatted
            # traceback, which could quote (and expand) the peer's values.
            self.end_reason = "failed (a bug, or a message the dispatcher could not handle)"
            log.error("closing connection to %r: %s", self, failure_text(group.exceptions[0]))
        finally:
            self.close()
            with trio.CancelScope(shield=True):
                await trio.aclose_forcefully(self.stream)

    async def _read_loop(self) -> None:
        decoder = self._decoder
        decode = self.codec.decode
        dispatch = self._dispatch
        receive = receiver(self.stream)
        while True:
            while (frame := decoder.next_frame()) is not None:
                try:
                    message = decode(frame)
                except DecodeError as exc:
                    # The framing is intact: drop this message, keep the session.
                    self.log_once("decode", "undecodable message dropped: %s", exc)
                    continue
                if type(message) is not list or not message:
                    raise ProtocolError("message is not a non-empty list")
                dispatch(self, message)
                if self.leaving:
                    return
            data = await receive(65536)
            if not data:
                self.end_reason = "the peer closed the connection"
                decoder.eof()
                return
            self.last_heard = _now()
            self._inline = _INLINE_FRAMES
            decoder.receive_data(data)

    async def _write_loop(self) -> None:
        # The only writer: nobody else ever waits on the stream's send side, so a
        # write stuck on a dead link stalls no requester, and ends when the
        # connection is torn down (see run()).
        current = trio.lowlevel.current_task()
        send_all = self.stream.send_all
        while True:
            if not self._outbox:
                self._inline = _INLINE_FRAMES
                self._writer = current

                def abort(_: object) -> trio.lowlevel.Abort:
                    self._writer = None
                    return trio.lowlevel.Abort.SUCCEEDED

                await trio.lowlevel.wait_task_rescheduled(abort)
                continue
            frames, self._outbox = self._outbox, []
            self._outbox_bytes = 0
            await send_all(frames[0] if len(frames) == 1 else b"".join(frames))
            self.last_sent = trio.current_time()
            if not self._outbox and self._drained is not None:
                self._drained.set()
                self._drained = None

    def heartbeat(self, now: float) -> None:
        """The node's heartbeat sweep (``PeerManager``), every third of
        ``peer_timeout``: keep an idle connection audibly alive, and give up on a
        silent peer.

        With nothing sent for a third of ``peer_timeout``, send a PING (the peer
        answers PONG); when nothing at all has been heard for ``peer_timeout``, the
        peer is gone even though its connection never closed (a frozen process, a
        cable pulled, a partition).  One sweep per node, not a task and a timer per
        connection: that is most of what an idle peer costs."""
        if self.closed:
            return
        if now - self.last_heard >= self._peer_timeout:
            self.end_reason = f"silent: nothing heard for {now - self.last_heard:.1f} s"
            log.warning("peer %r is silent: nothing heard for %.1f s", self, now - self.last_heard)
            self.close()
        elif now - self.last_sent >= self._peer_timeout / 3:
            self.send([Kind.PING])

    async def flush(self, timeout: float) -> None:
        """Wait (up to ``timeout``) until the outbox has been handed to the stream."""
        if self._outbox and not self.closed:
            if self._drained is None:
                self._drained = trio.Event()
            with trio.move_on_after(timeout):
                await self._drained.wait()
        else:
            await trio.lowlevel.checkpoint()

    def close(self, *, deliberately: bool = False) -> None:
        """Mark closed and fail every pending request at once.  ``deliberately``:
        this node chose to close it (no reconnecting)."""
        if deliberately:
            self.closed_here = True
        if self.closed:
            return
        self.closed = True
        pending, self._pending = self._pending, {}
        for slot in pending.values():
            slot.finish(slot.value)
        if self._drained is not None:
            self._drained.set()
        if self._scope is not None:
            self._scope.cancel()

    def log_once(self, key: str, text: str, *args: object) -> None:
        if key not in self._logged:
            self._logged.add(key)
            log.warning("%r: " + text, self, *args)
