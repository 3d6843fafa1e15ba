"""The file-transfer protocol, sans-IO: what goes over a connection whose handshake
said purpose "file".  One operation per connection; every frame is length-prefixed
(``framing``); control frames are CBOR lists, chunk frames are raw bytes.

::

    sender                                              receiver
      ["send", {name, dir, size, mode, atime_ns,  ---->
                mtime_ns, overwrite, timeout}]
                                                  <----  ["same"]          (1: nothing to do)
                                                  <----  ["exists", stat]  (differs, no overwrite)
                                                  <----  ["refused", why]
                                                  <----  ["go", max_chunk]
      chunk frames: raw bytes, each 1..max_chunk  ---->
      ["end"]                                      ---->
                                                  <----  ["done"] | ["refused", why]

      ["delete", {name, dir}]                     ---->
                                                  <----  ["done"] | ["refused", why]

``FileReceiving`` is the receiver's state machine::

    REQUEST --request frame--> DECIDING --go()--> CHUNKS --size bytes in--> END
    END --["end"]--> ENDED;  same()/exists() in DECIDING, done() in DECIDING or
    ENDED, refuse() anywhere -> DONE
    anything malformed, oversized or unexpected raises and the machine goes to ERROR

Rules:

* Control frames (requests, replies, end) are at most ``MAX_CONTROL_FRAME`` bytes.
* In CHUNKS every frame is content.  Its header is checked as soon as its 4 bytes are
  in: an empty chunk, one over ``max_chunk`` (announced in ``go``), or one that takes
  the total past the announced size (or past ``max_size``) raises ``FileRefused``
  before a byte of its body is accepted: a sender that lies about the size is cut
  off at the first chunk that would exceed it.  The body is handed out as ``Data``
  events, views of the received bytes (no copies), as soon as they arrive.
* After the last announced byte the machine goes to END: the next frame must be
  ``["end"]``.
* There is no checksum of the content: the transport already guarantees it, as for
  every message (TCP checksums each segment, TLS authenticates every record), the
  byte count is exact, and a digest that travels with the data, unkeyed, proves
  nothing against someone who can change the data.  (A sha256 on both sides, in an
  earlier version, halved the throughput of a 2-core machine.)
* Names are checked here, without touching the file system (``check_path``): ``dir``
  must be relative with no ``..`` component; ``name`` must be a plain base name.
  The service adds the checks that need the file system (symlinks).
"""

from __future__ import annotations

import enum
import math
import os
import re
import struct
from collections import deque
from dataclasses import dataclass
from typing import Any, Final

from .codec import Codec
from .errors import DecodeError, ProtocolError
from .framing import HEADER_SIZE, FrameDecoder, encode_frame
from .printable import describe, escape

__all__ = [
    "MAX_CONTROL_FRAME",
    "Data",
    "DeleteRequest",
    "Done",
    "End",
    "Exists",
    "FileReceiving",
    "FileRefused",
    "Go",
    "Refused",
    "Same",
    "SendRequest",
    "check_path",
    "chunk_buffer",
    "encode_delete_request",
    "encode_end",
    "encode_send_request",
    "make_stat_result",
    "parse_reply",
    "stat_fields",
]

#: Control frames (requests, replies) are small; nothing bigger is decoded as CBOR.
MAX_CONTROL_FRAME: Final = 64 * 1024
_INT64: Final = 1 << 63
_STAT_KEYS: Final = (
    "mode",
    "ino",
    "dev",
    "nlink",
    "uid",
    "gid",
    "size",
    "atime_ns",
    "mtime_ns",
    "ctime_ns",
)
# A plain codec (no references to resolve): control frames hold only str, int, float,
# bool, None and bytes, and every field is type-checked after decoding.
_codec = Codec()
_SEND_KEYS: Final = frozenset(
    {"name", "dir", "size", "mode", "atime_ns", "mtime_ns", "overwrite", "timeout"}
)
_drive = re.compile(r"^[A-Za-z]:")
_unpack_header = struct.Struct(">I").unpack  # framing's header: 4-byte big-endian length


