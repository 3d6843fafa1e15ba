"""TLS around another transport: every connection authenticates both sides.

Each node presents ``certfile`` (with ``keyfile``, or the key in the same PEM file)
and requires the peer to present a certificate that chains to ``cafile``.  Without a
``cafile`` the node's own certificate is the trust anchor: that is pycos's recipe of
one self-signed ``sskeycert.pem`` copied to every peer.  Host names are not checked:
peers are identified by their certificate and then by the shared-secret handshake,
which still runs inside TLS.
"""

from __future__ import annotations

import os
import ssl

import trio

from ._base import DatagramSocket, Transport
from .tls_stream import TLSListener, TLSStream

__all__ = ["TLSTransport", "tls_contexts"]


def tls_contexts(
    certfile: str | os.PathLike[str],
    keyfile: str | os.PathLike[str] | None = None,
    cafile: str | os.PathLike[str] | None = None,
) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """(server context, client context), both requiring and verifying the peer's
    certificate.  Bad files raise ``OSError``/``ssl.SSLError`` here, at start."""
    anchor = cafile if cafile is not None else certfile
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    for context in (server, client):
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(certfile, keyfile)
        context.load_verify_locations(anchor)
        context.verify_mode = ssl.CERT_REQUIRED
        context.options |= ssl.OP_NO_RENEGOTIATION  # TLSStream does not renegotiate
    client.check_hostname = False  # see the module docstring
    # No TLS 1.3 session tickets: a node never resumes a session (every connection
    # authenticates afresh), so tickets would be bytes and work for nothing.
    server.num_tickets = 0
    return server, client


class TLSTransport:
    """Wraps ``inner``'s streams and listeners in TLS."""

    def __init__(
        self,
        inner: Transport,
        certfile: str | os.PathLike[str],
        keyfile: str | os.PathLike[str] | None = None,
        cafile: str | os.PathLike[str] | None = None,
    ) -> None:
        self.inner = inner
        self._server, self._client = tls_contexts(certfile, keyfile, cafile)

    async def open_stream(self, host: str, port: int) -> trio.abc.Stream:
        raw = await self.inner.open_stream(host, port)
        # The TLS handshake happens on first use, inside the node's handshake deadline.
        return TLSStream(raw, self._client, server_side=False)

    async def open_listeners(
        self, host: str, port: int
    ) -> list[trio.abc.Listener[trio.abc.Stream]]:
        return [
            TLSListener(listener, self._server)
            for listener in await self.inner.open_listeners(host, port)
        ]

    def listener_address(self, listener: trio.abc.Listener[trio.abc.Stream]) -> tuple[str, int]:
        assert isinstance(listener, TLSListener)
        return self.inner.listener_address(listener.transport_listener)

    async def open_udp(self, host: str, port: int) -> DatagramSocket:
        # Discovery datagrams are authenticated by their MAC, not by TLS.
        return await self.inner.open_udp(host, port)
