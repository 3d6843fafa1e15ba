"""This host's address, for a node started without ``node`` (pycos's default).

The host name is resolved first (as pycos does).  A name that resolves only to
loopback, or to an address this host does not have (a container or network namespace
whose ``/etc/hosts`` describes another machine), is no use to peers, so then the
first non-loopback address of an interface that is up is taken (Linux).
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import socket
import struct

import trio

from .transport.udp import ipv6_addresses

__all__ = ["default_host"]

_SIOCGIFADDR = 0x8915


async def default_host(family: int | None) -> str:
    """A numeric address of this host of ``family`` (default IPv4)."""
    family = family or socket.AF_INET
    hostname = socket.gethostname()
    try:
        infos = await trio.socket.getaddrinfo(hostname, None, family=family)
    except socket.gaierror:  # the name does not resolve: look at the interfaces
        infos = []
    named = [str(info[4][0]) for info in infos]
    for addr in named:
        if not ipaddress.ip_address(addr.partition("%")[0]).is_loopback and _is_local(addr):
            return addr
    found = _interface_address(family)
    if found is not None:
        return found
    if named:
        return named[0]
    raise OSError(f"no address found for this host ({hostname!r})")


def _is_local(addr: str) -> bool:
    """Whether this host has ``addr`` (a socket can be bound to it)."""
    family = socket.AF_INET6 if ":" in addr else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.bind((addr, 0))
    except OSError:
        return False
    return True


def _interface_address(family: int) -> str | None:
    if family == socket.AF_INET6:
        return _ipv6_interface_address()
    try:
        names = [name for _, name in socket.if_nameindex()]
    except OSError:
        return None
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for name in names:
            request = struct.pack("256s", name.encode()[:15])
            with contextlib.suppress(OSError):
                reply = fcntl.ioctl(sock.fileno(), _SIOCGIFADDR, request)
                addr = socket.inet_ntoa(reply[20:24])
                if not ipaddress.ip_address(addr).is_loopback:
                    return addr
    return None


def _ipv6_interface_address() -> str | None:
    for addr, _ in ipv6_addresses():
        if not (addr.is_loopback or addr.is_link_local):
            return str(addr)
    return None