class FileRefused(ProtocolError):
    """A file request this node will not carry out; ``reason`` goes back to the sender."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# -- requests -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SendRequest:
    name: str
    dir: str | None
    size: int
    mode: int
    atime_ns: int
    mtime_ns: int
    overwrite: bool
    timeout: float | None


@dataclass(frozen=True, slots=True)
class DeleteRequest:
    name: str
    dir: str | None


def encode_send_request(request: SendRequest) -> bytes:
    """The framed request that opens a transfer."""
    fields = {
        "name": request.name,
        "dir": request.dir,
        "size": request.size,
        "mode": request.mode,
        "atime_ns": request.atime_ns,
        "mtime_ns": request.mtime_ns,
        "overwrite": request.overwrite,
        "timeout": request.timeout,
    }
    return encode_frame(_codec.encode(["send", fields]))


def encode_delete_request(request: DeleteRequest) -> bytes:
    return encode_frame(_codec.encode(["delete", {"name": request.name, "dir": request.dir}]))


def encode_end() -> bytes:
    """The frame that follows the last chunk."""
    return encode_frame(_codec.encode(["end"]))


def chunk_buffer(size: int) -> bytearray:
    """A buffer for one chunk frame: the length prefix is already written, the caller
    fills the ``size`` bytes after ``HEADER_SIZE`` (a file is read straight into the
    frame, with no copy to add the prefix)."""
    buf = bytearray(HEADER_SIZE + size)
    struct.pack_into(">I", buf, 0, size)  # framing's header
    return buf


# -- replies --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Same:
    """The same file (size, mtime, masked mode) is already there."""


@dataclass(frozen=True, slots=True)
class Exists:
    """A different file is there and overwrite was not asked for."""

    stat: os.stat_result


@dataclass(frozen=True, slots=True)
class Go:
    """Send the content, in chunks of at most ``max_chunk`` bytes."""

    max_chunk: int


@dataclass(frozen=True, slots=True)
class Done:
    pass


@dataclass(frozen=True, slots=True)
class Refused:
    reason: str


Reply = Same | Exists | Go | Done | Refused


def stat_fields(st: os.stat_result) -> dict[str, int]:
    """What the receiver tells about an existing file (the ``exists`` reply)."""
    return {
        "mode": st.st_mode,
        "ino": st.st_ino,
        "dev": st.st_dev,
        "nlink": st.st_nlink,
        "uid": st.st_uid,
        "gid": st.st_gid,
        "size": st.st_size,
        "atime_ns": st.st_atime_ns,
        "mtime_ns": st.st_mtime_ns,
        "ctime_ns": st.st_ctime_ns,
    }


def make_stat_result(fields: dict[str, int]) -> os.stat_result:
    """A real ``os.stat_result`` from the receiver's fields: the ten sequence fields
    (whole seconds, as ``os.stat`` gives them), then the float times and the
    nanosecond times; fields the platform adds beyond those are None."""
    a, m, c = fields["atime_ns"], fields["mtime_ns"], fields["ctime_ns"]
    seq = (
        fields["mode"],
        fields["ino"],
        fields["dev"],
        fields["nlink"],
        fields["uid"],
        fields["gid"],
        fields["size"],
        a // 1_000_000_000,
        m // 1_000_000_000,
        c // 1_000_000_000,
    )
    return os.stat_result((*seq, a / 1e9, m / 1e9, c / 1e9, a, m, c))


def _reply_frame(*items: Any) -> bytes:
    return encode_frame(_codec.encode(list(items)))


def parse_reply(payload: bytes) -> Reply:
    """Decode one reply frame (sender side); ``ProtocolError`` if it is not one."""
    message = _decode_control(payload)
    head, rest = message[0], message[1:]
    if head == "same" and not rest:
        return Same()
    if head == "done" and not rest:
        return Done()
    if head == "go" and len(rest) == 1 and _is_int(rest[0]) and 0 < rest[0] <= 0xFFFF_FFFF:
        return Go(rest[0])
    if head == "refused" and len(rest) == 1 and isinstance(rest[0], str):
        return Refused(rest[0][:1000])
    if head == "exists" and len(rest) == 1 and isinstance(rest[0], dict):
        fields = rest[0]
        if set(fields) == set(_STAT_KEYS) and all(
            _is_int(v) and -_INT64 <= v < _INT64 for v in fields.values()
        ):
            return Exists(make_stat_result(fields))
    raise ProtocolError(f"not a file-transfer reply: {describe(head)} with {len(rest)} fields")


# -- names ----------------------------------------------------------------------------


def check_path(dir: str | None, name: str) -> tuple[list[str], str]:
    """The folders under ``dest_path`` and the file name a request names, or
    ``FileRefused``.  ``dir`` uses "/" between folders; empty and "." parts are
    dropped; an absolute ``dir`` (or one with a drive) and any ".." part are refused;
    ``name`` must be a plain base name (no separator, not "." or "..").  A name may
    contain ".." inside it ("v1..2.txt"): only a ".." *part* climbs."""
    if not isinstance(name, str) or not name or name in (".", ".."):
        raise FileRefused(f"file name {describe(name)} is not a plain base name")
    if "/" in name or "\\" in name or "\0" in name or _drive.match(name):
        raise FileRefused(f"file name {describe(name)} is not a plain base name")
    if dir is None:
        return [], name
    if not isinstance(dir, str):
        raise FileRefused("dir is not a str")
    if dir.startswith(("/", "\\")) or _drive.match(dir) or os.path.isabs(dir):
        raise FileRefused(f"dir {describe(dir)} is absolute")
    if "\\" in dir or "\0" in dir:
        raise FileRefused(f"dir {describe(dir)} holds a backslash or NUL")
    parts = [part for part in dir.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise FileRefused(f"dir {describe(dir)} climbs with '..'")
    return parts, name


# -- the receiver's state machine -----------------------------------------------------


@dataclass(frozen=True, slots=True)
class Data:
    """A piece of the content (a view of received bytes); ``chunk_end``: it ends a
    chunk frame."""

    data: memoryview
    chunk_end: bool


@dataclass(frozen=True, slots=True)
class End:
    """The sender's end frame: the content is complete."""


