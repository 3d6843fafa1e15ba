"""Virtual subnets and hosts: fake addresses, port tables and the sockets bound there.

Nothing here touches the operating system: an address is a string the virtual
network routes by, a port is a key in a host's table.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
from typing import TYPE_CHECKING

from ._common import WILDCARD_V4, WILDCARD_V6, family_of, is_wildcard

if TYPE_CHECKING:
    from ._network import VirtualNetwork
    from ._transport import VirtualListener, VirtualTransport
    from ._udp import VirtualUDPSocket

__all__ = ["Subnet", "VirtualHost"]

_EPHEMERAL_FIRST = 49152
_EPHEMERAL_LAST = 65535


class Subnet:
    """A broadcast domain with one IPv4 and one IPv6 prefix.

    Broadcast and multicast datagrams reach only the hosts of the sender's subnet;
    unicast traffic (streams and datagrams) is routed between subnets.
    """

    def __init__(self, name: str, ipv4: ipaddress.IPv4Network, ipv6: ipaddress.IPv6Network) -> None:
        self.name = name
        self.ipv4 = ipv4
        self.ipv6 = ipv6
        self.hosts: list[VirtualHost] = []
        self._next = 1

    @property
    def broadcast(self) -> str:
        """The IPv4 broadcast address of this subnet (e.g. ``10.0.0.255``)."""
        return str(self.ipv4.broadcast_address)

    def _allocate(self) -> tuple[str, str]:
        index = self._next
        if index >= self.ipv4.num_addresses - 1:
            raise ValueError(f"subnet {self.name} ({self.ipv4}) has no free address left")
        self._next += 1
        return str(self.ipv4[index]), str(self.ipv6[index])

    def __repr__(self) -> str:
        return f"<Subnet {self.name} {self.ipv4} {self.ipv6}>"


class VirtualHost:
    """A machine on the virtual network: one IPv4 and one IPv6 address on a subnet.

    Several nodes may share a host (``net.open_pycos(node=host.ipv4)``): they share
    its addresses and port tables, as processes on one machine do.
    """

    def __init__(
        self, net: VirtualNetwork, index: int, name: str, subnet: Subnet, ipv4: str, ipv6: str
    ) -> None:
        self.net = net
        self.index = index
        self.name = name
        self.subnet = subnet
        self.ipv4 = ipv4
        self.ipv6 = ipv6
        self.frozen = False
        self.listeners: list[VirtualListener] = []
        self.udp_sockets: list[VirtualUDPSocket] = []
        self.transports: list[VirtualTransport] = []
        self._next_tcp = _EPHEMERAL_FIRST
        self._next_udp = _EPHEMERAL_FIRST

    @property
    def addresses(self) -> tuple[str, str]:
        return self.ipv4, self.ipv6

    def address(self, family: int) -> str:
        """This host's address of ``family`` (``socket.AF_INET`` or ``AF_INET6``)."""
        return self.ipv6 if family == socket.AF_INET6 else self.ipv4

    def transport(self, *, connect_timeout: float = 10.0) -> VirtualTransport:
        """A new transport on this host: one "process" whose streams, listeners and
        UDP sockets ``VirtualNetwork.crash`` can kill together."""
        from ._transport import VirtualTransport

        return VirtualTransport(self.net, self, connect_timeout=connect_timeout)

    # -- binding ------------------------------------------------------------------

    def bind_address(self, host: str) -> list[str]:
        """The addresses a bind to ``host`` covers: ``""`` gives both wildcards."""
        if host == "":
            return [WILDCARD_V4, WILDCARD_V6]
        if host in (WILDCARD_V4, WILDCARD_V6) or host in self.addresses:
            return [host]
        raise OSError(errno.EADDRNOTAVAIL, f"cannot assign requested address {host!r}")

    def tcp_port_in_use(self, addr: str, port: int) -> bool:
        family = family_of(addr)
        for lst in self.listeners:
            if lst.port != port or lst.family != family:
                continue
            if lst.addr == addr or is_wildcard(lst.addr) or is_wildcard(addr):
                return True
        return False

    def ephemeral_tcp_port(self) -> int:
        """The next free port, in order, so that two runs allocate the same ones."""
        for _ in range(_EPHEMERAL_LAST - _EPHEMERAL_FIRST + 1):
            port = self._next_tcp
            self._next_tcp = port + 1 if port < _EPHEMERAL_LAST else _EPHEMERAL_FIRST
            if not any(lst.port == port for lst in self.listeners):
                return port
        raise OSError(errno.EADDRINUSE, "no free TCP port left on this virtual host")

    def ephemeral_udp_port(self) -> int:
        for _ in range(_EPHEMERAL_LAST - _EPHEMERAL_FIRST + 1):
            port = self._next_udp
            self._next_udp = port + 1 if port < _EPHEMERAL_LAST else _EPHEMERAL_FIRST
            if not any(sock.port == port for sock in self.udp_sockets):
                return port
        raise OSError(errno.EADDRINUSE, "no free UDP port left on this virtual host")

    def find_listener(self, addr: str, port: int) -> VirtualListener | None:
        family = family_of(addr)
        for lst in self.listeners:
            if lst.port != port or lst.family != family:
                continue
            if lst.addr == addr or is_wildcard(lst.addr):
                return lst
        return None

    def __repr__(self) -> str:
        return f"<VirtualHost {self.name} {self.ipv4} {self.ipv6}>"
