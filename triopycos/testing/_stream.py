"""Virtual TCP streams.

A connection is two ``_Pipe`` objects, one per direction, and two ``VirtualStream``
endpoints.  Rules of a pipe:

* Bytes, then optionally one FIN, travel in order.  Each segment gets an arrival time
  when it is sent (transmission at the link's ``bandwidth``, which everything crossing
  that link shares, then ``latency`` + jitter, never before the previous segment) and
  is handed to the receiver by a network timer at that time, or at once when the link
  is instant.  A segment due while the link is cut (partition, freeze) waits,
  silently, until the link is back: a dead link stalls, it does not fail.
* Backpressure: bytes in flight plus bytes received but unread are bounded by the
  pipe's capacity; ``send_all`` waits for room, like a full socket buffer.
* A reset (``VirtualStream.reset``, a crash) travels too, at the link's latency but
  ahead of queued data, which it discards: the receiver reads what had already
  arrived, then gets ``BrokenResourceError``.
* When the receiving end closes, the sender learns it ("broken") one latency later
  and its ``send_all`` raises ``BrokenResourceError`` from then on, as after an RST.

Everything but waiting is synchronous, so delivery order depends only on the timer
order (time, then sequence number), never on trio's scheduler.
"""

from __future__ import annotations

from collections import deque
from types import TracebackType
from typing import TYPE_CHECKING

import trio
from trio.lowlevel import ParkingLot, cancel_shielded_checkpoint, checkpoint_if_cancelled

from ..transport._base import receive_size
from ._common import label

if TYPE_CHECKING:
    from ._hosts import VirtualHost
    from ._network import VirtualNetwork
    from ._transport import VirtualTransport

__all__ = ["VirtualStream"]

_SEGMENT = 65536  # most bytes handed over in one delivery (one "data" event)
_DEFAULT_RECEIVE = 65536


class _Conflict:
    """Raise ``BusyResourceError`` when two tasks use one side of a stream at once."""

    __slots__ = ("_held", "_message")

    def __init__(self, message: str) -> None:
        self._message = message
        self._held = False

    def __enter__(self) -> None:
        if self._held:
            raise trio.BusyResourceError(self._message)
        self._held = True

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._held = False


