"""Length-prefixed frames: a 4-byte big-endian unsigned length, then that many bytes.

Sans-IO in the h11/wsproto style: nothing here does I/O or awaits. A connection's
reader task feeds the decoder whatever the transport hands it and drains frames::

    decoder = FrameDecoder(max_frame_size=limit)
    while data := await stream.receive_some():
        decoder.receive_data(data)
        while (frame := decoder.next_frame()) is not None:
            handle(frame)
    decoder.eof()

and a writer task batches many frames into one ``send_all(encode_frames(payloads))``.

``FrameDecoder`` state machine::

    OPEN --eof() at a frame boundary--------------------------> CLOSED
    OPEN --header over max_frame_size, or eof() mid-frame-----> ERROR

Rules:

* OPEN: ``receive_data()`` buffers bytes, however they are chunked (``b""`` is
  ignored). ``next_frame()`` returns the next complete payload, or ``None`` when it
  needs more bytes. A header is checked as soon as its 4 bytes are in: one that
  announces more than ``max_frame_size`` raises ``FrameTooLarge`` at once, before the
  body is waited for or any room is made for it, and the decoder goes to ERROR.
* ``eof()`` says the peer closed its side. If the buffered bytes end exactly on a frame
  boundary the decoder goes to CLOSED, where ``next_frame()`` still hands out frames
  already buffered and then ``None``; ``eof()`` again is a no-op. Otherwise (a partial
  header or body is left) it raises ``ProtocolError`` and goes to ERROR.
* CLOSED: ``receive_data()`` with bytes is a caller bug and raises ``RuntimeError``.
* ERROR is final: every call raises ``ProtocolError``; the connection must be dropped.

Memory: besides frames the caller has not taken yet, the decoder holds at most one
partial frame (at most ``max_frame_size + 4`` bytes) plus the last chunk it was fed.
Chunks shorter than ``_COALESCE`` bytes are copied into one ``bytearray`` rather than
kept as objects of their own: a peer that sends a frame a byte or two per segment
would otherwise make us hold some 40 bytes of object per byte received.
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Callable, Generator, Iterable
from typing import Final, NoReturn

from .errors import FrameTooLarge, ProtocolError

__all__ = [
    "HEADER_SIZE",
    "MAX_FRAME_SIZE_LIMIT",
    "FrameDecoder",
    "encode_frame",
    "encode_frame_header",
    "encode_frames",
]

HEADER_SIZE: Final = 4
MAX_FRAME_SIZE_LIMIT: Final = 0xFFFF_FFFF  # the largest length a 4-byte header can say

# Below this, a chunk is appended to a bytearray instead of kept as an object: the
# copy costs less than an object's header, and bigger chunks are never copied twice.
_COALESCE: Final = 4096

_header = struct.Struct(">I")
_pack_header = _header.pack
_unpack_header = _header.unpack_from


@functools.lru_cache(maxsize=16)
def _header_and(size: int) -> Callable[[bytes, int], tuple[int, bytes]]:
    """Unpacks a frame header and the ``size`` bytes after it (``take_run``)."""
    return struct.Struct(f">I{size}s").unpack_from


#: ``encode_frame_header(size)``: the length prefix of a payload of ``size`` bytes
#: (``struct.error`` if it does not fit in 4 bytes: check ``size`` against the frame
#: limit first).  The struct's own method, no wrapper: it is on every message's path.
encode_frame_header: Final = _pack_header


def encode_frame(payload: bytes) -> bytes:
    """Return ``payload`` with its length prefix."""
    size = len(payload)
    if size > MAX_FRAME_SIZE_LIMIT:
        raise ValueError(f"payload of {size} bytes does not fit in a frame")
    return _pack_header(size) + payload


def encode_frames(payloads: Iterable[bytes]) -> bytes:
    """Return all ``payloads`` framed, back to back, in one bytes object.

    Cheaper than joining ``encode_frame`` results: each payload is copied once.
    """
    parts: list[bytes] = []
    append = parts.append
    try:
        for payload in payloads:
            append(_pack_header(len(payload)))
            append(payload)
    except struct.error:
        raise ValueError("a payload does not fit in a frame (over 4 GiB)") from None
    return b"".join(parts)


class FrameDecoder:
    """Turns a byte stream back into frames; see the module docstring for the rules."""

    __slots__ = ("_buf", "_chunks", "_closed", "_error", "_max_frame_size", "_pending", "_pos")

    def __init__(self, max_frame_size: int) -> None:
        if isinstance(max_frame_size, bool) or not isinstance(max_frame_size, int):
            raise TypeError("max_frame_size must be an int")
        if not 0 <= max_frame_size <= MAX_FRAME_SIZE_LIMIT:
            raise ValueError(f"max_frame_size must be in 0..{MAX_FRAME_SIZE_LIMIT}")
        self._max_frame_size = max_frame_size
        # Frames are sliced out of the immutable ``_buf`` (one copy per frame, no
        # copies of the rest). Bytes that arrive later wait in ``_chunks`` and are
        # joined onto the unread tail of ``_buf`` only once the frame being read is
        # complete, so a big frame arriving in many pieces is copied O(1) times.
        self._buf = b""
        self._pos = 0
        self._chunks: list[bytes | bytearray] = []
        self._pending = 0
        self._closed = False
        self._error: ProtocolError | None = None

    @property
    def max_frame_size(self) -> int:
        return self._max_frame_size

    @property
    def buffered(self) -> int:
        """Bytes received but not yet returned as frames."""
        return len(self._buf) - self._pos + self._pending

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Buffer bytes read from the stream."""
        if self._error is not None:
            self._raise_error()
        if not data:
            return
        if self._closed:
            raise RuntimeError("receive_data() after eof()")
        chunks = self._chunks
        size = len(data)
        if size < _COALESCE:
            if chunks and type(chunks[-1]) is bytearray:
                chunks[-1] += data
            else:
                chunks.append(bytearray(data))
        else:
            chunks.append(bytes(data))
        self._pending += size

    def next_frame(self) -> bytes | None:
        """Return the next complete frame's payload, or ``None`` if more bytes are needed."""
        if self._error is not None:
            self._raise_error()
        buf = self._buf
        pos = self._pos
        avail = len(buf) - pos
        if avail < HEADER_SIZE:
            if avail + self._pending < HEADER_SIZE:
                return None
            buf, pos, avail = self._merge()
        (size,) = _unpack_header(buf, pos)
        if size > self._max_frame_size:
            self._fail(FrameTooLarge(size, self._max_frame_size))
        end = pos + HEADER_SIZE + size
        if end > len(buf):
            if avail + self._pending < HEADER_SIZE + size:
                return None
            buf, pos, avail = self._merge()
            end = HEADER_SIZE + size
        self._pos = end
        return buf[pos + HEADER_SIZE : end]

    def spans(self) -> Generator[tuple[bytes, int, int] | None, None, NoReturn]:
        """A generator to keep for the decoder's life: it yields each complete frame,
        in order, as ``(buffer, start, end)`` (its payload is ``buffer[start:end]``),
        and ``None`` whenever it needs more bytes; after ``receive_data`` the next
        ``next()`` goes on.  ``next_frame`` in a loop, but cheaper: no call per frame,
        no copy of a frame the reader only needs part of, nothing made per read.
        Each frame is taken as it is yielded.  Later chunks are joined on as
        ``next_frame`` joins them: only once they complete a header or a frame.
        Once the decoder has failed, it raises ``ProtocolError`` (and is done)."""
        while True:
            if self._error is not None:
                self._raise_error()
            limit = self._max_frame_size
            buf = self._buf
            pos = self._pos
            length = len(buf)
            stop = length - HEADER_SIZE
            partial = -1  # the size of a frame whose header is in but not its body
            while pos <= stop:
                (size,) = _unpack_header(buf, pos)
                if size > limit:
                    self._fail(FrameTooLarge(size, limit))
                start = pos + HEADER_SIZE
                end = start + size
                if end > length:
                    partial = size
                    break
                self._pos = end
                yield buf, start, end
                if self._buf is not buf:
                    break  # merged, taken or failed meanwhile: start over
                pos = self._pos  # (next_frame may have taken more meanwhile)
            if self._buf is not buf:
                continue
            # What is left of the buffer is not a whole frame: join the later chunks
            # on only if they make one (or its header) whole.
            pending = self._pending
            if pending and length - self._pos + pending >= HEADER_SIZE + max(partial, 0):
                self._merge()
            else:
                yield None

    def take_run(self, prefix: bytes, limit: int) -> list[bytes]:
        """Take the complete frames that come next, at most ``limit`` of them, as long
        as each one's payload starts with ``prefix`` and is longer than it, and return
        those payloads without ``prefix``.  A peer streaming messages to one task
        sends runs of frames that differ only after their envelope: the session reads
        the envelope once (``PeerSession.events(runs=True)``), and this loop costs a
        fraction of a ``spans()`` step per frame.

        It stops, taking nothing more and raising nothing, at the first frame that
        does not qualify, is not complete, or whose header says more than
        ``max_frame_size``: ``spans()`` or ``next_frame()`` meet that frame next and
        judge it as they would have (the errors come after the run's frames, in
        stream order).  Bytes not yet joined onto the buffer are not looked at."""
        if self._error is not None:
            self._raise_error()
        buf = self._buf
        pos = self._pos
        skip = len(prefix)
        length = len(buf)
        # (A header and a prefix shorter than that cannot start a frame to take.)
        stop = length - HEADER_SIZE - skip
        # A payload of exactly the prefix is left to the caller's general path.
        lowest = skip + 1
        highest = self._max_frame_size
        # The header and the prefix in one C call (a method call less per frame
        # than unpacking the header and testing startswith).
        unpack = _header_and(skip)
        taken: list[bytes] = []
        append = taken.append
        for _ in range(limit):
            if pos > stop:
                break
            size, head = unpack(buf, pos)
            start = pos + HEADER_SIZE
            end = start + size
            if head != prefix or not lowest <= size <= highest or end > length:
                break
            append(buf[start + skip : end])
            pos = end
        self._pos = pos
        return taken

    def take_unread(self) -> bytes:
        """Hand over every byte received but not yet returned as a frame, and forget
        them (the handshake passes what follows it to the session's own decoder)."""
        if self._error is not None:
            self._raise_error()
        if self._pending:
            self._merge()
        unread = self._buf[self._pos :]
        self._buf = b""
        self._pos = 0
        return unread

    def eof(self) -> None:
        """The peer closed; raise ``ProtocolError`` if it did so in the middle of a frame."""
        if self._error is not None:
            self._raise_error()
        if self._closed:
            return
        self._closed = True
        if self._pending:
            self._merge()
        buf = self._buf
        pos = self._pos
        # Walk the headers of frames nobody has taken yet: only a partial one is an error.
        while pos < len(buf):
            if len(buf) - pos < HEADER_SIZE:
                self._fail(
                    ProtocolError(
                        f"connection closed in a frame header ({len(buf) - pos} of "
                        f"{HEADER_SIZE} bytes)"
                    )
                )
            (size,) = _unpack_header(buf, pos)
            if size > self._max_frame_size:
                self._fail(FrameTooLarge(size, self._max_frame_size))
            got = len(buf) - pos - HEADER_SIZE
            if got < size:
                self._fail(ProtocolError(f"connection closed in a frame ({got} of {size} bytes)"))
            pos += HEADER_SIZE + size

    def _merge(self) -> tuple[bytes, int, int]:
        chunks = self._chunks
        if self._pos == len(self._buf) and len(chunks) == 1:
            # Frames are slices of _buf: it must be bytes, never a bytearray.
            self._buf = bytes(chunks[0])
        else:
            chunks.insert(0, self._buf[self._pos :])
            self._buf = b"".join(chunks)
        self._pos = 0
        self._chunks = []
        self._pending = 0
        return self._buf, 0, len(self._buf)

    def _fail(self, error: ProtocolError) -> NoReturn:
        self._error = error
        self._buf = b""
        self._pos = 0
        self._chunks = []
        self._pending = 0
        raise error

    def _raise_error(self) -> NoReturn:
        assert self._error is not None
        raise ProtocolError(f"frame decoder failed earlier: {self._error}") from self._error
