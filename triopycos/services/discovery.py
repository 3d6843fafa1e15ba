"""The discovery service: finds the nodes on the local network by UDP.

What it does (the datagrams are described in ``protocol/discovery.py``):

* it listens on ``udp_port`` on the wildcard address of each family the node uses,
  sharing the port with the other nodes of the host, and joins the multicast group
  (IPv6 always; IPv4 with ``ipv4_udp_multicast``, otherwise IPv4 uses broadcast);
* it announces the node when it starts, again 1, 2, 4... seconds later and then every
  ``announce_interval`` seconds, so one lost datagram does not leave a node alone;
* a node that hears an announcement from a node it is not peered with connects to it
  over TCP (the handshake then decides whether they become peers);
* ``ping`` asks the nodes on one host (through its ``udp_port``) to connect to us;
  the node that receives it passes it on to its own network as a ``forward``.

Nothing a datagram says is trusted beyond "try to connect there": every connection is
authenticated by the handshake.  Datagrams that fail their checks are counted and
dropped; at most ``_MAX_PENDING`` connection attempts run at once, and up to
``_MAX_QUEUED`` more wait for a free slot (beyond that they are dropped, and the next
announcement brings them back).

When many nodes start together, each hears every other at once and a node lets only
``Limits.max_handshakes`` connections be in their handshake at a time (it closes
the rest).  A connection attempt that failed quickly is therefore tried again a few
times within about a second and a half, after delays spread by a hash of both node ids (so
two nodes refused together do not come back together, and a run on the virtual
network stays the same for the same seed), instead of waiting for the next
announcement, which may be 16 seconds away.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import math
import socket
from collections.abc import Iterable
from dataclasses import dataclass, field

import trio

from ..protocol.auth import derive_key
from ..protocol.discovery import (
    IPV4_MULTICAST_GROUP,
    IPV6_MULTICAST_GROUP,
    MAX_DATAGRAM,
    Announcement,
    BadDatagram,
    DatagramKind,
    decode,
    encode,
)
from ..transport import Transport
from ..transport.errors import DatagramFailed, MappedDatagramSocket, open_datagram_socket
from ..values import Location
from ._failures import failure_text
from .peers import PeerManager

__all__ = ["Discovery", "DiscoveryCounters", "DiscoveryStatistics"]

log = logging.getLogger("triopycos.discovery")

_BROADCAST = "255.255.255.255"
_MAX_PENDING = 64
#: Attempts waiting for one of the _MAX_PENDING slots (more are dropped).
_MAX_QUEUED = 1024
_MAX_CANDIDATES = 4  # locations tried per announced node (each up to connect_timeout)
#: Attempts after a failed one, and the first delay (doubled each time, times 0.5-1.5).
_RETRIES = 3
_RETRY_DELAY = 0.1
#: No retry starts later than this many seconds after the first attempt began.
_RETRY_WINDOW = 1.5
_FIRST_REPEAT = 1.0


@dataclass
class DiscoveryCounters:
    """The discovery service's counters, as it counts (``Discovery.stats``)."""

    datagrams_received: int = 0
    datagrams_dropped: int = 0
    datagrams_sent: int = 0
    # Why datagrams were dropped, by reason (for the log and for tests).
    dropped: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class DiscoveryStatistics:
    """A snapshot of the discovery service's counters (``Discovery.statistics()``)."""

    datagrams_received: int = 0
    datagrams_dropped: int = 0
    datagrams_sent: int = 0
    dropped: dict[str, int] = field(default_factory=dict)


def _family(address: str) -> int:
    return socket.AF_INET6 if ":" in address else socket.AF_INET


