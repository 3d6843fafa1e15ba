"""``PeerConnection``: one authenticated, persistent connection to one peer incarnation.

The thin trio driver of ``protocol.session.PeerSession``, which owns the session's
rules (request ids and reply matching, PING/PONG, BYE, the shape of every message).
Both directions are multiplexed on it, served by:

* the reader: it feeds the session what the stream gives and hands each message to
  the node's dispatcher synchronously, so a message is in its task's mailbox before
  any later frame is decoded, except within a run of task messages for one task,
  which are read together (``events(runs=True)``) and put in its mailbox together
  (that is what orders ``PeerStatus`` Offline after every message already
  received).  It wakes the requester of each reply and logs what the session
  dropped as malformed (once per kind);
* the writer: it drains the outbox, everything queued since its last write in one
  ``send_all``;
* requests park (``services.timer.Parked``) until the reader wakes them with their
  reply, the node's timer with their timeout, or ``close`` with their failure value.

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

import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeAlias

import trio

from ..protocol.codec import Codec
from ..protocol.errors import ProtocolError
from ..protocol.handshake import PeerHello
from ..protocol.messages import (
    REQUEST_TYPES,
    Bye,
    IsReference,
    Kind,
    OneWay,
    Reply,
    Request,
    TaskResult,
)
from ..protocol.printable import describe, escape
from ..protocol.session import (
    Answer,
    Malformed,
    MessageTooLarge,
    PeerSession,
    SendRefused,
    Undecodable,
    references_are_refs,
)
from ..transport import nowait_sender, receiver
from ..transport.errors import STREAM_ERRORS
from ..values import Location
from ._failures import failure_text
from .timer import Parked, Timer

__all__ = ["Dispatch", "PeerConnection", "PeerStatistics"]

log = logging.getLogger("triopycos.peer")

_reschedule = trio.lowlevel.reschedule
_now = trio.current_time
#: Frames a connection may write from the sender's task (see the module docstring)
#: before the reader or the writer runs again; the rest go through the writer.
_INLINE_FRAMES = 4
#: The kinds whose malformed messages are logged once each (any other: once in all).
_KIND_KEYS = frozenset(name for name in vars(Kind) if name.isupper())


#: The node's dispatcher: takes the events of one read, in order (``_serve.py``).
Dispatch: TypeAlias = "Callable[[PeerConnection, Iterator[object]], None]"


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


class _Waiting(Parked):
    """A request waiting for its reply (its value: the request's failure value until
    the reply comes).  ``on_reply`` sees the reply first, as the reader reads it."""

    __slots__ = ("on_reply",)

    def __init__(self, failure: object, on_reply: Callable[[Any], None] | None) -> None:
        # Parked's fields, set here: a super() call costs as much again.
        self.done = False
        self.task = None
        self.value = failure
        self.on_reply = on_reply


async def _failed(waiter: _Waiting) -> Any:
    """A request that was not sent: its failure value, after a checkpoint."""
    await trio.lowlevel.checkpoint()
    return waiter.value


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
        dispatch: Dispatch,
        max_frame_size: int,
        max_outbox_bytes: int,
        peer_timeout: float,
        stats: PeerStatistics,
        timer: Timer,
        is_reference: IsReference = references_are_refs,
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
        self._session: PeerSession[_Waiting] = PeerSession(
            codec, max_frame_size=max_frame_size, is_reference=is_reference, data=leftover
        )
        self._max_outbox = max_outbox_bytes
        self._outbox: list[bytes] = []
        self._outbox_bytes = 0
        self._writer: trio.lowlevel.Task | None = None
        self._send_nowait = nowait_sender(stream)
        self._inline = _INLINE_FRAMES
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

    def send(self, message: OneWay | Reply) -> int:
        """Queue one message: 0, or -1 if it cannot be (closed or leaving, too big,
        outbox full).  A message the codec cannot encode raises ``TypeError``
        (unsupported type) or ``ValueError`` (too deep, cyclic) to the caller."""
        if self.closed:
            return -1
        try:
            frame = self._session.send(message)
        except SendRefused as exc:
            return self._refused(exc)
        return self._write(frame)

    def send_task(self, task_id: int, message: Any) -> int:
        """``send(TaskSend(task_id, message))`` without making the TaskSend (the
        commonest message)."""
        if self.closed:
            return -1
        try:
            frame = self._session.send_task(task_id, message)
        except SendRefused as exc:
            return self._refused(exc)
        return self._write(frame)

    def send_raw(self, fields: list[Any]) -> int:
        """Send any list as a message, unchecked, as a faulty or hostile peer could
        (for tests and tools: the node never does)."""
        if self.closed:
            return -1
        try:
            frame = self._session.send_raw(fields)
        except SendRefused as exc:
            return self._refused(exc)
        return self._write(frame)

    def _refused(self, exc: SendRefused) -> int:
        if isinstance(exc, MessageTooLarge):
            self.log_once("big", "message of %d bytes exceeds the frame limit", exc.size)
            self.stats.messages_refused += 1
        return -1

    def _outbox_full(self) -> int:
        self.log_once("full", "outbox full (peer is slower than its senders)")
        self.stats.messages_refused += 1
        return -1

    def _write_owed(self, frame: bytes) -> None:
        """Queue what the peer is owed (a reply, a PONG, a failure reply).  Dropping
        one would leave the peer's request waiting for ever on a connection that
        stays open, so a full outbox closes the connection instead: the peer's
        requests fail at once and its watchers hear PeerLost, as for any loss."""
        if self._write(frame) < 0 and not self.closed:
            log.warning(
                "%r: a reply could not be queued (outbox full: the peer does not read "
                "what it asked for); closing the connection",
                self,
            )
            self.close()

    def _write(self, frame: bytes) -> int:
        """Queue (or write at once, see the module docstring) one or more frames."""
        writer = self._writer
        if writer is None:
            # The writer is busy (or already woken): it takes this with the rest.
            if self._outbox_bytes + len(frame) > self._max_outbox and self._outbox:
                return self._outbox_full()
        elif self._inline and self._send_nowait is not None:
            # The writer is idle: nothing is queued or being written, so writing
            # here keeps the order.  One attempt that cannot wait.
            self._inline -= 1
            try:
                written = self._send_nowait(frame)
            except STREAM_ERRORS:
                written = 0  # the writer meets the same error and ends the session
            if written == len(frame):
                self.last_sent = _now()
                return 0
            if written:
                # OWED (TLS): all taken, but the writer must flush the stream.
                frame = frame[written:] if written > 0 else b""
        self._outbox.append(frame)
        self._outbox_bytes += len(frame)
        if writer is not None:
            self._writer = None
            _reschedule(writer)
        return 0

    def request(
        self,
        request: Request,
        *,
        timeout: float | None = None,
        on_reply: Callable[[Any], None] | None = None,
    ) -> Awaitable[Any]:
        """Send a request now; await its reply (at once): the request's failure value
        if the peer goes away, the message cannot be queued, or ``timeout`` passes.

        ``on_reply(value)``, if given, is called with the reply by the reader, as it
        reads it: before any later message from the peer is dispatched (the waiting
        task itself runs only later).  Not ``async``: the awaitable is the wait
        itself, a coroutine frame less on every request."""
        waiter = _Waiting(request.FAILURE, on_reply)
        if self.closed:
            return _failed(waiter)
        try:
            request_id, frame = self._session.send_request(request, waiter)
        except SendRefused as exc:
            self._refused(exc)
            return _failed(waiter)
        return self._wait_reply(request_id, frame, waiter, timeout)

    def request_raw(self, kind: int, *fields: Any, timeout: float | None = None) -> Awaitable[Any]:
        """``request`` of any kind and fields, unchecked (see ``send_raw``)."""
        request = REQUEST_TYPES.get(kind)
        waiter = _Waiting(None if request is None else request.FAILURE, None)
        if self.closed:
            return _failed(waiter)
        try:
            request_id, frame = self._session.send_raw_request(kind, list(fields), waiter)
        except SendRefused as exc:
            self._refused(exc)
            return _failed(waiter)
        return self._wait_reply(request_id, frame, waiter, timeout)

    async def _wait_reply(
        self, request_id: int, frame: bytes, waiter: _Waiting, timeout: float | None
    ) -> Any:
        try:
            if self._write(frame) < 0:
                await trio.lowlevel.checkpoint()
                return waiter.value
            return await waiter.wait(self._timer, timeout)
        finally:
            self._session.forget(request_id)  # a late reply finds no one

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

    def reply(self, request: Request, value: Any) -> None:
        """Answer one of the peer's requests (a value that cannot be sent: None)."""
        if self.closed:
            return
        try:
            frame = self._session.send_reply(request.request_id, value)
        except (TypeError, ValueError) as exc:
            self.log_once("reply", "reply cannot be encoded (%s); sending None", exc)
            self.send(Reply(request.request_id, None))
            return
        except SendRefused as exc:
            # Too big for a frame: the peer gets the failure value instead.
            self._refused(exc)
            self._write_owed(self._session.send_reply(request.request_id, request.FAILURE))
            return
        self._write_owed(frame)

    def push_result(self, task_id: int, value: Any) -> None:
        """Tell the peer how a task it started ended (see ``TaskResult``)."""
        try:
            self.send(TaskResult(task_id, value))
        except (TypeError, ValueError) as exc:
            self.log_once("result", "task result cannot be encoded (%s); sending None", exc)
            self.send(TaskResult(task_id, None))

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
        except* STREAM_ERRORS as group:
            # The transport's errors, as transport/errors.py maps them (an OSError
            # here would be a bug of that mapping: it is not taken for a lost link).
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
        session = self._session
        dispatch = self._dispatch
        receive = receiver(self.stream)
        while True:
            # The node takes every event of what was read, one at a time: each
            # message is handled before the next frame is even decoded.
            dispatch(self, session.events(runs=True))
            output = session.data_to_send()  # PONGs, failure replies
            if output and not self.closed:
                self._write_owed(output)
            if self.leaving:
                return  # the peer said BYE
            data = await receive(65536)
            if not data:
                self.end_reason = "the peer closed the connection"
                session.receive_data(b"")  # ProtocolError if it stopped mid-frame
                dispatch(self, session.events(runs=True))
                return
            self.last_heard = _now()
            self._inline = _INLINE_FRAMES
            session.receive_data(data)

    def session_event(self, event: object) -> bool:
        """Handle an event of the session itself, handed back by the node's
        dispatcher: a reply, the peer's BYE (True), a message the session dropped."""
        match event:
            case Answer():
                waiter: _Waiting = event.waiter
                value = event.value
                on_reply = waiter.on_reply
                if on_reply is None:
                    waiter.wake(value)
                else:
                    try:
                        on_reply(value)
                    finally:
                        waiter.wake(value)  # the requester is never left waiting
            case Bye():
                self.leaving = True
                return True
            case Malformed(kind=kind, reason=reason):
                # One key per known kind, one for every unknown one: a peer choosing
                # kind numbers cannot grow this set (nor the log) per message.
                key = kind if kind in _KIND_KEYS else "unknown kind"
                self.log_once(f"malformed {key}", "malformed %s message dropped: %s", kind, reason)
            case Undecodable(reason=reason):
                # The framing is intact: drop this message, keep the session.
                self.log_once("decode", "undecodable message dropped: %s", reason)
            case _:
                raise TypeError(f"{type(event).__name__} is not an event of the session")
        return False

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

        With nothing sent for a third of ``peer_timeout``, ask the session for a
        PING (the peer answers PONG); when nothing at all has been heard for
        ``peer_timeout``, the peer is gone even though its connection never closed
        (a frozen process, a cable pulled, a partition).  One sweep per node, not a
        task and a timer per connection: that is most of what an idle peer costs."""
        if self.closed:
            return
        if now - self.last_heard >= self._peer_timeout:
            self.end_reason = f"silent: nothing heard for {now - self.last_heard:.1f} s"
            log.warning("peer %r is silent: nothing heard for %.1f s", self, now - self.last_heard)
            self.close()
        elif now - self.last_sent >= self._peer_timeout / 3:
            with contextlib.suppress(SendRefused):  # we said goodbye: it is closing
                self._write(self._session.ping())

    def say_bye(self) -> int:
        """Tell the peer we are leaving (the last message: nothing is sent after it)."""
        return self.send(Bye())

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
        for waiter in self._session.abandon():
            waiter.expire()  # its value is still the failure value
        if self._drained is not None:
            self._drained.set()
        if self._scope is not None:
            self._scope.cancel()

    def log_once(self, key: str, text: str, *args: object) -> None:
        if key not in self._logged:
            self._logged.add(key)
            log.warning("%r: " + text, self, *args)
