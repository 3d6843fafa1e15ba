"""Whom a stream connects us to, whatever the transport (for admission and logs)."""

from __future__ import annotations

import trio

__all__ = ["remote_address"]


def remote_address(stream: trio.abc.Stream) -> tuple[str, int]:
    """The other end's (host, port), or ("?", 0) if the stream cannot say."""
    # Through any wrapping stream (TLS: ours or trio's) to the one that connects.
    while (inner := getattr(stream, "transport_stream", None)) is not None:
        stream = inner
    remote = getattr(stream, "remote_address", None)  # the virtual network's streams
    if remote is not None:
        return str(remote[0]), int(remote[1])
    sock = getattr(stream, "socket", None)
    if sock is not None:
        try:
            host, port = sock.getpeername()[:2]
            return str(host), int(port)
        except OSError:  # not connected any more: nobody to name
            pass
    return "?", 0