class Discovery:
    """One node's discovery service; run ``serve`` in the node's service nursery."""

    def __init__(
        self,
        *,
        transport: Transport,
        peers: PeerManager,
        secret: str,
        udp_port: int,
        addresses: list[str],
        advertised: list[Location],
        ipv4_multicast: bool,
        listen: bool,
        announce_interval: float | None,
    ) -> None:
        self.transport = transport
        self.peers = peers
        # The MAC key, not the secret: anyone who hears a datagram could otherwise
        # test candidate secrets at HMAC speed (protocol/auth.py).
        self._key = derive_key(secret)
        self.udp_port = udp_port
        # The node's own (numeric) addresses, where it listens for TCP (a link-local
        # one with its scope, to bind to); and the same without scopes, to compare.
        self.addresses = list(dict.fromkeys(addresses))
        self._unscoped = {a.partition("%")[0] for a in self.addresses}
        self.advertised = advertised
        self.ipv4_multicast = ipv4_multicast
        self.listen = listen
        self.announce_interval = announce_interval
        self.stats = DiscoveryCounters()
        self._senders: dict[str, MappedDatagramSocket] = {}
        self._senders_lock = trio.Lock()
        self._pending: set[bytes] = set()
        self._queued: dict[bytes, list[Location]] = {}
        self._nursery: trio.Nursery | None = None
        self._warned: set[str] = set()
        # Built now: an announcement too big for one datagram fails the start.
        self._announcement = self._message("announce")

    def statistics(self) -> DiscoveryStatistics:
        stats = self.stats
        return DiscoveryStatistics(
            stats.datagrams_received,
            stats.datagrams_dropped,
            stats.datagrams_sent,
            dict(stats.dropped),
        )

    # -- running ------------------------------------------------------------------

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        receivers: list[MappedDatagramSocket] = []
        try:
            if self.listen:
                await self._open_senders()
                for family in dict.fromkeys(_family(a) for a in self.addresses):
                    try:
                        receivers.append(await self._open_receiver(family))
                    except DatagramFailed as exc:
                        # The port is held by a program that does not share it: the
                        # node runs, found only by explicit peering.
                        log.warning(
                            "cannot listen for discovery on udp port %d: %s", self.udp_port, exc
                        )
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                for sock in receivers:
                    nursery.start_soon(self._receive_loop, sock)
                if self.listen:
                    nursery.start_soon(self._announce_loop)
                task_status.started()
                await trio.sleep_forever()
        finally:
            self._nursery = None
            for sock in [*receivers, *self._senders.values()]:
                sock.close()
            self._senders.clear()

    async def _open_senders(self) -> None:
        """One socket per address, so datagrams leave from (and broadcasts go out of
        the interface of) each address the node serves."""
        async with self._senders_lock:
            if self._senders:
                return
            for address in self.addresses:
                sock = await open_datagram_socket(self.transport, address, 0)
                self._senders[address] = sock
                if self.listen:
                    sock.enable_broadcast()

    async def _open_receiver(self, family: int) -> MappedDatagramSocket:
        wildcard = "::" if family == socket.AF_INET6 else "0.0.0.0"
        sock = await open_datagram_socket(self.transport, wildcard, self.udp_port)
        group = self._group(family)
        if group is not None:
            for address in self.addresses:
                if _family(address) == family:
                    try:
                        sock.join_group(group, address)
                    except DatagramFailed as exc:
                        log.warning("cannot join %s on %s: %s", group, address, exc)
        return sock

    def _group(self, family: int) -> str | None:
        if family == socket.AF_INET6:
            return IPV6_MULTICAST_GROUP
        return IPV4_MULTICAST_GROUP if self.ipv4_multicast else None

    async def _announce_loop(self) -> None:
        delay = _FIRST_REPEAT
        while True:
            await self.announce()
            interval = self.announce_interval
            if not interval:
                return
            await trio.sleep(min(delay, interval))
            delay *= 2

    # -- sending ------------------------------------------------------------------

    def _message(self, kind: DatagramKind, *, to: str = "", relay: bool = False) -> bytes:
        message = Announcement(
            kind,
            self.peers.node_id,
            self.peers.name,
            tuple((loc.addr, loc.port) for loc in self.advertised),
            to,
            relay,
            self.ipv4_multicast,
        )
        return encode(message, self._key)

    async def announce(self) -> None:
        """Tell the local network(s) where this node is."""
        await self._to_network(self._announcement)

    async def _to_network(self, datagram: bytes) -> None:
        for address, sock in list(self._senders.items()):
            family = _family(address)
            destination = self._group(family) or _BROADCAST
            await self._send(sock, datagram, (destination, self.udp_port))

    async def _send(self, sock: MappedDatagramSocket, datagram: bytes, to: tuple[str, int]) -> bool:
        try:
            await sock.sendto(datagram, to)
        except DatagramFailed as exc:
            # Once per destination: a network without broadcast stays quiet after.
            key = f"{to[0]}:{to[1]}"
            if key not in self._warned:
                self._warned.add(key)
                log.warning("discovery datagram to %s not sent: %s", key, exc)
            return False
        self.stats.datagrams_sent += 1
        return True

    async def ping(self, host: str, udp_port: int, relay: bool) -> bool:
        """Ask every node on ``host`` (listening on ``udp_port``) to connect to us;
        with ``relay``, every node on that host's network.  False if the datagram
        could not be sent (no address of that family, unknown host)."""
        family = _family(host) if _is_ip(host) else None
        await self._open_senders()
        sock = next(
            (s for a, s in self._senders.items() if family is None or _family(a) == family),
            None,
        )
        if sock is None:
            await trio.lowlevel.checkpoint()
            return False
        datagram = self._message("ping", to=host, relay=relay)
        try:
            return await self._send(sock, datagram, (host, udp_port))
        except UnicodeError:  # a host name no resolver takes (one that does not
            return False  # resolve is a DatagramFailed, as any refused send)

    # -- receiving ----------------------------------------------------------------

    async def _receive_loop(self, sock: MappedDatagramSocket) -> None:
        while True:
            try:
                data, sender = await sock.recvfrom(MAX_DATAGRAM + 1)
            except trio.ClosedResourceError:
                return  # the node is going away (or its "process" crashed)
            except DatagramFailed as exc:
                # ICMP errors from earlier sends can surface here; the socket lives on.
                log.debug("discovery receive: %s", exc)
                await trio.lowlevel.checkpoint()
                continue
            await self.handle(data, sender)

    async def handle(self, data: bytes, sender: tuple[str, int]) -> None:
        """Act on one received datagram.  Whatever goes wrong with it drops it
        (counted as "broke the service"): never the service, never the node."""
        self.stats.datagrams_received += 1
        try:
            await self._handle(data, sender)
        except Exception as exc:
            if "broke the service" not in self._warned:
                self._warned.add("broke the service")  # once: datagrams can be replayed
                log.warning(
                    "dropped a discovery datagram from %s that broke the service: %s",
                    sender[0],
                    failure_text(exc),
                )
            self._drop("broke the service", sender)

    async def _handle(self, data: bytes, sender: tuple[str, int]) -> None:
        try:
            message = decode(data, self._key)
        except BadDatagram as bad:
            self._drop(bad.reason, sender)
            return
        if message.node_id == self.peers.node_id:
            return  # our own, looped back
        if (
            message.kind != "ping"
            and _family(sender[0]) == socket.AF_INET
            and message.multicast != self.ipv4_multicast
        ):
            # A wildcard socket hears broadcasts and multicasts alike; IPv4 nodes
            # using one do not peer with nodes using the other (as in pycos).
            self._drop("other discovery mode", sender)
            return
        if message.kind == "ping":
            self._connect_to(message, sender)
            # Only one of the nodes sharing the port on this host got the ping.
            forward = self._forward(message, sender)
            if forward is not None:
                await self._to_network(forward)
        elif message.kind == "forward":
            if message.relay or message.to in self._unscoped:
                self._connect_to(message, sender)
        else:
            self._connect_to(message, sender)

    def _forward(self, ping: Announcement, sender: tuple[str, int]) -> bytes | None:
        """The ping passed on to our network, or None.  ``to`` stays the address
        that was pinged, so the nodes listening there answer whichever node got it.
        A ping naming another address is not passed on: it was not sent to this
        host (a replay to the broadcast address, say), and forwarding it from
        every node would multiply it."""
        if _is_ip(ping.to):
            if ping.to.partition("%")[0] not in self._unscoped:
                return None
            to = ping.to
        else:  # pinged by host name: the node that got it stands for the host
            family = _family(sender[0])
            here = next((a for a in self.addresses if _family(a) == family), None)
            if here is None:
                return None
            to = here.partition("%")[0]
        forward = Announcement(
            "forward",
            ping.node_id,
            ping.name,
            ping.locations,
            to,
            ping.relay,
            self.ipv4_multicast,
        )
        return encode(forward, self._key)

    def _drop(self, reason: str, sender: tuple[str, int]) -> None:
        self.stats.datagrams_dropped += 1
        key = "discovery version" if reason.startswith("discovery version") else reason
        self.stats.dropped[key] = self.stats.dropped.get(key, 0) + 1
        log.debug("dropped a discovery datagram from %s: %s", sender, reason)

    def _connect_to(self, message: Announcement, sender: tuple[str, int]) -> None:
        node_id = message.node_id
        if (
            node_id in self.peers.by_id
            or node_id in self._pending
            or node_id in self._queued
            or self._nursery is None
        ):
            return
        families = {_family(a) for a in self.addresses}
        scope = sender[0].partition("%")[2]
        candidates = [
            Location(_scoped(host, scope), port)
            for host, port in message.locations
            if _is_ip(host) and _family(host) in families
        ][:_MAX_CANDIDATES]
        if not candidates:
            self._drop("no reachable location", ("", 0))
            return
        if len(self._pending) >= _MAX_PENDING:
            # Many nodes announced at once: the attempt waits for a free slot.
            if len(self._queued) >= _MAX_QUEUED:
                self._drop("too many connection attempts", ("", 0))
            else:
                self._queued[node_id] = candidates
            return
        self._pending.add(node_id)
        self._nursery.start_soon(self._connect, node_id, candidates)

    def _next_queued(self) -> None:
        """Start the oldest waiting attempt (one slot has just come free)."""
        while self._queued and self._nursery is not None:
            node_id = next(iter(self._queued))
            candidates = self._queued.pop(node_id)
            if node_id not in self.peers.by_id and node_id not in self._pending:
                self._pending.add(node_id)
                self._nursery.start_soon(self._connect, node_id, candidates)
                return

    async def _connect(self, node_id: bytes, candidates: Iterable[Location]) -> None:
        candidates = list(candidates)
        start = trio.current_time()
        stopping = False
        try:
            for attempt in range(_RETRIES + 1):
                if attempt:
                    # Only quick failures (a node busy with handshakes closes at
                    # once) are tried again: a node that does not answer keeps its
                    # slot for connect_timeout, not for every retry too.
                    if trio.current_time() - start > _RETRY_WINDOW:
                        return
                    await trio.sleep(self._retry_delay(node_id, attempt))
                for location in candidates:
                    if node_id in self.peers.by_id:
                        return
                    if await self.peers.connect(location, node_id) is not None:
                        return
        except trio.Cancelled:
            # The service is stopping: nothing queued may start now.
            stopping = True
            self._queued.clear()
            raise
        finally:
            self._pending.discard(node_id)
            if not stopping:
                self._next_queued()

    def _retry_delay(self, node_id: bytes, attempt: int) -> float:
        """Seconds before attempt ``attempt`` (1, 2, ...) to reach ``node_id``."""
        digest = hashlib.sha256(self.peers.node_id + node_id + bytes([attempt])).digest()
        spread = 0.5 + int.from_bytes(digest[:4], "big") / 2**32
        return float(_RETRY_DELAY * 2 ** (attempt - 1) * spread)


def _is_ip(text: str) -> bool:
    """A numeric IPv4 address, or IPv6 with at most a short alphanumeric scope."""
    addr, percent, scope = text.partition("%")
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        return False
    if percent:
        return ip.version == 6 and scope.isascii() and scope.isalnum() and len(scope) <= 15
    return True


def _scoped(host: str, scope: str) -> str:
    """A link-local IPv6 address advertised without its scope gets the scope of the
    interface the datagram came in on (it is only meaningful on that link)."""
    if scope and "%" not in host and ipaddress.ip_address(host).is_link_local:
        return f"{host}%{scope}"
    return host


def announce_interval_ok(value: float | None) -> float | None:
    """``announce_interval`` checked: None or 0 (no repeats) or a positive number."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        raise TypeError(f"announce_interval must be a number or None, not {value!r}")
    if value < 0:
        raise ValueError(f"announce_interval must be >= 0, not {value!r}")
    return float(value) or None
