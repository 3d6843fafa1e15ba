"""Fast paths of a peer connection's I/O on plain sockets.

Writing without waiting
-----------------------

A peer connection normally hands every frame to its writer task, which costs a
scheduler pass (and another for ``send_all``'s own checkpoint) before the bytes
leave.  When the writer is idle, writing the frame at once from the sender's own
task saves those passes, *provided the write cannot wait*: a write stuck on a dead
link must never hold its caller.  So the fast path only ever makes one non-blocking
attempt and says how much was taken; whatever does not fit goes to the writer task
as before.

``nowait_sender(stream)`` returns that attempt for the streams that support it, or
None (then every frame goes through the writer):

* a stream with a ``send_nowait(data) -> int`` method of its own (the virtual
  network's streams);
* a plain ``trio.SocketStream`` on a POSIX system: one ``os.write`` on its
  (non-blocking) socket.  The descriptor is looked up at every call, never kept: a
  closed socket has none (-1), so a write after a close fails instead of reaching
  whatever the number is reused for;
* ``tls_stream.TLSStream`` (it encrypts, then writes its records with one of the
  above); not trio's ``SSLStream``.

The attempt returns the number of bytes written (0 when none fit), or ``OWED``: all
of the bytes were taken, but the stream still holds some of its own (a TLS record
written in part) that a ``send_all`` (of ``b""`` if nothing else) must flush.  It raises
``trio.BrokenResourceError`` or ``trio.ClosedResourceError`` as ``send_all`` would
(mapped by ``errors.stream_error``).
The caller must make sure no ``send_all`` is running on the stream at the time.

Receiving
---------
``receiver(stream)`` returns a ``receive_some(max_bytes)`` for the connection's
reader task.  For a plain ``trio.SocketStream`` on POSIX it reads the socket with
``os.read`` and waits with ``trio.lowlevel.wait_readable``: the same contract as
``SocketStream.receive_some`` (a cancellation point before anything is read; a
schedule point after a read that did not wait, which never loses what was read; the
same errors), without its layers of context managers, which cost a few microseconds
on every message's path.  Other streams get their own ``receive_some``.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from typing import Final

import trio

from .errors import stream_error

__all__ = ["OWED", "NowaitSend", "Receive", "nowait_sender", "receiver"]

NowaitSend = Callable[[bytes], int]
Receive = Callable[[int], Awaitable[bytes | bytearray]]

_POSIX = os.name == "posix"

#: What a write that cannot wait returns when it took everything but a ``send_all``
#: is owed (see the module docstring).
OWED: Final = -1


def nowait_sender(stream: trio.abc.Stream) -> NowaitSend | None:
    """A function writing bytes to ``stream`` at once without waiting, or None."""
    own = getattr(stream, "send_nowait", None)
    if callable(own):
        send: NowaitSend = own
        return send
    if _POSIX and type(stream) is trio.SocketStream:
        return _socket_sender(stream.socket)
    return None


def _socket_sender(sock: trio.socket.SocketType) -> NowaitSend:
    fileno = sock.fileno
    write = os.write

    def send_nowait(data: bytes) -> int:
        try:
            return write(fileno(), data)
        except BlockingIOError:
            return 0
        except OSError as exc:
            # No descriptor any more (EBADF): closed here.
            raise stream_error(exc, "write", closed=fileno() == -1) from exc

    return send_nowait


def receiver(stream: trio.abc.Stream) -> Receive:
    """``receive_some`` for ``stream`` (see the module docstring)."""
    if _POSIX and type(stream) is trio.SocketStream:
        return _socket_receiver(stream.socket)
    return stream.receive_some


def _socket_receiver(sock: trio.socket.SocketType) -> Receive:
    fileno = sock.fileno
    read = os.read
    wait_readable = trio.lowlevel.wait_readable
    checkpoint_if_cancelled = trio.lowlevel.checkpoint_if_cancelled
    cancel_shielded_checkpoint = trio.lowlevel.cancel_shielded_checkpoint

    def fail(exc: OSError) -> Exception:
        return stream_error(exc, "read", closed=fileno() == -1)

    # After a read that emptied the socket (it returned less than asked for), the
    # next one would almost always fail with EAGAIN: wait for readiness instead of
    # paying for that syscall and its exception on every message of a request and
    # reply exchange.  Readiness is level-triggered: bytes that came in between are
    # seen at once.
    drained = False

    async def receive_some(max_bytes: int) -> bytes:
        nonlocal drained
        if not drained:
            await checkpoint_if_cancelled()
            try:
                data = read(fileno(), max_bytes)
            except BlockingIOError:
                pass
            except OSError as exc:
                raise fail(exc) from exc
            else:
                drained = len(data) < max_bytes
                # Read without waiting: still let the others run (and never lose
                # `data` to a cancellation: the checkpoint is shielded).
                await cancel_shielded_checkpoint()
                return data
        while True:
            if fileno() == -1:
                raise trio.ClosedResourceError("the socket was closed")
            await wait_readable(sock)
            try:
                data = read(fileno(), max_bytes)
            except BlockingIOError:
                continue
            except OSError as exc:
                raise fail(exc) from exc
            drained = len(data) < max_bytes
            return data

    return receive_some
