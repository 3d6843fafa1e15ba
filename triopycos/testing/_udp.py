"""Virtual UDP: unicast, subnet broadcast, IPv4 and IPv6 multicast.

Who receives a datagram sent to ``(addr, port)``:

* unicast to a host's address: on that host (any subnet), the socket bound to
  ``port`` on that address or on the family's wildcard that was bound last (Linux's
  rule for sockets sharing a port with ``SO_REUSEADDR``);
* ``255.255.255.255`` or the sender's subnet broadcast address: on every host of the
  sender's subnet, the sender's own included, every IPv4 socket bound to ``port`` on
  the wildcard or on that broadcast address;
* a multicast group (``224.0.0.0/4``, ``ff00::/8``): on every host of the sender's
  subnet, every socket of that family bound to ``port`` (wildcard or the group
  address) that joined the group; ``ff02::1`` (all nodes) needs no join.

Each copy crossing a link is dropped with the link's ``loss`` probability, delivered
twice with its ``duplication`` probability, delayed by the link's bandwidth (shared
with the streams on it), latency and jitter, and dropped if the link is cut when it
arrives: datagrams never wait for a partition to heal.  A full receive queue drops
too.  Every such decision draws from the network's seeded RNG, in the order the
datagrams were sent.
"""

from __future__ import annotations

import errno
import functools
import ipaddress
import socket
from collections import deque
from types import TracebackType
from typing import TYPE_CHECKING

import trio
from trio.lowlevel import ParkingLot, cancel_shielded_checkpoint, checkpoint_if_cancelled

from ._common import WILDCARD_V4, WILDCARD_V6, family_of, is_wildcard, label, parse_ip

if TYPE_CHECKING:
    from ._hosts import VirtualHost
    from ._network import VirtualNetwork
    from ._transport import VirtualTransport

__all__ = ["VirtualUDPSocket"]

MAX_DATAGRAM = 65507
_ALL_NODES_V6 = "ff02::1"
_LIMITED_BROADCAST = "255.255.255.255"


class VirtualUDPSocket:
    """A UDP socket on a virtual host; open one with ``transport.open_udp(host, port)``.

    ``host`` is one of the host's addresses, a wildcard (``""`` or ``"0.0.0.0"``:
    IPv4, ``"::"``: IPv6), or a multicast group / the broadcast address (then only
    datagrams sent there arrive).  Port 0 picks a free port.  Any number of sockets may
    share a port (``SO_REUSEADDR``): all of them get broadcasts and multicasts.
    Broadcasting needs no ``SO_BROADCAST``.
    """

    def __init__(
        self,
        transport: VirtualTransport,
        addr: str,
        port: int,
        family: int,
        queue_size: int,
    ) -> None:
        self.transport = transport
        self.host = transport.host
        self.addr = addr
        self.port = port
        self.family = family
        self.closed = False
        self.groups: set[str] = set()
        self._queue: deque[tuple[bytes, tuple[str, int]]] = deque()
        self._queue_size = queue_size
        self._lot = ParkingLot()

    @classmethod
    def bind(cls, transport: VirtualTransport, host: str, port: int) -> VirtualUDPSocket:
        me = transport.host
        if host == "":
            host = WILDCARD_V4
        ip = parse_ip(host)
        if not (
            is_wildcard(host)
            or host in me.addresses
            or (ip is not None and ip.is_multicast)
            or host in (_LIMITED_BROADCAST, me.subnet.broadcast)
        ):
            raise OSError(errno.EADDRNOTAVAIL, f"cannot assign requested address {host!r}")
        addr = str(ip) if ip is not None else host
        if not 0 <= port <= 65535:
            raise OverflowError(f"port must be 0-65535, not {port}")
        if port == 0:
            port = me.ephemeral_udp_port()
        sock = cls(transport, addr, port, family_of(addr), transport.net.udp_queue)
        me.udp_sockets.append(sock)
        transport.net.record("udp-bind", label(addr, port), "", 0)
        return sock

    def __repr__(self) -> str:
        return f"<VirtualUDPSocket {label(self.addr, self.port)}{' closed' if self.closed else ''}>"

    def getsockname(self) -> tuple[str, int]:
        return self.addr, self.port

    def join_group(self, group: str, interface: str | None = None) -> None:
        """Join a multicast group (``IP_ADD_MEMBERSHIP`` / ``IPV6_JOIN_GROUP``); a
        virtual host has one interface, so ``interface`` changes nothing."""
        ip = parse_ip(group)
        if ip is None or not ip.is_multicast or family_of(str(ip)) != self.family:
            raise OSError(errno.EINVAL, f"not a multicast group of this family: {group!r}")
        self.groups.add(str(ip))

    def enable_broadcast(self) -> None:
        """Nothing to do: virtual sockets may always broadcast (``SO_BROADCAST``)."""

    def leave_group(self, group: str) -> None:
        ip = parse_ip(group)
        self.groups.discard(str(ip) if ip is not None else group)

    async def sendto(self, data: bytes | bytearray | memoryview, address: tuple[str, int]) -> int:
        """Send one datagram to ``address``; returns its size.  Nothing tells the
        sender whether it arrived."""
        await checkpoint_if_cancelled()
        if self.closed:
            raise OSError(errno.EBADF, "socket is closed")
        payload = bytes(data)
        if len(payload) > MAX_DATAGRAM:
            raise OSError(errno.EMSGSIZE, "message too long")
        host, port = address
        ip = parse_ip(host)
        if ip is None:
            target = self.transport.net.resolve(host)[1]  # a host name on the network
            ip = ipaddress.ip_address(target)
        if family_of(str(ip)) != self.family:
            raise OSError(errno.EAFNOSUPPORT, f"cannot send to {host!r} from {self!r}")
        dst = str(ip)
        if _kind(dst, self.host) == "unicast":
            try:
                dst = self.transport.net.route(self.host, dst)[1]
            except OSError:
                # Nothing tells a UDP sender that nobody is there.
                await cancel_shielded_checkpoint()
                return len(payload)
        _route(self, payload, dst, int(port))
        await cancel_shielded_checkpoint()
        return len(payload)

    async def recvfrom(self, bufsize: int = 65536) -> tuple[bytes, tuple[str, int]]:
        """The next datagram and its sender; a datagram longer than ``bufsize`` is
        truncated, as with a real socket."""
        await checkpoint_if_cancelled()
        waited = False
        while not self._queue:
            if self.closed:
                raise trio.ClosedResourceError("socket is closed")
            await self._lot.park()
            waited = True
        if not waited:
            await cancel_shielded_checkpoint()
        return self.recvfrom_nowait(bufsize)

    def recvfrom_nowait(self, bufsize: int = 65536) -> tuple[bytes, tuple[str, int]]:
        """Like ``recvfrom``, but raise ``trio.WouldBlock`` if nothing is waiting."""
        if self.closed:
            raise trio.ClosedResourceError("socket is closed")
        if not self._queue:
            raise trio.WouldBlock
        data, sender = self._queue.popleft()
        return data[:bufsize], sender

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self in self.host.udp_sockets:
            self.host.udp_sockets.remove(self)
        self.transport._forget(self)
        self._queue.clear()
        self._lot.unpark_all()

    def __enter__(self) -> VirtualUDPSocket:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _enqueue(self, data: bytes, sender: tuple[str, int]) -> bool:
        if len(self._queue) >= self._queue_size:
            return False
        self._queue.append((data, sender))
        self._lot.unpark_all()
        return True


