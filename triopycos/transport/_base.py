"""The transport interface the node's services are written against."""

from __future__ import annotations

import operator
from typing import Protocol

import trio

__all__ = ["DatagramSocket", "Transport", "receive_size"]


class DatagramSocket(Protocol):
    """A UDP socket for discovery: bound to a port that other sockets may share
    (``SO_REUSEADDR``/``SO_REUSEPORT``), so several nodes on one host all hear the
    broadcasts and multicasts sent to that port."""

    async def sendto(self, data: bytes, address: tuple[str, int]) -> int:
        """Send one datagram; ``OSError`` if the system refuses it."""
        ...

    async def recvfrom(self, bufsize: int) -> tuple[bytes, tuple[str, int]]:
        """The next datagram and its sender's (host, port)."""
        ...

    def join_group(self, group: str, interface: str | None = None) -> None:
        """Receive the multicast ``group`` on the interface that has the address
        ``interface`` (None: the system's choice)."""
        ...

    def enable_broadcast(self) -> None:
        """Let this socket send broadcasts and multicasts, out of the interface of
        the address it is bound to, with copies for the sockets of its own host (so
        nodes on one host hear each other)."""
        ...

    def getsockname(self) -> tuple[str, int]: ...

    def close(self) -> None: ...


class Transport(Protocol):
    """Opens and accepts reliable byte streams between nodes, and UDP sockets.

    What an implementation raises: ``OSError`` when connecting (refused,
    unreachable, timed out), listening, accepting or with a datagram socket fails,
    and trio's ``BrokenResourceError`` / ``ClosedResourceError`` when a stream
    does, as trio's streams do.  The services never see those ``OSError``
    values: ``transport.errors`` maps them, in one place.
    """

    async def open_stream(self, host: str, port: int) -> trio.abc.Stream:
        """Connect to ``host:port``."""
        ...

    async def open_listeners(
        self, host: str, port: int
    ) -> list[trio.abc.Listener[trio.abc.Stream]]:
        """Listen on ``host:port`` (port 0: any free port)."""
        ...

    def listener_address(self, listener: trio.abc.Listener[trio.abc.Stream]) -> tuple[str, int]:
        """The (host, port) a listener is bound to."""
        ...

    async def open_udp(self, host: str, port: int) -> DatagramSocket:
        """A UDP socket bound to ``host:port`` (a wildcard such as ``"0.0.0.0"`` or
        ``"::"`` to hear broadcasts; port 0: any free port).  Bound to one of the
        host's own addresses, it sends broadcasts and multicasts out of that
        address's interface."""
        ...


def receive_size(max_bytes: int | None, default: int) -> int:
    """``receive_some``'s ``max_bytes`` checked as trio's streams check it: None is
    ``default``, anything else an index of at least 1 (``TypeError``, ``ValueError``)."""
    if max_bytes is None:
        return default
    size = operator.index(max_bytes)
    if size < 1:
        raise ValueError("max_bytes must be >= 1")
    return size