Event = SendRequest | DeleteRequest | Data | End


class _State(enum.Enum):
    REQUEST = enum.auto()
    DECIDING = enum.auto()
    CHUNKS = enum.auto()
    END = enum.auto()
    ENDED = enum.auto()
    DONE = enum.auto()
    ERROR = enum.auto()


class FileReceiving:
    """The receiving side of one file connection; see the module docstring."""

    def __init__(self, max_chunk: int) -> None:
        if isinstance(max_chunk, bool) or not isinstance(max_chunk, int) or max_chunk < 1:
            raise ValueError("max_chunk must be an int >= 1")
        self._max_chunk = max_chunk
        # Control frames go through a FrameDecoder; chunk frames do not: their bodies
        # are handed out as views of the very bytes objects the transport gave us
        # (no joining, no slicing copies), and each header is checked on arrival.
        self._decoder = FrameDecoder(MAX_CONTROL_FRAME)
        self._pieces: deque[memoryview] = deque()
        self._buffered = 0
        self._frame_left = 0  # body bytes of the current chunk frame still to come
        self._state = _State.REQUEST
        self._size = 0
        self._max_size: int | None = None
        #: Content bytes announced by the chunk headers so far (all checked).
        self.accepted = 0

    @property
    def max_chunk(self) -> int:
        return self._max_chunk

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        if self._state is _State.CHUNKS:
            if data:
                # A bytes object is kept as it is; anything mutable is copied, since
                # the caller may reuse it.
                self._pieces.append(memoryview(data if type(data) is bytes else bytes(data)))
                self._buffered += len(data)
        else:
            self._decoder.receive_data(data)

    def content_to_come(self) -> int:
        """A lower bound of the content bytes not received yet (0 outside CHUNKS):
        a reader may wait for that many without waiting for bytes that never come."""
        if self._state is not _State.CHUNKS:
            return 0
        handed_out = self.accepted - self._frame_left
        # Buffered bytes may include chunk headers: counting them all as content
        # only lowers the bound.
        return max(0, self._size - handed_out - self._buffered)

    def eof(self) -> None:
        """The sender closed its side: a ``ProtocolError`` unless we are done."""
        if self._state not in (_State.ENDED, _State.DONE):
            self._state = _State.ERROR
            raise ProtocolError("connection closed in the middle of the operation")

    def next_event(self) -> Event | None:
        """The next request, piece of content or end; None when more bytes are needed."""
        state = self._state
        try:
            if state is _State.CHUNKS:
                return self._data()
            if state not in (_State.REQUEST, _State.END):
                raise RuntimeError(f"next_event() in state {state.name}")
            frame = self._decoder.next_frame()
            if frame is None:
                return None
            if state is _State.REQUEST:
                request = _parse_request(_decode_control(frame))
                self._state = _State.DECIDING
                return request
            message = _decode_control(frame)
            if message != ["end"]:
                raise ProtocolError(f"expected ['end'], got {describe(message[0])}")
            self._state = _State.ENDED
            return End()
        except ProtocolError:
            self._state = _State.ERROR
            raise

    def _data(self) -> Data | None:
        if self._frame_left == 0:
            header = self._take_header()
            if header is None:
                return None
            self._check_chunk(header)
            self._frame_left = header
        if not self._pieces:
            return None
        piece = self._pieces[0]
        if len(piece) <= self._frame_left:
            self._pieces.popleft()
        else:
            self._pieces[0] = piece[self._frame_left :]
            piece = piece[: self._frame_left]
        self._buffered -= len(piece)
        self._frame_left -= len(piece)
        chunk_end = self._frame_left == 0
        if chunk_end and self.accepted == self._size:
            self._to_end()
        return Data(piece, chunk_end)

    def _take_header(self) -> int | None:
        if self._buffered < HEADER_SIZE:
            return None
        first = self._pieces[0]
        if len(first) >= HEADER_SIZE:
            raw = first[:HEADER_SIZE].tobytes()
            rest = first[HEADER_SIZE:]
            if rest:
                self._pieces[0] = rest
            else:
                self._pieces.popleft()
        else:  # the header straddles pieces (rare): gather its 4 bytes
            raw = b""
            while len(raw) < HEADER_SIZE:
                piece = self._pieces.popleft()
                need = HEADER_SIZE - len(raw)
                raw += piece[:need].tobytes()
                if len(piece) > need:
                    self._pieces.appendleft(piece[need:])
        self._buffered -= HEADER_SIZE
        (size,) = _unpack_header(raw)
        return int(size)

    def _check_chunk(self, size: int) -> None:
        """A chunk header, checked before any byte of its body is accepted."""
        if size == 0:
            raise FileRefused("empty chunk")
        if size > self._max_chunk:
            raise FileRefused(f"chunk of {size} bytes, over the {self._max_chunk} announced")
        total = self.accepted + size
        if total > self._size:
            raise FileRefused(f"sender sent more than the {self._size} bytes it announced")
        if self._max_size is not None and total > self._max_size:
            raise FileRefused(f"file exceeds max_file_size ({self._max_size} bytes)")
        self.accepted = total

    def _to_end(self) -> None:
        """All content is in: what follows is control frames again."""
        self._state = _State.END
        for piece in self._pieces:
            self._decoder.receive_data(piece)
        self._pieces.clear()
        self._buffered = 0

    # -- answers (each returns the frame to send) --------------------------------------

    def go(self, size: int, max_size: int | None) -> bytes:
        """Accept the transfer of ``size`` bytes (at most ``max_size`` will be taken,
        whatever was announced)."""
        self._expect(_State.DECIDING)
        self._size = size
        self._max_size = max_size
        if size > 0:
            self._state = _State.CHUNKS
            # Bytes that came early (a sender that did not wait for "go") are content.
            unread = self._decoder.take_unread()
            if unread:
                self.receive_data(unread)
        else:
            self._state = _State.END
        return _reply_frame("go", self._max_chunk)

    def same(self) -> bytes:
        self._expect(_State.DECIDING)
        self._state = _State.DONE
        return _reply_frame("same")

    def exists(self, st: os.stat_result) -> bytes:
        self._expect(_State.DECIDING)
        self._state = _State.DONE
        return _reply_frame("exists", stat_fields(st))

    def done(self) -> bytes:
        """The operation succeeded (a delete, or a transfer after its end frame)."""
        if self._state is not _State.ENDED:
            self._expect(_State.DECIDING)
        self._state = _State.DONE
        return _reply_frame("done")

    def refuse(self, reason: str) -> bytes:
        """Refuse (from any state): the connection is to be closed after this."""
        self._state = _State.DONE
        return _reply_frame("refused", reason)

    def _expect(self, state: _State) -> None:
        if self._state is not state:
            raise RuntimeError(f"in state {self._state.name}, not {state.name}")


