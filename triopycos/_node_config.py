"""``NodeConfig``: a node's configuration, checked once and frozen.

``NodeConfig.build`` takes ``open_pycos``'s arguments (the spec's ``Pycos``
constructor's, plus our keyword-only ones), checks every one of them and normalizes
them; it is the only place that does.  ``open_pycos`` and the compat facade's
``Pycos(...)`` (``compat/_scheduler.py``) both build one, and the node and its
services read their settings from it.

Building has no side effects on the system, but for reading the TLS certificate
files (a bad one fails here, at start).  What needs the trio run or the network
happens when the node starts: looking up this host's address when ``node`` is not
given (``hosts`` is empty then), making the default ``dest_path`` private.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass

from ._dest_path import default_dest_path
from ._task_arguments import check_timeout
from .protocol.handshake import MAX_LOCATIONS, MAX_NAME
from .services.discovery import announce_interval_ok
from .services.limits import Limits
from .transport import TCPTransport, TLSTransport, Transport

__all__ = ["NodeConfig", "check_port"]


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeConfig:
    """A node's settings, as ``NodeConfig.build`` checked them."""

    udp_port: int
    tcp_port: int | None
    #: ``node`` as given (``Pycos.node``), and the hosts it names; none: this host's
    #: address, looked up when the node starts.
    node: str | Sequence[str] | None
    hosts: tuple[str, ...]
    ext_ip_addr: str | Sequence[str] | None
    socket_family: int | None
    ipv4_udp_multicast: bool
    name: str | None
    discover_peers: bool
    secret: str
    certfile: str | None
    keyfile: str | None
    #: The folder received files go to; ``dest_path_is_default``: not given, so the
    #: node makes it private when it starts.
    dest_path: str
    dest_path_is_default: bool
    max_file_size: int | None
    #: With ``peer_timeout`` folded in.
    limits: Limits
    #: TCP, or the one given; inside TLS when there is a ``certfile``.
    transport: Transport
    node_id: bytes | None
    announce_interval: float | None
    encode_local: bool

    @classmethod
    def build(
        cls,
        udp_port: int = 9705,
        tcp_port: int | None = None,
        node: str | Sequence[str] | None = None,
        ext_ip_addr: str | Sequence[str] | None = None,
        socket_family: int | None = None,
        ipv4_udp_multicast: bool = False,
        name: str | None = None,
        discover_peers: bool = True,
        secret: str = "",
        certfile: str | None = None,
        keyfile: str | None = None,
        dest_path: str | os.PathLike[str] | None = None,
        max_file_size: int | None = None,
        *,
        dest_path_prefix: str | os.PathLike[str] | None = None,
        transport: Transport | None = None,
        limits: Limits | None = None,
        peer_timeout: float | None = None,
        node_id: bytes | None = None,
        cafile: str | os.PathLike[str] | None = None,
        announce_interval: float | None = 30.0,
        encode_local: bool = False,
    ) -> NodeConfig:
        """The configuration for ``open_pycos``'s arguments (see its docstring);
        ``TypeError``/``ValueError`` for a bad one."""
        check_port("udp_port", udp_port, optional=False)
        check_port("tcp_port", tcp_port, optional=True)
        if name is not None and (not isinstance(name, str) or not name):
            raise TypeError(f"name must be a non-empty str or None, not {name!r}")
        if name is not None and len(name) > MAX_NAME:
            # Names travel in handshakes and discovery datagrams, which are bounded.
            raise ValueError(f"name must be at most {MAX_NAME} characters, not {len(name)}")
        if not isinstance(secret, str):
            raise TypeError(f"secret must be a str, not {type(secret).__name__}")
        if max_file_size is not None and (
            isinstance(max_file_size, bool)
            or not isinstance(max_file_size, int)
            or max_file_size < 0
        ):
            raise ValueError(f"max_file_size must be None or an int >= 0, not {max_file_size!r}")
        if dest_path is not None and dest_path_prefix is not None:
            raise TypeError("give dest_path or its alias dest_path_prefix, not both")
        chosen = dest_path if dest_path is not None else dest_path_prefix
        if socket_family not in (None, socket.AF_INET, socket.AF_INET6):
            raise ValueError(
                f"socket_family must be None, AF_INET or AF_INET6, not {socket_family!r}"
            )
        interval = announce_interval_ok(announce_interval)
        hosts = _hosts(node)
        _check_ext_ip_addr(ext_ip_addr, max(len(hosts), 1))
        limits = limits if limits is not None else Limits()
        if peer_timeout is not None:
            check_timeout(peer_timeout)
            if peer_timeout <= 0:
                raise ValueError(f"peer_timeout must be > 0, not {peer_timeout!r}")
            limits = dataclasses.replace(limits, peer_timeout=peer_timeout)
        if transport is None:
            transport = TCPTransport(connect_timeout=limits.connect_timeout)
        if certfile is not None:
            # Every peer connection is TLS, authenticated on both sides.
            transport = TLSTransport(transport, certfile, keyfile, cafile)
        elif keyfile is not None or cafile is not None:
            raise TypeError("keyfile and cafile need a certfile")
        if node_id is not None and (type(node_id) is not bytes or len(node_id) != 16):
            raise ValueError("node_id must be 16 bytes")
        return cls(
            udp_port=udp_port,
            tcp_port=tcp_port,
            node=node,
            hosts=hosts,
            ext_ip_addr=ext_ip_addr,
            socket_family=socket_family,
            ipv4_udp_multicast=bool(ipv4_udp_multicast),
            name=name,
            discover_peers=bool(discover_peers),
            secret=secret,
            certfile=certfile,
            keyfile=keyfile,
            dest_path=os.fspath(chosen) if chosen is not None else default_dest_path(),
            dest_path_is_default=chosen is None,
            max_file_size=max_file_size or None,
            limits=limits,
            transport=transport,
            node_id=node_id,
            announce_interval=interval,
            encode_local=bool(encode_local),
        )


def check_port(what: str, port: object, *, optional: bool) -> None:
    if port is None and optional:
        return
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ValueError(f"{what} must be a port number 0..65535, not {port!r}")


def _hosts(node: str | Sequence[str] | None) -> tuple[str, ...]:
    if node is None:
        return ()
    if isinstance(node, str):
        return (node,)
    try:
        hosts = tuple(node)
    except TypeError:  # not a list of anything
        hosts = ()
    if not hosts or not all(isinstance(h, str) and h for h in hosts):
        raise TypeError(f"node must be a host, an address or a list of them, not {node!r}")
    if len(hosts) > MAX_LOCATIONS // 2:
        raise ValueError(f"node may list at most {MAX_LOCATIONS // 2} addresses")
    return hosts


def _check_ext_ip_addr(ext_ip_addr: object, hosts: int) -> None:
    if ext_ip_addr is None:
        return
    addrs = [ext_ip_addr] if isinstance(ext_ip_addr, str) else ext_ip_addr
    if not isinstance(addrs, list | tuple) or not all(isinstance(a, str) for a in addrs):
        raise TypeError(f"ext_ip_addr must be an IP address or a list of them, not {ext_ip_addr!r}")
    if len(addrs) > hosts:
        raise ValueError(f"ext_ip_addr has {len(addrs)} addresses for {hosts} node address(es)")
    for addr in addrs:
        try:
            ipaddress.ip_address(addr)
        except ValueError:
            raise ValueError(f"ext_ip_addr {addr!r} is not an IP address") from None
