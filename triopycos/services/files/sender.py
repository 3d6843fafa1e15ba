"""The sending side of the file service: ``send_file`` and ``del_file``.

Every operation has its own fresh, authenticated connection (TLS if the node uses
it, ``PeerManager.open_file_connection``), so a big file never sits in front of a
peer's messages.  ``timeout`` bounds each step (connecting, each chunk, each reply;
pycos's "seconds to transfer one chunk").  Reading the file follows ``disk.py``:
from the page cache in the trio thread when that cannot wait, else in a worker
thread.  What fails is logged and returned as -1, as the spec says.
"""

from __future__ import annotations

import logging
import math
import os
import stat
from collections.abc import Callable
from io import FileIO

import trio

from ..._task_arguments import check_timeout
from ...protocol.errors import ProtocolError
from ...protocol.files import (
    MAX_CONTROL_FRAME,
    DeleteRequest,
    Done,
    Exists,
    Go,
    Refused,
    Reply,
    Same,
    SendRequest,
    chunk_buffer,
    encode_delete_request,
    encode_end,
    encode_send_request,
    parse_reply,
)
from ...protocol.framing import HEADER_SIZE, FrameDecoder
from ...protocol.printable import escape
from ...transport.errors import STREAM_ERRORS
from ...values import Location
from ..peers import PeerManager
from .disk import HAVE_NOWAIT, SourceFailed, open_regular, pread_nowait, read_fully, reading_source

__all__ = ["FileSender", "del_file", "send_file"]

log = logging.getLogger("triopycos.files")

#: Chunks the sender asks the kernel to read ahead after a read that had to wait.
_READ_AHEAD = 4
#: How long a refusal may take to arrive after a write failed (the receiver says
#: why before it closes, if it can).
_REFUSAL_WAIT = 1.0


class FileSender:
    """The sending side of one operation (``send`` or ``delete``) to the node at
    ``location``.  ``timeout`` bounds each step (connecting, each chunk, each reply;
    pycos's "seconds to transfer one chunk"); None means ``file_idle_timeout``.
    Subclasses may override ``send_chunks`` (the tests do, to misbehave)."""

    def __init__(
        self,
        peers: PeerManager,
        location: Location,
        timeout: float | None,
        progress: Callable[[int, int], object] | None = None,
    ) -> None:
        self.peers = peers
        self.location = location
        self.timeout = timeout
        self.progress = progress
        self.step = peers.limits.file_idle_timeout if timeout is None else timeout
        self.chunk_size = peers.limits.file_chunk_size

    async def send(
        self, file: str | os.PathLike[str], dir: str | None, overwrite: bool
    ) -> int | os.stat_result:
        path = os.fspath(file)
        name = os.path.basename(path)
        try:
            with reading_source():
                f, st = await trio.to_thread.run_sync(open_regular, path)
        except SourceFailed as exc:
            log.warning("send_file: cannot send %r: %s", path, exc)
            return -1
        try:
            request = SendRequest(
                name=name,
                dir=dir,
                size=st.st_size,
                mode=stat.S_IMODE(st.st_mode),
                atime_ns=st.st_atime_ns,
                mtime_ns=st.st_mtime_ns,
                overwrite=overwrite,
                # The receiver's step bound (it never waits longer than its own).
                timeout=self.timeout if self.timeout and math.isfinite(self.timeout) else None,
            )
            result = await self._run(encode_send_request(request), f, st.st_size)
        finally:
            f.close()
        if result is None:
            log.warning("send_file %r to %s: timed out", path, self.location)
            return -1
        return result

    async def delete(self, file: str | os.PathLike[str], dir: str | None) -> int:
        name = os.path.basename(os.fspath(file))
        result = await self._run(encode_delete_request(DeleteRequest(name, dir)), None, 0)
        if result is None:
            log.warning("del_file %r to %s: timed out", name, self.location)
            return -1
        assert isinstance(result, int)
        return result

    async def _run(
        self, request: bytes, f: FileIO | None, size: int
    ) -> int | os.stat_result | None:
        """The exchange: its result, or None when a step timed out."""
        with trio.CancelScope(deadline=trio.current_time() + self.step) as idle:
            opened = await self.peers.open_file_connection(self.location)
            if opened is None:
                return -1
            stream, authenticated = opened
            decoder = FrameDecoder(MAX_CONTROL_FRAME)
            decoder.receive_data(authenticated.leftover)
            try:
                await stream.send_all(request)
                reply = await _reply(stream, decoder)
                if isinstance(reply, Go) and f is not None:
                    chunk = min(self.chunk_size, reply.max_chunk)
                    try:
                        await self.send_chunks(stream, f, size, chunk, idle)
                    except STREAM_ERRORS:
                        # The receiver may have said why before closing.
                        reason = await _late_refusal(stream, decoder)
                        if reason is None:
                            raise
                        reply = Refused(reason)
                    else:
                        await stream.send_all(encode_end())
                        reply = await _reply(stream, decoder)
                return self._outcome(reply, f is not None)
            except (*STREAM_ERRORS, SourceFailed) as exc:
                log.warning("file operation with %s failed: %s", self.location, exc)
                return -1
            except ProtocolError as exc:
                log.warning("file operation with %s: bad reply: %s", self.location, exc)
                return -1
            finally:
                with trio.CancelScope(shield=True):
                    await trio.aclose_forcefully(stream)
        assert idle.cancelled_caught
        return None

    def _outcome(self, reply: Reply, sending: bool) -> int | os.stat_result:
        if isinstance(reply, Done):
            return 0
        if isinstance(reply, Refused):
            log.warning(
                "%s refused by %s: %s",
                "file" if sending else "deletion",
                self.location,
                escape(reply.reason, 300),  # the receiver's own words
            )
            return -1
        if sending and isinstance(reply, Same):
            return 1
        if sending and isinstance(reply, Exists):
            return reply.stat
        log.warning("unexpected reply from %s: %s", self.location, type(reply).__name__)
        return -1

    async def send_chunks(
        self,
        stream: trio.abc.Stream,
        f: FileIO,
        size: int,
        chunk: int,
        idle: trio.CancelScope,
    ) -> None:
        """Stream ``size`` bytes of ``f`` in frames of at most ``chunk`` bytes, moving
        the idle deadline on after each."""
        fd = f.fileno()
        progress = self.progress
        if progress is not None:
            progress(0, size)
        offset = 0
        nowait = HAVE_NOWAIT
        while offset < size:
            count = min(chunk, size - offset)
            frame = chunk_buffer(count)
            body = memoryview(frame)[HEADER_SIZE:]
            try:
                got = 0
                with reading_source():
                    if nowait:
                        got = pread_nowait(fd, body, offset)
                        if got < 0:  # this file system cannot say: threads from now on
                            nowait = False
                            got = 0
                    if got < count:
                        await trio.to_thread.run_sync(
                            read_fully, f, body[got:], offset + got, chunk * _READ_AHEAD
                        )
            finally:
                body.release()  # the frame is sent as a whole: no view of it may stay
            await stream.send_all(frame)
            offset += count
            idle.deadline = trio.current_time() + self.step
            if progress is not None:
                progress(offset, size)


