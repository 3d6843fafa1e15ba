"""TCP transport on trio's socket streams (IPv4 and IPv6)."""

from __future__ import annotations

import socket

import trio

from ._base import DatagramSocket
from .udp import UDPSocket

__all__ = ["TCPTransport"]


class TCPTransport:
    """Plain TCP. ``connect_timeout`` bounds each connection attempt."""

    def __init__(self, *, connect_timeout: float = 10.0) -> None:
        self.connect_timeout = connect_timeout

    async def open_stream(self, host: str, port: int) -> trio.abc.Stream:
        try:
            with trio.fail_after(self.connect_timeout):
                return await trio.open_tcp_stream(host, port)
        except trio.TooSlowError:
            raise OSError(f"connecting to {host}:{port} timed out") from None
        except OSError as exc:
            reason = _first_reason(exc)
            if reason is None:
                raise
            raise reason from exc

    async def open_listeners(
        self, host: str, port: int
    ) -> list[trio.abc.Listener[trio.abc.Stream]]:
        listeners = await trio.open_tcp_listeners(port, host=host)
        return list(listeners)

    def listener_address(self, listener: trio.abc.Listener[trio.abc.Stream]) -> tuple[str, int]:
        assert isinstance(listener, trio.SocketListener)
        sockname = listener.socket.getsockname()
        host = str(sockname[0])
        if len(sockname) > 3 and sockname[3]:  # a link-local address: keep its scope
            host = f"{host}%{socket.if_indextoname(sockname[3])}"
        return host, int(sockname[1])

    async def open_udp(self, host: str, port: int) -> DatagramSocket:
        return await UDPSocket.bind(host, port)


def _first_reason(exc: OSError) -> OSError | None:
    """trio reports a failed connect as "all attempts to connect to ... failed", with
    each attempt's error in an exception group as its cause: the first of those says
    why ("[Errno 111] Connection refused"), which is what a log line should say."""
    cause = exc.__cause__
    if isinstance(cause, BaseExceptionGroup):
        for leaf in cause.exceptions:
            if isinstance(leaf, OSError) and leaf.strerror:
                return OSError(leaf.errno, leaf.strerror)
    return None
