"""The transport interface the node's services are written against."""

from __future__ import annotations

import os
from typing import Protocol

import trio

__all__ = ["DatagramSocket", "Transport", "os_error_reason"]


def os_error_reason(exc: OSError) -> str:
    """Why a socket call failed, for a sentence: "address already in use", from the
    error number when there is one (the same words on every transport, without
    "[Errno 98]"), else the error's own text."""
    if exc.errno is not None:
        try:
            text = os.strerror(exc.errno)
        except ValueError:
            text = ""
        if text and not text.startswith("Unknown error"):
            return text[:1].lower() + text[1:]
    return str(exc) or type(exc).__name__


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

    Errors are mapped here, once: connecting raises ``OSError`` (refused, unreachable,
    timed out), and a broken stream raises ``trio.BrokenResourceError`` /
    ``trio.ClosedResourceError`` as trio's streams do.
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
