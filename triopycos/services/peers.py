"""The peer supervisor: admission of the connections the listener accepts
(``services.listener``), outgoing connections, the handshake, the heartbeat sweep,
and the table of live peer connections (one per peer incarnation).

Rules:

* Nothing but the handshake runs on a new connection, under ``handshake_timeout``; an
  inbound one must also deliver its hello within ``hello_timeout``.  At most
  ``max_handshakes`` inbound connections (``max_handshakes_per_address`` from one
  address) are in their handshake at once: a newcomer beyond that closes one that
  waited longest without finishing (``services.admission``) and tells it so (BUSY),
  so a flood of half-open connections costs bounded memory and cannot keep real
  peers out.  A dial refused as BUSY is tried again, a few times within 0.2 s.
* Nothing a peer or stranger sent is formatted into a log line except through
  ``protocol.printable``; any error in a handshake fails that connection only.
* One connection per peer: when a second authenticated connection to the same peer
  incarnation appears (both sides connected at once), the one opened by the node with
  the smaller id is kept on both sides and the other is closed.
* A connection's end is its peer's Offline, unless a newer connection to the same
  incarnation already replaced it.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Awaitable, Callable
from contextlib import aclosing
from dataclasses import dataclass

import trio
import trio_util

from ..protocol.auth import derive_key
from ..protocol.codec import Codec
from ..protocol.handshake import Authenticated, Handshake, HandshakeFailed
from ..protocol.messages import IsReference
from ..protocol.printable import escape
from ..transport import Transport, remote_address
from ..transport.errors import STREAM_ERRORS, ConnectFailed, connect
from ..values import Location
from .admission import Admission, Slot
from .handshakes import LogQuota, describe, exchange, tell_busy
from .limits import Limits
from .peer import Dispatch, PeerConnection, PeerStatistics
from .timer import Timer

__all__ = ["Limits", "PeerManager", "PeerServiceStatistics", "PeerStatistics"]

log = logging.getLogger("triopycos.peers")

# A dial refused as busy (closed to make room for a newer connection) is tried again
# this many times, after these delays (seconds): a flood cycles through the node's
# slots in milliseconds, so a second try is almost always enough.
_BUSY_RETRIES = 3
_BUSY_DELAY = 0.025


@dataclass(frozen=True, slots=True)
class PeerServiceStatistics:
    """A snapshot of the peer supervisor's counters (``PeerManager.statistics()``)."""

    peers: int = 0
    handshakes_pending: int = 0
    connections_accepted: int = 0
    connections_opened: int = 0
    handshakes_failed: int = 0
    handshakes_refused_busy: int = 0
    duplicate_connections: int = 0
    messages_refused: int = 0
    protocol_errors: int = 0


class _Refused(enum.Enum):
    """Why a handshake did not authenticate, as far as trying again goes."""

    FAILED = "failed"
    BUSY = "busy"  # the node closed us to make room: worth another try


