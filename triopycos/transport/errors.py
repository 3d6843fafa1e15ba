"""Transport errors: mapped here, and nowhere else.

Sockets (and any other ``Transport``) fail with ``OSError`` and its many error
numbers; the services above see only what this module turns them into, each with
``reason``, a few words for a sentence ("connection refused"), the same on every
transport (``os_error_reason``), and the original error as ``__cause__``:

============================  =====================================================
what failed                   what the services get
============================  =====================================================
a stream (send, receive)      ``trio.BrokenResourceError`` (it broke) or
                              ``trio.ClosedResourceError`` (this side closed it), as
                              trio's own streams raise: ``STREAM_ERRORS``.  The fast
                              paths that call the socket themselves (``_nowait``,
                              ``_thread_socket``) map with ``stream_error``.
connecting                    ``ConnectFailed`` (refused, unreachable, timed out, a
                              host name no resolver takes): ``connect``
listening                     ``ListenFailed``: ``listen``
accepting                     ``OutOfCapacity`` when the system ran out of something
                              that comes back (descriptors, memory, buffers:
                              ``ACCEPT_CAPACITY_ERRNOS``, as trio's
                              ``serve_listeners``), else ``AcceptFailed``: ``accept``
a datagram socket             ``DatagramFailed``: the sockets ``open_datagram_socket``
                              returns
============================  =====================================================

A service catches these classes, never ``OSError``: an ``OSError`` that reaches one
is a bug of the mapping, and fails loudly instead of being taken for a network
fault.  (File-system errors are not transport errors: the file service maps those
itself, in ``services/files/disk.py``.)
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final

import trio

from ._base import DatagramSocket, Transport

__all__ = [
    "ACCEPT_CAPACITY_ERRNOS",
    "STREAM_ERRORS",
    "AcceptFailed",
    "ConnectFailed",
    "DatagramFailed",
    "ListenFailed",
    "MappedDatagramSocket",
    "OutOfCapacity",
    "TransportError",
    "accept",
    "connect",
    "listen",
    "open_datagram_socket",
    "os_error_reason",
    "stream_error",
]

#: What a broken or closed stream raises (trio's contract, kept by every transport).
STREAM_ERRORS: Final = (trio.BrokenResourceError, trio.ClosedResourceError)

#: ``accept`` failures that say the system is out of something that comes back when
#: connections close: worth waiting for, not the end of the listener.  (trio's own
#: ``SocketListener.accept`` already retries the errors a vanished client causes.)
ACCEPT_CAPACITY_ERRNOS: Final = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS})


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


class TransportError(Exception):
    """A transport operation failed.  ``reason``: words for a sentence; ``detail``:
    the original error's full text (for debug logs)."""

    def __init__(self, reason: str, detail: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.detail = reason if detail is None else detail


class ConnectFailed(TransportError):
    """Connecting to a node failed (refused, unreachable, timed out, bad host)."""


class ListenFailed(TransportError):
    """Listening on an address failed (in use, not an address of this host)."""


class AcceptFailed(TransportError):
    """A listener failed for good: it cannot accept any more."""


class OutOfCapacity(TransportError):
    """Accepting failed for lack of descriptors, memory or buffers: try again after
    a while (connections that close give them back)."""


class DatagramFailed(TransportError):
    """A datagram socket refused an operation (bind, send, join a group...)."""


def _mapped(kind: type[TransportError], exc: OSError) -> TransportError:
    return kind(os_error_reason(exc), str(exc))


def stream_error(
    exc: OSError, operation: str, *, closed: bool
) -> trio.BrokenResourceError | trio.ClosedResourceError:
    """The trio error for a failed socket call on a stream, as trio's
    ``SocketStream`` maps them: ``closed`` (the socket has no descriptor any more:
    this side closed it) is a ``ClosedResourceError``, anything else broke it."""
    if closed:
        return trio.ClosedResourceError("the socket was closed")
    return trio.BrokenResourceError(f"socket {operation} failed: {exc}")


async def connect(transport: Transport, host: str, port: int, timeout: float) -> trio.abc.Stream:
    """``transport.open_stream(host, port)`` within ``timeout`` seconds, whatever the
    transport does itself; ``ConnectFailed`` if that fails."""
    try:
        with trio.fail_after(timeout):
            return await transport.open_stream(host, port)
    except trio.TooSlowError:
        raise ConnectFailed("timed out") from None
    except OSError as exc:
        raise _mapped(ConnectFailed, exc) from exc
    except (UnicodeError, ValueError) as exc:  # host text that no resolver takes
        raise ConnectFailed(str(exc)) from exc


async def listen(
    transport: Transport, host: str, port: int
) -> list[trio.abc.Listener[trio.abc.Stream]]:
    """``transport.open_listeners(host, port)``; ``ListenFailed`` if that fails."""
    try:
        return await transport.open_listeners(host, port)
    except OSError as exc:
        raise _mapped(ListenFailed, exc) from exc


async def accept(listener: trio.abc.Listener[trio.abc.Stream]) -> trio.abc.Stream:
    """The next connection; ``OutOfCapacity`` (try again later) or ``AcceptFailed``
    (the listener is done for) if there is none."""
    try:
        return await listener.accept()
    except OSError as exc:
        if exc.errno in ACCEPT_CAPACITY_ERRNOS:
            raise _mapped(OutOfCapacity, exc) from exc
        raise _mapped(AcceptFailed, exc) from exc


@contextmanager
def _datagram_errors() -> Iterator[None]:
    try:
        yield
    except OSError as exc:
        raise _mapped(DatagramFailed, exc) from exc


class MappedDatagramSocket:
    """A ``DatagramSocket`` whose failures are ``DatagramFailed`` (a socket closed
    under a waiting ``recvfrom``, as the virtual network's crashes do, still raises
    ``trio.ClosedResourceError``)."""

    def __init__(self, sock: DatagramSocket) -> None:
        self._sock = sock

    async def sendto(self, data: bytes, address: tuple[str, int]) -> int:
        with _datagram_errors():
            return await self._sock.sendto(data, address)

    async def recvfrom(self, bufsize: int) -> tuple[bytes, tuple[str, int]]:
        with _datagram_errors():
            return await self._sock.recvfrom(bufsize)

    def join_group(self, group: str, interface: str | None = None) -> None:
        with _datagram_errors():
            self._sock.join_group(group, interface)

    def enable_broadcast(self) -> None:
        with _datagram_errors():
            self._sock.enable_broadcast()

    def getsockname(self) -> tuple[str, int]:
        with _datagram_errors():
            return self._sock.getsockname()

    def close(self) -> None:
        with _datagram_errors():
            self._sock.close()


async def open_datagram_socket(transport: Transport, host: str, port: int) -> MappedDatagramSocket:
    """``transport.open_udp(host, port)``, mapped; ``DatagramFailed`` if it fails."""
    with _datagram_errors():
        sock = await transport.open_udp(host, port)
    return MappedDatagramSocket(sock)