async def _reply(stream: trio.abc.Stream, decoder: FrameDecoder) -> Reply:
    while (frame := decoder.next_frame()) is None:
        data = await stream.receive_some(MAX_CONTROL_FRAME)
        if not data:
            raise trio.BrokenResourceError("the receiver closed the connection")
        decoder.receive_data(data)
    return parse_reply(frame)


async def _late_refusal(stream: trio.abc.Stream, decoder: FrameDecoder) -> str | None:
    """After a failed write: the refusal the receiver sent before closing, if any."""
    with trio.move_on_after(_REFUSAL_WAIT):
        try:
            reply = await _reply(stream, decoder)
        except (*STREAM_ERRORS, ProtocolError):
            return None
        return reply.reason if isinstance(reply, Refused) else None
    return None


def _wire_dir(dir: str | os.PathLike[str] | None) -> str | None:
    """``dir`` with "/" between folders (the wire's separator), or None."""
    if dir is None:
        return None
    text = os.fspath(dir)
    if not isinstance(text, str):
        raise TypeError(f"dir must be a str or None, not {type(dir).__name__}")
    for sep in (os.sep, os.altsep):
        if sep and sep != "/":
            text = text.replace(sep, "/")
    return text or None


def _check_args(location: object, file: object, timeout: float | None) -> None:
    if not isinstance(location, Location):
        raise TypeError(f"location must be a Location, not {type(location).__name__}")
    if not isinstance(file, (str, os.PathLike)):
        raise TypeError(f"file must be a path, not {type(file).__name__}")
    check_timeout(timeout)


async def send_file(
    peers: PeerManager | None,
    location: Location,
    file: str | os.PathLike[str],
    dir: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
    timeout: float | None = None,
    *,
    progress: Callable[[int, int], object] | None = None,
) -> int | os.stat_result:
    """``Pycos.send_file``: 0, 1, an ``os.stat_result`` or -1 (see docs/files.md).
    ``progress(sent, total)`` is called as the content goes out."""
    _check_args(location, file, timeout)
    if progress is not None and not callable(progress):
        raise TypeError(f"progress must be callable or None, not {type(progress).__name__}")
    wire_dir = _wire_dir(dir)
    if peers is None:
        await trio.lowlevel.checkpoint()
        return -1
    sender = FileSender(peers, location, timeout, progress)
    return await sender.send(file, wire_dir, bool(overwrite))


async def del_file(
    peers: PeerManager | None,
    location: Location,
    file: str | os.PathLike[str],
    dir: str | os.PathLike[str] | None = None,
    timeout: float | None = None,
) -> int:
    """``Pycos.del_file``: 0 or -1."""
    _check_args(location, file, timeout)
    wire_dir = _wire_dir(dir)
    if peers is None:
        await trio.lowlevel.checkpoint()
        return -1
    return await FileSender(peers, location, timeout).delete(file, wire_dir)