class _Pipe:
    """One direction of a connection (see the module docstring for its rules)."""

    def __init__(
        self,
        net: VirtualNetwork,
        src: VirtualHost,
        dst: VirtualHost,
        src_label: str,
        dst_label: str,
        capacity: int,
    ) -> None:
        self.net = net
        self.src = src
        self.dst = dst
        self.src_label = src_label
        self.dst_label = dst_label
        self.capacity = capacity
        self.queue: deque[tuple[float, bytes | None]] = deque()  # None is the FIN
        self.queued = 0
        self.inbox = bytearray()
        self.eof = False  # the FIN arrived
        self.reset = False  # an RST arrived
        self.broken = False  # the sender knows the receiver is gone
        self.fin_sent = False  # the sender closed its direction (FIN or RST)
        self.receiver_closed = False
        self.rst_at: float | None = None
        self.broken_at: float | None = None
        self._last_arrival = -float("inf")
        self.send_lot = ParkingLot()
        self.recv_lot = ParkingLot()

    @property
    def room(self) -> int:
        return self.capacity - self.queued - len(self.inbox)

    # -- the sending end ----------------------------------------------------------

    def push(self, data: bytes | None) -> None:
        """Send a segment (``None``: the FIN)."""
        net = self.net
        link = net.link_config(self.src, self.dst)
        if not self.queue and link.instant and net.link_open(self.src, self.dst):
            self._arrive(data)
            return
        size = len(data) if data is not None else 0
        at = net.transmit(self.src, self.dst, size) + link.latency
        if link.jitter:
            at += net.rng.uniform(0, link.jitter)
        at = max(at, self._last_arrival)  # a stream never reorders
        self._last_arrival = at
        self.queue.append((at, data))
        self.queued += size
        net.call_at(at, self.pump)

    def abort(self) -> None:
        """Reset from the sending end: queued bytes are dropped, an RST travels."""
        self.fin_sent = True
        if self.queue:
            self.queue.clear()
            self.queued = 0
            self.send_lot.unpark_all()
        if not self.reset and self.rst_at is None:
            self.rst_at = self._control_time(self.src, self.dst)
            self._schedule(self.rst_at)

    # -- the receiving end --------------------------------------------------------

    def take(self, max_bytes: int) -> bytes:
        data = bytes(self.inbox[:max_bytes])
        del self.inbox[:max_bytes]
        self.send_lot.unpark_all()  # room for the sender
        return data

    def close_receiver(self) -> None:
        """The receiving end is closed: drop what it has not read, tell the sender."""
        self.receiver_closed = True
        if self.inbox:
            self.inbox.clear()
            self.send_lot.unpark_all()
        # A sender that has closed its side will not send again: nothing to tell it.
        if not self.broken and self.broken_at is None and not self.fin_sent:
            self.broken_at = self._control_time(self.dst, self.src)
            self._schedule(self.broken_at)

    # -- delivery -----------------------------------------------------------------

    def _control_time(self, origin: VirtualHost, target: VirtualHost) -> float:
        """When a control signal sent now from ``origin`` reaches ``target``."""
        return trio.current_time() + self.net.link_config(origin, target).latency

    def _schedule(self, at: float) -> None:
        if at <= trio.current_time():
            self.pump()
        else:
            self.net.call_at(at, self.pump)

    def pump(self) -> None:
        """Hand over everything that is due, unless the link is cut (then wait for
        the network to call again when a fault changes)."""
        if not (self.queue or self.rst_at is not None or self.broken_at is not None):
            return
        net = self.net
        if not net.link_open(self.src, self.dst):
            net.stall(self)
            return
        now = trio.current_time()
        if self.broken_at is not None and self.broken_at <= now:
            self.broken_at = None
            self.broken = True
            net.record("broken", self.dst_label, self.src_label, 0)
            self.send_lot.unpark_all()
        if self.rst_at is not None and self.rst_at <= now:
            self.rst_at = None
            self.reset = True
            self.queue.clear()
            self.queued = 0
            net.record("rst", self.src_label, self.dst_label, 0)
            self.recv_lot.unpark_all()
            self.send_lot.unpark_all()
        queue = self.queue
        while queue and queue[0][0] <= now:
            _, data = queue.popleft()
            if data is not None:
                self.queued -= len(data)
            self._arrive(data)

    def _arrive(self, data: bytes | None) -> None:
        if data is None:
            if not self.eof:
                self.eof = True
                self.net.record("fin", self.src_label, self.dst_label, 0)
        elif self.receiver_closed or self.reset:
            self.send_lot.unpark_all()  # discarded: the sender has room again
            return
        else:
            self.inbox += data
            self.net.record("data", self.src_label, self.dst_label, len(data))
        self.recv_lot.unpark_all()