def _kind(dst: str, sender: VirtualHost) -> str:
    ip = ipaddress.ip_address(dst)
    if ip.is_multicast:
        return "multicast"
    if dst in (_LIMITED_BROADCAST, sender.subnet.broadcast):
        return "broadcast"
    return "unicast"


def _receivers(host: VirtualHost, kind: str, dst: str, port: int) -> list[VirtualUDPSocket]:
    family = family_of(dst)
    wildcard = WILDCARD_V6 if family == socket.AF_INET6 else WILDCARD_V4
    bound = [s for s in host.udp_sockets if s.port == port and s.family == family]
    if kind == "unicast":
        matching = [s for s in bound if s.addr in (dst, wildcard)]
        return matching[-1:]
    if kind == "broadcast":
        return [s for s in bound if s.addr in (dst, wildcard)]
    return [
        s for s in bound if s.addr in (dst, wildcard) and (dst in s.groups or dst == _ALL_NODES_V6)
    ]


def _route(sock: VirtualUDPSocket, data: bytes, dst: str, port: int) -> None:
    net = sock.transport.net
    src_host = sock.host
    src_addr = src_host.address(sock.family) if is_wildcard(sock.addr) else sock.addr
    sender = (src_addr, sock.port)
    kind = _kind(dst, src_host)
    if kind == "unicast":
        found = net.find_host(dst)
        hosts = [found] if found is not None else []
    else:
        # Only hosts with a socket on the port take part, so the log (and the RNG
        # draws) do not depend on idle hosts.
        hosts = [h for h in src_host.subnet.hosts if any(s.port == port for s in h.udp_sockets)]
    now = trio.current_time()
    for host in hosts:
        dst_label = label(dst if kind == "unicast" else host.address(sock.family), port)
        link = net.link_config(src_host, host)
        if link.loss and net.rng.random() < link.loss:
            net.record("lost", label(*sender), dst_label, len(data))
            continue
        copies = 1
        if link.duplication and net.rng.random() < link.duplication:
            copies = 2
            net.record("duplicated", label(*sender), dst_label, len(data))
        for _ in range(copies):
            delay = net.transmit(src_host, host, len(data)) - now + link.latency
            if link.jitter:
                delay += net.rng.uniform(0, link.jitter)
            deliver = functools.partial(
                _deliver, net, src_host, host, kind, dst, port, data, sender, dst_label
            )
            if delay:
                net.call_at(now + delay, deliver)
            else:
                deliver()


def _deliver(
    net: VirtualNetwork,
    src_host: VirtualHost,
    host: VirtualHost,
    kind: str,
    dst: str,
    port: int,
    data: bytes,
    sender: tuple[str, int],
    dst_label: str,
) -> None:
    if not net.link_open(src_host, host):
        net.record("blocked", label(*sender), dst_label, len(data))
        return
    for sock in _receivers(host, kind, dst, port):
        if sock._enqueue(data, sender):
            net.record("datagram", label(*sender), dst_label, len(data))
        else:
            net.record("overflow", label(*sender), dst_label, len(data))