# -- decoding helpers -----------------------------------------------------------------


def _is_int(value: object) -> bool:
    return type(value) is int


def _decode_control(payload: bytes) -> list[Any]:
    try:
        message = _codec.decode(payload)
    except DecodeError as exc:
        raise ProtocolError(f"undecodable control frame: {exc}") from exc
    if type(message) is not list or not message or not isinstance(message[0], str):
        raise ProtocolError("a control frame is not a list starting with a str")
    return message


def _field(fields: dict[Any, Any], key: str, check: Any, what: str) -> Any:
    value = fields.get(key)
    if not check(value):
        raise ProtocolError(f"request field {key!r} is not {what}: {describe(value)}")
    return value


def _field_names(fields: dict[Any, Any]) -> str:
    # Never str() of a key: it may be any value (a bignum, a deep structure).
    names = [key if type(key) is str else f"<{type(key).__name__}>" for key in fields]
    return escape(", ".join(sorted(names)))


def _parse_request(message: list[Any]) -> SendRequest | DeleteRequest:
    if len(message) != 2 or type(message[1]) is not dict:
        raise ProtocolError("a request is [op, {fields}]")
    op, fields = message
    text = "a str"

    def is_str(v: object) -> bool:
        return type(v) is str

    def is_dir(v: object) -> bool:
        return v is None or type(v) is str

    name = _field(fields, "name", is_str, text)
    dir = _field(fields, "dir", is_dir, "a str or None")
    if op == "delete":
        if fields.keys() != {"name", "dir"}:
            raise ProtocolError(f"unexpected delete fields: {_field_names(fields)}")
        return DeleteRequest(name, dir)
    if op != "send":
        raise ProtocolError(f"unknown file operation {describe(op)}")
    if fields.keys() != _SEND_KEYS:
        raise ProtocolError(f"unexpected send fields: {_field_names(fields)}")

    def is_size(v: object) -> bool:
        return type(v) is int and 0 <= v < _INT64

    def is_mode(v: object) -> bool:
        return type(v) is int and 0 <= v <= 0o7777

    def is_time(v: object) -> bool:
        return type(v) is int and -_INT64 <= v < _INT64

    def is_timeout(v: object) -> bool:
        if v is None:
            return True
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            return False
        return math.isfinite(v) and v > 0

    return SendRequest(
        name=name,
        dir=dir,
        size=_field(fields, "size", is_size, "a size"),
        mode=_field(fields, "mode", is_mode, "a permission mode"),
        atime_ns=_field(fields, "atime_ns", is_time, "a time in ns"),
        mtime_ns=_field(fields, "mtime_ns", is_time, "a time in ns"),
        overwrite=_field(fields, "overwrite", lambda v: type(v) is bool, "a bool"),
        timeout=_field(fields, "timeout", is_timeout, "None or seconds > 0"),
    )
