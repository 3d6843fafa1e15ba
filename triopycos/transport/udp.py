"""UDP sockets for discovery, on trio's sockets (IPv4 and IPv6)."""

from __future__ import annotations

import ipaddress
import socket
import struct
from pathlib import Path

import trio

__all__ = ["UDPSocket", "interface_index", "ipv6_addresses"]

_IF_INET6 = Path("/proc/net/if_inet6")


def interface_index(address: str) -> int:
    """The index of the interface holding the IPv6 ``address``; 0 (the system's
    choice) if it cannot be found.  A scope id (``fe80::1%eth0``) names it directly."""
    addr, _, scope = address.partition("%")
    if scope:
        try:
            return int(scope) if scope.isdigit() else socket.if_nametoindex(scope)
        except OSError:
            return 0
    try:
        wanted = ipaddress.IPv6Address(addr)
    except ValueError:
        return 0
    for held, index in ipv6_addresses():
        if held == wanted:
            return index
    return 0


def ipv6_addresses() -> list[tuple[ipaddress.IPv6Address, int]]:
    """This host's IPv6 addresses with their interface's index (Linux; elsewhere,
    or when it cannot be read, none)."""
    try:
        lines = _IF_INET6.read_text().splitlines()
    except OSError:
        return []
    found = []
    for line in lines:
        fields = line.split()
        if len(fields) >= 2:
            try:
                found.append((ipaddress.IPv6Address(int(fields[0], 16)), int(fields[1], 16)))
            except ValueError:
                continue
    return found


class UDPSocket:
    """``DatagramSocket`` on a real socket; open one with ``UDPSocket.bind``."""

    def __init__(self, sock: trio.socket.SocketType) -> None:
        self._sock = sock

    @classmethod
    async def bind(cls, host: str, port: int) -> UDPSocket:
        """A socket on ``host:port`` that shares the port with other sockets (so
        several nodes on one host all receive what is broadcast to it)."""
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = trio.socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if hasattr(socket, "SO_REUSEPORT"):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            await sock.bind((host or "0.0.0.0", port))
        except BaseException:
            sock.close()
            raise
        return cls(sock)

    def enable_broadcast(self) -> None:
        host = self.getsockname()[0]
        if self._sock.family == socket.AF_INET6:
            index = interface_index(host)
            if index:
                self._sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, index)
            self._sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_LOOP, 1)
        else:
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
            if host != "0.0.0.0":
                interface = socket.inet_aton(host)
                self._sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, interface)
            self._sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)

    async def sendto(self, data: bytes, address: tuple[str, int]) -> int:
        return await self._sock.sendto(data, address)

    async def recvfrom(self, bufsize: int) -> tuple[bytes, tuple[str, int]]:
        data, sender = await self._sock.recvfrom(bufsize)
        host = str(sender[0])
        if len(sender) > 3 and sender[3] and "%" not in host:  # link-local: keep the scope
            host = f"{host}%{sender[3]}"
        return data, (host, int(sender[1]))

    def join_group(self, group: str, interface: str | None = None) -> None:
        if self._sock.family == socket.AF_INET6:
            index = interface_index(interface) if interface else 0
            request = socket.inet_pton(socket.AF_INET6, group) + struct.pack("@I", index)
            self._sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, request)
        else:
            local = socket.inet_aton(interface) if interface else struct.pack("@I", 0)
            request = socket.inet_aton(group) + local
            self._sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, request)

    def getsockname(self) -> tuple[str, int]:
        name = self._sock.getsockname()
        return str(name[0]), int(name[1])

    def close(self) -> None:
        self._sock.close()
