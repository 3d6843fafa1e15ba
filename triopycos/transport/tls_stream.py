"""A lean TLS stream for peer connections, with the plain socket's fast paths.

``trio.SSLStream`` serves any protocol; a peer connection needs less of it and pays
for the rest on every message: its send and receive each run a general retry loop
with conflict detectors and locks, and a frame can only be written by awaiting
``send_all``, so with TLS every message woke the connection's writer task (twice the
scheduler passes of a plain socket).  ``TLSStream`` keeps the same ``ssl.SSLObject``
over two memory BIOs but gives the connection what it has on a plain socket:

* ``send_nowait(data)``: encrypt ``data`` and make one non-blocking attempt to write
  the records (``_nowait``'s contract).  It returns ``len(data)`` when everything
  left, 0 when it took nothing (the handshake is not done, or a write is under
  way), or ``OWED`` when it took ``data`` but part of the records is still here:
  the caller must then call ``send_all`` (``b""`` will do) to flush it.  The
  plaintext is never handed back once encrypted: a record cannot be half unsent.
* ``receive_some`` reads the transport with ``_nowait.receiver`` (``os.read`` on a
  socket) and skips the decryption attempt that can only fail (no new bytes, no
  plaintext buffered), so a message costs no ``SSLWantReadError``.

What it does not do, on purpose: renegotiation (TLS 1.2 renegotiation is refused,
``OP_NO_RENEGOTIATION``; TLS 1.3 has none), half-close (``send_eof``), and waiting
in ``aclose`` for the peer: closing makes one attempt to send ``close_notify`` and
closes the transport, so a dead peer cannot hold a closing node.  The end of the
transport without ``close_notify`` is ``BrokenResourceError`` (a truncation, as
trio's ``https_compatible=False``), a ``close_notify`` is the end of the stream
(``b""``), and any TLS error is ``BrokenResourceError`` with the ``ssl.SSLError`` as
its cause.

The TLS handshake runs on first use (inside the node's handshake deadline), by
whichever of ``send_all``/``receive_some`` comes first; the other waits for it.

Bytes produced by reading (an alert, a TLS 1.3 key update answer) are written by
the reader, after any write under way: the send side has one owner at a time
(``_send_lock``), and the reader reads no more meanwhile, so a peer that makes us
write without reading what we write is held back by TCP, not by our memory.

A write or a handshake cut short (cancelled, or failed underneath) breaks the
stream for good, as with trio's ``SSLStream``: part of a record may have left, and
nothing written after it could be read.
"""

from __future__ import annotations

import contextlib
import ssl
from typing import Final

import trio

from ._base import receive_size
from ._nowait import OWED, NowaitSend, nowait_sender, receiver

__all__ = ["TLSListener", "TLSStream"]

#: Bytes asked of the transport per read: several full TLS records (16 KiB each).
_TRANSPORT_READ: Final = 65536


