"""Reading a plain TCP stream's socket from a worker thread.

The file receiver reads a file's content in one worker thread when the connection
is a plain socket (``services/files/bulk_receive.py`` says why).  That thread must
not touch trio's socket object, so it reads a duplicate of the descriptor with the
socket module's own timeouts: ``poll`` on the non-blocking descriptor trio set up,
never blocking mode, which the duplicate would share with trio's.  Every socket call
and its ``OSError`` stay here; a failed read is mapped as a stream's
(``errors.stream_error``).

Only a plain ``trio.SocketStream`` on POSIX qualifies (not TLS, not the virtual
network): ``thread_socket`` returns None for the others, and when the descriptor
cannot be duplicated (out of descriptors): the caller then reads in the trio thread.
"""

from __future__ import annotations

import contextlib
import os
import socket

import trio

from .errors import stream_error

__all__ = ["ThreadSocket", "thread_socket"]

_POSIX = os.name == "posix"
_HAVE_LOWAT = hasattr(socket, "SO_RCVLOWAT")
#: Longest single wait, seconds: an infinite timeout is no socket timeout.
_MAX_WAIT = 3600.0


def thread_socket(stream: trio.abc.Stream) -> ThreadSocket | None:
    """A ``ThreadSocket`` on ``stream``'s descriptor, or None (see the module
    docstring)."""
    if not (_POSIX and type(stream) is trio.SocketStream):
        return None
    fd = stream.socket.fileno()
    if fd < 0:
        return None
    try:
        return ThreadSocket(socket.socket(fileno=os.dup(fd)))
    except OSError:
        return None


class ThreadSocket:
    """A duplicate of a stream's descriptor, for one worker thread to read.
    ``interrupt`` (from any thread) ends a wait at once; ``close`` (after the
    worker has stopped) releases the duplicate."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._lowat = 1
        self._lowat_works = _HAVE_LOWAT

    def wake_after(self, nbytes: int) -> None:
        """Let a read wait until ``nbytes`` (at least 1) are there, where the system
        can (``SO_RCVLOWAT``): one wake-up per batch instead of one per segment."""
        if not self._lowat_works or nbytes == self._lowat:
            return
        try:
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, nbytes)
        except OSError:  # a system that refuses it: woken per segment, then
            self._lowat_works = False
        self._lowat = nbytes

    def recv(self, max_bytes: int, timeout: float) -> bytes | None:
        """Up to ``max_bytes`` (b"" at the end of the stream), or None if nothing
        came within ``timeout`` seconds; ``trio.BrokenResourceError`` if the
        connection failed."""
        sock = self._sock
        sock.settimeout(min(max(timeout, 0.0), _MAX_WAIT))
        try:
            try:
                return sock.recv(max_bytes)
            except TimeoutError:
                # Bytes below the wake-up mark do not wake the wait, but may be all
                # there is to come (the end of a chunk): look once more, without
                # waiting.
                sock.settimeout(0)
                return sock.recv(max_bytes)
        except (TimeoutError, BlockingIOError):
            return None
        except OSError as exc:
            raise stream_error(exc, "read", closed=False) from exc

    def release(self) -> None:
        """Undo ``wake_after`` (the setting belongs to the socket, which trio's
        descriptor shares).  Call it in the worker, when it is done."""
        if self._lowat != 1 and self._lowat_works:
            with contextlib.suppress(OSError):
                self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, 1)
        self._lowat = 1

    def interrupt(self) -> None:
        """End the worker's wait now (the connection is shut down in both
        directions)."""
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self._sock.close()
