"""The transport interface the node's services are written against."""

from __future__ import annotations

from typing import Protocol

import trio

__all__ = ["Transport"]


class Transport(Protocol):
    """Opens and accepts reliable byte streams between nodes.

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