class PeerManager:
    """Owns every peer connection of one node."""

    def __init__(
        self,
        *,
        transport: Transport,
        node_id: bytes,
        name: str,
        secret: str,
        codec: Codec,
        limits: Limits,
        dispatch: Dispatch,
        is_reference: IsReference,
        on_online: Callable[[PeerConnection], None],
        on_offline: Callable[[PeerConnection], None],
        timer: Timer,
    ) -> None:
        self.transport = transport
        self.timer = timer
        self.node_id = node_id
        self.name = name
        # Once per node (and once per secret in the process: derive_key caches), so
        # no connection ever costs a scrypt.
        self._key = derive_key(secret)
        self.codec = codec
        self.limits = limits
        self._dispatch = dispatch
        self._is_reference = is_reference
        self._on_online = on_online
        self._on_offline = on_offline
        self.locations: list[Location] = []
        self.by_id: dict[bytes, PeerConnection] = {}
        self._connecting: dict[Location, trio.Event] = {}
        # Locations being reconnected to: their failed dials are reported by the
        # reconnect loop's own line (with the attempt number), not one line each.
        self._reconnecting: dict[Location, str] = {}
        self.admission = Admission(limits.max_handshakes, limits.max_handshakes_per_address)
        self._inbound_log = LogQuota()
        # Dials can be many too (references name nodes anywhere): their failures are
        # logged within a quota of their own.
        self._outbound_log = LogQuota(what="failed outbound connections")
        self._nursery: trio.Nursery | None = None
        self.changed = trio_util.RepeatedEvent()  # set whenever a peer comes online
        self._leaving = False
        # Handles an inbound connection whose hello says "file" (the file service).
        self.file_handler: Callable[[trio.abc.Stream, Authenticated], Awaitable[None]] | None = None
        self.stats = PeerStatistics()

    # -- queries ------------------------------------------------------------------

    def statistics(self) -> PeerServiceStatistics:
        stats = self.stats
        return PeerServiceStatistics(
            peers=len(self.by_id),
            handshakes_pending=self.admission.pending,
            connections_accepted=stats.connections_accepted,
            connections_opened=stats.connections_opened,
            handshakes_failed=stats.handshakes_failed,
            handshakes_refused_busy=stats.handshakes_refused_busy,
            duplicate_connections=stats.duplicate_connections,
            messages_refused=stats.messages_refused,
            protocol_errors=stats.protocol_errors,
        )

    def find(self, location: Location) -> PeerConnection | None:
        """The live connection to the node listening at ``location``, if any."""
        for conn in self.by_id.values():
            if location in conn.locations:
                return conn
        return None

    def find_name(self, name: str) -> PeerConnection | None:
        for conn in self.by_id.values():
            if conn.name == name:
                return conn
        return None

    # -- running ------------------------------------------------------------------

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run every peer connection (and the handshakes of new ones) until
        cancelled; ``accepted`` may be called once this has started."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            await self._heartbeats()

    async def _heartbeats(self) -> None:
        """Every third of ``peer_timeout``, each connection pings if it has been idle
        that long and ends if its peer has been silent for ``peer_timeout``
        (``PeerConnection.heartbeat``).  A silent peer is noticed at most one
        interval after ``peer_timeout``."""
        async with aclosing(trio_util.periodic(self.limits.peer_timeout / 3)) as ticks:
            async for _ in ticks:
                now = trio.current_time()
                for conn in list(self.by_id.values()):
                    conn.heartbeat(now)

    def accepted(self, stream: trio.abc.Stream) -> None:
        """A connection the listener accepted: admitted now (which may evict an
        older one still in its handshake), its handshake started."""
        self.stats.connections_accepted += 1
        evicted = self.admission.evicted
        slot = self.admission.admit(remote_address(stream)[0])
        self.stats.handshakes_refused_busy += self.admission.evicted - evicted
        assert self._nursery is not None
        self._nursery.start_soon(self._inbound, stream, slot)

    async def _inbound(self, stream: trio.abc.Stream, slot: Slot) -> None:
        who = describe(stream)
        result: Authenticated | _Refused = _Refused.FAILED
        try:
            with slot.scope:
                slot.scope.deadline = trio.current_time() + self.limits.hello_timeout
                result = await self._handshake(stream, initiator=False, slot=slot)
        finally:
            self.admission.release(slot)
        if slot.scope.cancelled_caught:
            # Evicted, or silent past hello_timeout: _handshake closed the stream.
            self.stats.handshakes_failed += 1
            if not slot.evicted:
                self._warn_inbound(
                    "handshake with %s failed: no hello within %s s",
                    who,
                    self.limits.hello_timeout,
                )
            return
        if not isinstance(result, Authenticated):
            return
        if result.peer.purpose == "file":
            if self.file_handler is None:
                await trio.aclose_forcefully(stream)
            else:
                await self.file_handler(stream, result)
        else:
            await self._run(self._adopt(stream, result, initiated_by_us=False))

    async def connect(
        self, location: Location, node_id: bytes | None = None
    ) -> PeerConnection | None:
        """Connect and authenticate to the node at ``location`` (or return the live
        connection to it). None, with a log line, if that fails.  ``node_id``: the
        node said to be there now; a connection to another node at that location is
        not reused (it is a past incarnation, not yet noticed gone)."""
        conn = self.find(location)
        if conn is not None and (node_id is None or conn.node_id == node_id):
            await trio.lowlevel.checkpoint()
            return conn
        if location in self.locations:  # ourselves
            await trio.lowlevel.checkpoint()
            return None
        attempt = self._connecting.get(location)
        if attempt is not None:
            await attempt.wait()
            return self.find(location)
        done = self._connecting[location] = trio.Event()
        try:
            return await self._dial(location, node_id)
        finally:
            del self._connecting[location]
            done.set()

    async def _dial(self, location: Location, expect: bytes | None) -> PeerConnection | None:
        """A new authenticated connection to ``location`` (to node ``expect`` only,
        if given), adopted and running; None if that fails."""
        opened = await self._authenticate(location, expect=expect)
        if opened is None:
            return None
        stream, result = opened
        self._replace_at(location, result.peer.node_id)
        conn = self._adopt(stream, result, initiated_by_us=True)
        assert self._nursery is not None
        self._nursery.start_soon(self._run, conn)
        return conn if not conn.closed else self.by_id.get(result.peer.node_id)

    async def _open(self, location: Location) -> trio.abc.Stream | None:
        try:
            return await connect(
                self.transport, location.addr, location.port, self.limits.connect_timeout
            )
        except ConnectFailed as exc:
            if location in self._reconnecting:
                self._reconnecting[location] = f"cannot connect: {exc.reason}"
                log.debug("cannot connect to %s: %s", location, exc.detail)
            else:
                self._warn_outbound("cannot connect to %s: %s", location, exc.detail)
            return None

    def _replace_at(self, location: Location, node_id: bytes) -> None:
        """We reached ``node_id`` at ``location``: a node we thought was there is gone
        (restarted, or its host crashed), even if its connection has not noticed."""
        for old in [c for c in self.by_id.values() if c.node_id != node_id]:
            if location in old.locations:
                log.info("%s has left %s (another node is there now)", escape(old.name), location)
                del self.by_id[old.node_id]
                old.close(deliberately=True)
                self._on_offline(old)

    async def _verify(self, location: Location, node_id: bytes) -> None:
        """A node connected to us claiming ``location``, where we know another:
        dial it there (expecting it) and believe the claim only if that works."""
        if self._leaving:
            return
        await self._dial(location, node_id)

    async def open_file_connection(
        self, location: Location
    ) -> tuple[trio.abc.Stream, Authenticated] | None:
        """A fresh authenticated connection to ``location`` for one file transfer
        (never a peer session: it carries no messages).  None if that fails."""
        return await self._authenticate(location, purpose="file")

    async def _authenticate(
        self, location: Location, *, purpose: str = "peer", expect: bytes | None = None
    ) -> tuple[trio.abc.Stream, Authenticated] | None:
        """Connect to ``location`` and run the handshake, again if the node was busy
        (it closed us to make room for another connection); None if that fails."""
        for attempt in range(_BUSY_RETRIES + 1):
            if attempt:
                await trio.sleep(_BUSY_DELAY * 2 ** (attempt - 1))
            stream = await self._open(location)
            if stream is None:
                return None
            if purpose == "peer":
                self.stats.connections_opened += 1
            result = await self._handshake(stream, initiator=True, purpose=purpose, expect=expect)
            if isinstance(result, Authenticated):
                return stream, result
            if result is not _Refused.BUSY:
                return None
        log.warning(
            "handshake with %s failed: %d attempts, each closed to make room (busy)",
            location,
            _BUSY_RETRIES + 1,
        )
        return None

    async def _handshake(
        self,
        stream: trio.abc.Stream,
        *,
        initiator: bool,
        purpose: str = "peer",
        expect: bytes | None = None,
        slot: Slot | None = None,
    ) -> Authenticated | _Refused:
        """Run the handshake on ``stream``: its result, or why not (the stream
        closed, the failure counted and logged) if it failed in any way.  ``slot``:
        the admission slot of an inbound connection (its hello deadline is lifted
        when the hello arrives; if it is evicted, the peer is told it was busy)."""
        machine = Handshake(
            purpose=purpose,
            initiator=initiator,
            key=self._key,
            node_id=self.node_id,
            name=self.name,
            locations=[(loc.addr, loc.port) for loc in self.locations],
            expect=expect,
        )
        warn = self._warn_outbound if initiator else self._warn_inbound
        outcome = _Refused.FAILED
        try:
            with trio.fail_after(self.limits.handshake_timeout):
                return await exchange(stream, machine, slot)
        except HandshakeFailed as exc:
            if exc.busy:
                outcome = _Refused.BUSY
                log.info("handshake with %s: the node was busy; trying again", describe(stream))
            else:
                warn("handshake with %s failed: %s", describe(stream), exc)
        except trio.TooSlowError:
            warn("handshake with %s timed out", describe(stream))
        except STREAM_ERRORS as exc:
            # Our own transport's words (TLS alerts included), never the peer's bytes.
            warn("handshake with %s broke: %s", describe(stream), escape(str(exc), 200))
        except Exception as exc:
            # A bug must cost this connection only, never the node's nursery.
            log.error(
                "handshake with %s failed: internal error (%s)",
                describe(stream),
                type(exc).__name__,
                exc_info=True,
            )
        except BaseException:
            if slot is not None and slot.evicted:
                tell_busy(stream)
            await trio.aclose_forcefully(stream)  # cancelled: do not leave it open
            raise
        self.stats.handshakes_failed += 1
        await trio.aclose_forcefully(stream)
        return outcome

    def _warn_outbound(self, text: str, *args: object) -> None:
        """A warning about a connection this node opens, within its quota."""
        if self._outbound_log.allow(trio.current_time()):
            log.warning(text, *args)

    def _warn_inbound(self, text: str, *args: object) -> None:
        """A warning about an inbound connection, within the log quota (a flood of
        strangers must not turn into a flood of log lines)."""
        if self._inbound_log.allow(trio.current_time()):
            log.warning(text, *args)

    def _adopt(
        self, stream: trio.abc.Stream, result: Authenticated, *, initiated_by_us: bool
    ) -> PeerConnection:
        conn = PeerConnection(
            stream=stream,
            hello=result.peer,
            leftover=result.leftover,
            codec=self.codec,
            initiated_by_us=initiated_by_us,
            own_id=self.node_id,
            dispatch=self._dispatch,
            is_reference=self._is_reference,
            max_frame_size=self.limits.max_frame_size,
            max_outbox_bytes=self.limits.max_outbox_bytes,
            peer_timeout=self.limits.peer_timeout,
            stats=self.stats,
            timer=self.timer,
        )
        current = self.by_id.get(conn.node_id)
        if current is not None and (current.closed or current.initiator_id == conn.initiator_id):
            # The peer is back while we still hold its old connection: either ours is
            # closed but not yet torn down, or the side that opened it has opened a
            # new one, so it gave the old one up.  Either way that was a loss, and it
            # is reported (monitors, Offline) before the new connection's Online.
            del self.by_id[conn.node_id]
            current.close(deliberately=True)
            self._on_offline(current)
            current = None
        if current is not None:
            # Both sides connected at once: keep the one opened by the smaller id,
            # quietly (nothing was lost).
            self.stats.duplicate_connections += 1
            if current.initiator_id < conn.initiator_id:
                conn.close(deliberately=True)
                return conn
            self.by_id[conn.node_id] = conn
            current.close(deliberately=True)
            return conn
        if not initiated_by_us and any(
            conn.location in c.locations for c in self.by_id.values() if c.node_id != conn.node_id
        ):
            # It claims an address where we know another node: a restart there, or a
            # misconfiguration (two nodes advertising one gateway).  Only a dial
            # that reaches it there tells which (see _replace_at).
            assert self._nursery is not None
            self._nursery.start_soon(self._verify, conn.location, conn.node_id)
        self.by_id[conn.node_id] = conn
        self._on_online(conn)
        self.changed.set()
        return conn

    async def _run(self, conn: PeerConnection) -> None:
        try:
            await conn.run()
        finally:
            if self.by_id.get(conn.node_id) is conn:
                del self.by_id[conn.node_id]
                self._on_offline(conn)
                # The side that opened a connection lost to a fault (not a goodbye, not
                # our own close) tries to get it back: a healed partition or a thawed
                # peer comes back Online, a restarted one as a new incarnation.
                if (
                    conn.initiator_id == self.node_id
                    and not conn.leaving
                    and not conn.closed_here
                    and not self._leaving
                    and self._nursery is not None
                ):
                    self._nursery.start_soon(self._reconnect, conn)

    async def _reconnect(self, lost: PeerConnection) -> None:
        """Try to get a connection lost to a fault back: ``reconnect_attempts``
        tries, ``reconnect_delay`` apart at first and twice as long each time (at
        most 30 s), each logged with why the one before failed."""
        location = lost.location
        # The name and addresses are the peer's own words: escaped, bounded.
        where = f"{escape(lost.name)} at {escape(str(location))}"
        reason = lost.end_reason
        attempts = self.limits.reconnect_attempts
        delay = self.limits.reconnect_delay
        for attempt in range(1, attempts + 1):
            await trio.sleep(delay)
            if self._leaving or self.find(location) is not None:
                return
            log.warning(
                "reconnecting to %s (attempt %d of %d): %s", where, attempt, attempts, reason
            )
            self._reconnecting[location] = "the handshake failed"
            try:
                conn = await self.connect(location)
            finally:
                reason = self._reconnecting.pop(location, reason)
            if conn is not None:
                # As loud as the attempts: whoever saw those must see them end.
                log.warning("reconnected to %s (attempt %d of %d)", where, attempt, attempts)
                return
            delay = min(delay * 2, 30.0)
        log.warning("gave up reconnecting to %s after %d attempts: %s", where, attempts, reason)

    async def goodbye(self) -> None:
        """Tell every peer we are leaving, so they see Offline at once."""
        self._leaving = True
        conns = list(self.by_id.values())
        with trio.move_on_after(self.limits.goodbye_timeout):
            async with trio.open_nursery() as nursery:
                for conn in conns:
                    if conn.say_bye() == 0:
                        nursery.start_soon(conn.flush, self.limits.goodbye_timeout)
        for conn in conns:
            conn.close(deliberately=True)