class TLSStream(trio.abc.Stream):
    """TLS over ``transport_stream`` (see the module docstring)."""

    send_nowait: NowaitSend | None

    def __init__(
        self, transport_stream: trio.abc.Stream, context: ssl.SSLContext, *, server_side: bool
    ) -> None:
        self.transport_stream = transport_stream
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._tls = context.wrap_bio(
            self._incoming, self._outgoing, server_side=server_side, server_hostname=None
        )
        self._raw_send = nowait_sender(transport_stream)
        self._raw_receive = receiver(transport_stream)
        # Records taken from _outgoing that the transport has not taken yet.
        self._unsent = b""
        self._ready = False
        self._handshake_lock = trio.Lock()
        self._send_lock = trio.StrictFIFOLock()
        self._sending = False  # send_all under way (trio's "one sender at a time")
        self._receiving = False
        self._closed = False
        self._eof = False  # close_notify read
        self._held = b""  # plaintext read but not returned yet (see receive_some)
        self._failure: str | None = None  # why TLS failed: every later call fails so
        # Without a way to write at once underneath, there is no fast path here either.
        self.send_nowait = self._send_nowait if self._raw_send is not None else None

    def _fail(self, exc: ssl.SSLError) -> trio.BrokenResourceError:
        # The reason is OpenSSL's (a fixed word such as WRONG_VERSION_NUMBER), never
        # the peer's bytes.
        self._failure = f"TLS failed: {exc.reason or type(exc).__name__}"
        return trio.BrokenResourceError(self._failure)

    def _interrupted(self, what: str) -> None:
        if self._failure is None:
            self._failure = f"TLS failed: {what}"

    def _check(self) -> None:
        if self._closed:
            raise trio.ClosedResourceError("the stream was closed")
        if self._failure is not None:
            raise trio.BrokenResourceError(self._failure)

    # -- the handshake --------------------------------------------------------------

    async def do_handshake(self) -> None:
        """Run the TLS handshake now (it otherwise runs on first use)."""
        self._check()
        if self._ready:
            await trio.lowlevel.checkpoint()
            return
        async with self._handshake_lock:
            while not self._ready:
                self._check()  # (a handshake this one waited for may have failed)
                want_read = False
                try:
                    self._tls.do_handshake()
                    self._ready = True
                except ssl.SSLWantReadError:
                    want_read = True
                except ssl.SSLError as exc:
                    self._send_pending_best_effort()
                    raise self._fail(exc) from exc
                try:
                    if self._outgoing.pending:
                        async with self._send_lock:
                            await self._flush()
                    if want_read:
                        await self._fill()
                except BaseException:
                    # A handshake cut short (cancelled, timed out) cannot be resumed.
                    self._interrupted("the handshake was interrupted")
                    raise

    async def _fill(self) -> None:
        data = await self._raw_receive(_TRANSPORT_READ)
        if not data:
            raise trio.BrokenResourceError("the connection ended inside TLS (no close_notify)")
        self._incoming.write(data)

    # -- sending --------------------------------------------------------------------

    def _send_nowait(self, data: bytes) -> int:
        if self._closed or self._failure is not None:
            self._check()  # (raises)
        if not self._ready or self._unsent or self._send_lock.locked():
            return 0
        try:
            self._tls.write(data)
        except ssl.SSLError as exc:
            raise self._fail(exc) from exc
        records = self._outgoing.read()
        assert self._raw_send is not None
        try:
            written = self._raw_send(records)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self._interrupted("a write failed")  # these records are lost with the link
            raise
        if written == len(records):
            return len(data)
        self._unsent = records[written:]
        return OWED

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        if self._sending:
            raise trio.BusyResourceError("another task is sending on this stream")
        self._sending = True
        try:
            self._check()
            if not self._ready:
                await self.do_handshake()
            if data:
                try:
                    self._tls.write(data)
                except ssl.SSLError as exc:
                    raise self._fail(exc) from exc
            async with self._send_lock:
                await self._flush()
        finally:
            self._sending = False

    async def _flush(self) -> None:
        """Write what is encrypted until nothing is left (``_send_lock`` held)."""
        while True:
            if self._failure is not None:  # (broken while this one waited for the lock)
                raise trio.BrokenResourceError(self._failure)
            records = self._unsent + self._outgoing.read()
            self._unsent = b""
            if not records:
                return
            try:
                await self.transport_stream.send_all(records)
            except BaseException:
                # Any part of these records may have left (a cancellation does not say
                # how much): nothing sent after it could be read, so nothing is.
                self._interrupted("a write was interrupted")
                raise

    async def wait_send_all_might_not_block(self) -> None:
        await self.transport_stream.wait_send_all_might_not_block()

    # -- receiving ------------------------------------------------------------------

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if self._receiving:
            raise trio.BusyResourceError("another task is receiving on this stream")
        self._receiving = True
        try:
            self._check()
            max_bytes = receive_size(max_bytes, _TRANSPORT_READ)
            if not self._ready:
                await self.do_handshake()
            waited = False  # (a read of the transport is the checkpoint, when there is one)
            while not self._held and not self._eof:
                # Decrypting can only succeed with new bytes or plaintext buffered.
                if not (self._incoming.pending or self._tls.pending()):
                    waited = True
                    await self._fill()
                    continue
                try:
                    self._held = self._tls.read(max_bytes)
                    # Nothing and no error: the peer's close_notify (Python's ssl
                    # says so with b"", and raises SSLZeroReturnError after it).
                    self._eof = not self._held
                except ssl.SSLWantReadError:
                    pass  # a part of a record, or a record with no data (a ticket)
                except ssl.SSLZeroReturnError:
                    self._eof = True
                except ssl.SSLError as exc:
                    self._send_pending_best_effort()
                    raise self._fail(exc) from exc
                if self._outgoing.pending:
                    # Cancelled in here, what was read stays in _held for the next call.
                    waited = True
                    await self._write_for_reader()
            if not waited:
                # Nothing was awaited: still a cancellation point (what was read stays
                # in _held) and a schedule point (below).
                await trio.lowlevel.checkpoint_if_cancelled()
            data = self._held
            if len(data) <= max_bytes:
                self._held = b""
            else:
                data, self._held = data[:max_bytes], data[max_bytes:]
            if not waited:
                # Read without waiting: still let the others run, never losing data.
                await trio.lowlevel.cancel_shielded_checkpoint()
            return data
        finally:
            self._receiving = False

    async def _write_for_reader(self) -> None:
        # Waits for a write under way: reading no more until what reading produced
        # has left (as trio's SSLStream), so a peer that sends without reading
        # (renegotiation attempts, key updates) is held back by TCP instead of
        # growing _outgoing.
        async with self._send_lock:
            await self._flush()

    def _send_pending_best_effort(self) -> None:
        """Try once, without waiting, to send what TLS wants the peer to know (an
        alert before failing, close_notify before closing)."""
        records = self._unsent + self._outgoing.read()
        self._unsent = b""
        if records and self._raw_send is not None and not self._send_lock.locked():
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                self._raw_send(records)

    # -- closing --------------------------------------------------------------------

    async def aclose(self) -> None:
        if self._closed:
            await trio.lowlevel.checkpoint()
            return
        self._closed = True
        try:
            if self._ready and not self._eof and self._failure is None:
                # close_notify is queued whatever unwrap then says (it wants the
                # peer's, which a node does not wait for).
                with contextlib.suppress(ssl.SSLError):
                    self._tls.unwrap()
                if self._raw_send is not None:
                    self._send_pending_best_effort()
                elif not self._send_lock.locked():
                    # A transport with no write that cannot wait (not a node's): the
                    # caller's cancellation bounds this one.
                    records = self._unsent + self._outgoing.read()
                    with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                        await self.transport_stream.send_all(records)
        finally:
            await self.transport_stream.aclose()


class TLSListener(trio.abc.Listener[TLSStream]):
    """Accepts ``transport_listener``'s streams as TLS servers."""

    def __init__(
        self, transport_listener: trio.abc.Listener[trio.abc.Stream], context: ssl.SSLContext
    ) -> None:
        self.transport_listener = transport_listener
        self._context = context

    async def accept(self) -> TLSStream:
        raw = await self.transport_listener.accept()
        return TLSStream(raw, self._context, server_side=True)

    async def aclose(self) -> None:
        await self.transport_listener.aclose()