class VirtualStream(trio.abc.HalfCloseableStream):
    """One end of a virtual TCP connection (a ``trio.abc.HalfCloseableStream``).

    ``local_address`` and ``remote_address`` are ``(addr, port)`` pairs, like
    ``getsockname()``/``getpeername()``.  ``aclose`` is a graceful close (the peer
    reads the rest, then ``b""``); ``reset`` is an abortive one (the peer's next
    ``receive_some`` after the bytes already received raises
    ``trio.BrokenResourceError``).
    """

    def __init__(
        self,
        owner: VirtualTransport | None,
        out: _Pipe,
        inbound: _Pipe,
        local_address: tuple[str, int],
        remote_address: tuple[str, int],
    ) -> None:
        self._owner = owner
        self._out = out
        self._in = inbound
        self.local_address = local_address
        self.remote_address = remote_address
        self._closed = False
        self._send_guard = _Conflict("another task is already sending on this stream")
        self._recv_guard = _Conflict("another task is already receiving on this stream")

    def __repr__(self) -> str:
        return (
            f"<VirtualStream {label(*self.local_address)} -> {label(*self.remote_address)}"
            f"{' closed' if self._closed else ''}>"
        )

    @property
    def transport(self) -> VirtualTransport | None:
        """The transport (the "process") this end belongs to."""
        return self._owner

    def _check_can_send(self) -> None:
        if self._closed:
            raise trio.ClosedResourceError("this stream was closed")
        if self._out.fin_sent:
            raise trio.ClosedResourceError("this stream's sending side was closed (send_eof)")
        if self._out.broken:
            raise trio.BrokenResourceError("connection reset by peer")

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        with self._send_guard:
            await checkpoint_if_cancelled()
            view = memoryview(data).cast("B")
            out = self._out
            pos = 0
            waited = False
            while True:
                self._check_can_send()
                if pos >= len(view):
                    break
                room = out.room
                if room <= 0:
                    await out.send_lot.park()
                    waited = True
                    continue
                size = min(room, len(view) - pos, _SEGMENT)
                out.push(bytes(view[pos : pos + size]))
                pos += size
            if not waited:
                await cancel_shielded_checkpoint()

    def send_nowait(self, data: bytes | bytearray | memoryview) -> int:
        """Send as much of ``data`` as the pipe has room for now, without waiting:
        the number of bytes taken (the fast path of ``triopycos.transport``'s
        ``nowait_sender``)."""
        if self._send_guard._held:
            raise trio.BusyResourceError("another task is already sending on this stream")
        self._check_can_send()
        view = memoryview(data).cast("B")
        out = self._out
        pos = 0
        while pos < len(view):
            room = out.room
            if room <= 0:
                break
            size = min(room, len(view) - pos, _SEGMENT)
            out.push(bytes(view[pos : pos + size]))
            pos += size
        return pos

    async def wait_send_all_might_not_block(self) -> None:
        with self._send_guard:
            await checkpoint_if_cancelled()
            out = self._out
            waited = False
            while True:
                if self._closed:
                    raise trio.ClosedResourceError("this stream was closed")
                if out.room > 0 or out.broken or out.fin_sent:
                    break
                await out.send_lot.park()
                waited = True
            if not waited:
                await cancel_shielded_checkpoint()

    async def send_eof(self) -> None:
        with self._send_guard:
            if self._closed:
                raise trio.ClosedResourceError("this stream was closed")
            if not self._out.fin_sent:
                self._out.fin_sent = True
                if not self._out.broken:
                    self._out.push(None)
            await trio.lowlevel.checkpoint()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        with self._recv_guard:
            max_bytes = receive_size(max_bytes, _DEFAULT_RECEIVE)
            await checkpoint_if_cancelled()
            inbound = self._in
            waited = False
            while True:
                if self._closed:
                    raise trio.ClosedResourceError("this stream was closed")
                if inbound.inbox:
                    data = inbound.take(max_bytes)
                    break
                if inbound.reset:
                    raise trio.BrokenResourceError("connection reset by peer")
                if inbound.eof:
                    data = b""
                    break
                await inbound.recv_lot.park()
                waited = True
            if not waited:
                await cancel_shielded_checkpoint()
            return data

    def _close(self) -> None:
        self._closed = True
        self._out.send_lot.unpark_all()  # a blocked send_all raises ClosedResourceError
        self._in.recv_lot.unpark_all()
        if self._owner is not None:
            self._owner._forget(self)

    async def aclose(self) -> None:
        if not self._closed:
            out = self._out
            if not out.fin_sent:
                out.fin_sent = True
                if not out.broken:
                    out.push(None)
            self._in.close_receiver()
            self._close()
        await trio.lowlevel.checkpoint()

    def vanish(self) -> None:
        """Disappear with the machine: no FIN, no RST; what was already on its way
        still arrives, what arrives here is dropped unanswered.  The peer notices
        only by its own timeouts."""
        if not self._closed:
            self._out.fin_sent = True
            self._in.receiver_closed = True
            self._in.inbox.clear()
            self._close()

    def reset(self) -> None:
        """Close abortively, like ``SO_LINGER`` 0: an RST instead of a FIN."""
        if not self._closed:
            self._out.abort()
            self._in.close_receiver()
            self._close()


def connect_pipes(
    net: VirtualNetwork,
    client: VirtualHost,
    client_addr: tuple[str, int],
    server: VirtualHost,
    server_addr: tuple[str, int],
    capacity: int,
) -> tuple[_Pipe, _Pipe]:
    """The two directions of a new connection: (client → server, server → client)."""
    c, s = label(*client_addr), label(*server_addr)
    return (
        _Pipe(net, client, server, c, s, capacity),
        _Pipe(net, server, client, s, c, capacity),
    )
