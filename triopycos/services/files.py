"""File transfer: ``send_file`` / ``del_file`` (the sender) and the receiver that
``PeerManager`` hands every connection whose hello said purpose "file".

Every operation has its own fresh, authenticated connection (TLS if the node uses
it), so a big file never sits in front of a peer's messages.  The wire rules are in
``protocol/files.py``; this module does the I/O and the file-system rules:

* Blocking file work never runs in the node's trio thread.  The receiver writes in
  a worker thread that stays up for the transfer (``thread_stage``), so the network
  and the disk work at the same time.  The sender reads a chunk in the trio thread
  only when the kernel says it can do so without waiting (``RWF_NOWAIT``: the bytes
  are in the page cache, which is a memory copy); anything else is read in a worker
  thread, which also asks the kernel to read ahead.
* Content goes to a hidden temporary file in the destination folder
  (``.triopycos-<random>.part``, mode 0600) and is renamed over the target with
  ``os.replace`` only when every announced byte has arrived and the sender has said
  the content is complete.  Any other ending (refusal, timeout, connection loss, cancellation)
  removes the temporary file and any folder the transfer created, so nothing is
  left behind.
* The target must stay inside ``dest_path``: besides the name checks of the
  protocol layer, the real path (symlinks resolved) of the folder and of the target
  must have ``realpath(dest_path)`` as their common path (``os.path.commonpath``,
  not a string prefix: ``/tmp/x-evil`` is not inside ``/tmp/x``).
* The modification time is kept (nanoseconds); the permission bits are kept after
  masking with ``MODE_MASK`` (no setuid, setgid, sticky or world-write bits).
* Limits (``Limits``): at most ``max_file_transfers`` transfers at once (more are
  refused), ``file_chunk_size`` bytes per chunk, and ``file_idle_timeout`` seconds
  for each step (the request, each chunk, each reply).  A sender may ask for a
  shorter step bound with ``timeout``; the receiver never waits longer than its own.
"""

from __future__ import annotations

import contextlib
import errno
import io
import logging
import math
import os
import secrets
import stat
from collections.abc import AsyncGenerator, Callable, Iterator
from contextlib import aclosing
from dataclasses import dataclass
from typing import Protocol, TypeVar, TypeVarTuple, Unpack

import trio

from .._location import Location
from .._task import check_timeout
from ..protocol.errors import ProtocolError
from ..protocol.files import (
    MAX_CONTROL_FRAME,
    Data,
    DeleteRequest,
    Done,
    End,
    Event,
    Exists,
    FileReceiving,
    FileRefused,
    Go,
    Refused,
    Reply,
    Same,
    SendRequest,
    check_path,
    chunk_buffer,
    encode_delete_request,
    encode_end,
    encode_send_request,
    parse_reply,
)
from ..protocol.framing import HEADER_SIZE, FrameDecoder
from ..protocol.handshake import Authenticated
from ..protocol.printable import describe, escape
from ..transport import plain_socket_fd
from ._failures import failure_text
from .bulk_receive import MAX_PIECES, STALLED, receive_in_thread
from .peers import Limits, PeerManager
from .thread_stage import ThreadStage, thread_stage

__all__ = [
    "MODE_MASK",
    "FileReceiver",
    "FileSender",
    "FileSettings",
    "FileStatistics",
    "del_file",
    "send_file",
]

log = logging.getLogger("triopycos.files")

#: Permission bits a received file keeps: read/write/execute for owner, group and
#: others, minus world-write; never setuid, setgid or sticky (a peer must not be able
#: to plant a set-id program or a file anyone may rewrite).
MODE_MASK = 0o777 & ~0o002
#: Modification times within this many nanoseconds count as the same (file systems
#: that keep 100 ns, like NTFS, still match a sender's nanoseconds).
MTIME_SLACK_NS = 1_000
#: Bytes asked of the transport per read.
_RECEIVE_SIZE = 256 * 1024
#: Bytes of content handed to the writer thread at a time.
_BATCH = 1024 * 1024
#: Batches handed to the writer thread and not yet written (each about ``_BATCH``).
_WRITE_DEPTH = 3
#: Chunks the sender asks the kernel to read ahead after a read that had to wait.
_READ_AHEAD = 4
#: Reads that only take what the page cache holds (Linux 4.14+).
_RWF_NOWAIT: int = getattr(os, "RWF_NOWAIT", 0)
_HAVE_NOWAIT = bool(_RWF_NOWAIT) and hasattr(os, "preadv")
_HAVE_FADVISE = hasattr(os, "posix_fadvise")
#: Bytes per write system call.  Linux sizes the page cache's folios by the length
#: of the write; a 1 MiB write asks for high-order pages, which on a VM whose memory
#: the host backs on first touch come from memory never touched before: measured on
#: this project's 2-core VM, writing 256 MiB then took 0.3-0.75 s of system time
#: instead of 0.07 s, in about half the runs.  128 KiB writes never did, and cost 8
#: system calls per MiB.
_WRITE_SIZE = 128 * 1024
#: How long a refusal may take to send (the sender may have stopped reading).
_REFUSAL_SEND_TIMEOUT = 1.0

T = TypeVar("T")
Ts = TypeVarTuple("Ts")


def masked_mode(mode: int) -> int:
    """The permission bits a received file gets (see ``MODE_MASK``)."""
    return mode & MODE_MASK


class FileSettings(Protocol):
    """Where received files go and how big they may be (the node's attributes, read
    at each request, so changing them on a running node takes effect)."""

    dest_path: str
    max_file_size: int | None


@dataclass
class FileStatistics:
    """Counters of the file service (``received`` and ``refused`` are in
    ``Pycos.statistics()`` as ``files_received`` and ``files_refused``)."""

    received: int = 0
    #: Requests (transfers or deletions) this node did not carry out: refused,
    #: cut off (too big, timed out, malformed) or broken off by the connection.
    refused: int = 0
    deleted: int = 0
    #: Transfers in progress now.
    active: int = 0


# -- the receiver ---------------------------------------------------------------------


class FileReceiver:
    """Serves file connections: set it as ``PeerManager.file_handler``."""

    def __init__(self, settings: FileSettings, limits: Limits) -> None:
        # Checked here, when the node starts, rather than at the first transfer.
        if not 1 <= limits.file_chunk_size <= 0xFFFF_FFFF:
            raise ValueError(f"file_chunk_size must be 1..2**32-1, not {limits.file_chunk_size}")
        if limits.max_file_transfers < 0:
            raise ValueError(f"max_file_transfers must be >= 0, not {limits.max_file_transfers}")
        if not limits.file_idle_timeout > 0:
            raise ValueError(f"file_idle_timeout must be > 0, not {limits.file_idle_timeout}")
        self._settings = settings
        self._limits = limits
        self.stats = FileStatistics()

    async def __call__(self, stream: trio.abc.Stream, authenticated: Authenticated) -> None:
        peer = describe(authenticated.peer.name)  # the peer's own word: escaped
        try:
            await self._serve(stream, authenticated.leftover, peer)
        except Exception as exc:
            # A bug must end this transfer, never the node (this runs in the
            # listener's nursery); its text may quote the request, so no repr.
            log.error("file request from %s failed: %s", peer, failure_text(exc))
            self.stats.refused += 1
        finally:
            with trio.CancelScope(shield=True):
                await trio.aclose_forcefully(stream)

    async def _serve(self, stream: trio.abc.Stream, leftover: bytes, peer: str) -> None:
        """Serve one request; count and log it (once) if it is not carried out."""
        proto = FileReceiving(self._limits.file_chunk_size)
        proto.receive_data(leftover)
        what = "file request"
        refusal: str | None = None
        reason: str
        # The idle bound: the request must arrive within file_idle_timeout; a transfer
        # moves the deadline on at every chunk.
        with trio.CancelScope(
            deadline=trio.current_time() + self._limits.file_idle_timeout
        ) as idle:
            try:
                request = await _next_event(stream, proto)
                if isinstance(request, SendRequest):
                    what = _describe("file", request.name, request.dir)
                    await self._receive(stream, proto, request, idle)
                elif isinstance(request, DeleteRequest):
                    what = _describe("deletion of", request.name, request.dir)
                    await self._delete(stream, proto, request)
                else:  # pragma: no cover - the state machine starts with a request
                    raise ProtocolError("expected a request")
                return
            except FileRefused as exc:
                reason = refusal = exc.reason
            except ProtocolError as exc:
                reason = f"protocol error: {exc}"
                refusal = "protocol error"
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                reason = f"connection lost ({exc})"
        if idle.cancelled_caught:
            reason = refusal = STALLED
        # Counted before the sender can hear of it, and after any clean-up (the
        # partial file is gone by now): one line per request not carried out.
        self.stats.refused += 1
        log.warning("%s from %s not carried out: %s", what, peer, escape(reason, 300))
        if refusal is not None:
            # Best effort: tell the sender why before closing.
            with trio.move_on_after(_REFUSAL_SEND_TIMEOUT):
                with contextlib.suppress(
                    trio.BrokenResourceError, trio.ClosedResourceError, OSError
                ):
                    await stream.send_all(proto.refuse(refusal))

    async def _receive(
        self,
        stream: trio.abc.Stream,
        proto: FileReceiving,
        request: SendRequest,
        idle: trio.CancelScope,
    ) -> None:
        parts, name = check_path(request.dir, request.name)
        limit = self._settings.max_file_size or None
        if limit is not None and request.size > limit:
            raise FileRefused(f"file of {request.size} bytes exceeds max_file_size ({limit} bytes)")
        busy = self.stats.active
        if busy >= self._limits.max_file_transfers:
            raise FileRefused(f"busy: {busy} transfers in progress")
        step = self._limits.file_idle_timeout
        if request.timeout is not None:
            step = min(step, request.timeout)
        idle.deadline = trio.current_time() + step
        # No await between the check above and this: the count cannot be overtaken.
        self.stats.active += 1
        partial: _Partial | None = None
        try:
            plan = await _fs(_prepare, self._settings.dest_path, parts, name, request)
            if plan is None:
                await stream.send_all(proto.same())
                return
            if isinstance(plan, os.stat_result):
                await stream.send_all(proto.exists(plan))
                return
            partial = plan
            await stream.send_all(proto.go(request.size, limit))
            fd = plain_socket_fd(stream)
            if fd is None:
                await _pipeline(self._read_content(stream, proto, idle, step), partial)
            else:
                # The worker thread keeps the per-chunk bound itself.
                idle.deadline = math.inf
                with _as_refusal():
                    await receive_in_thread(fd, proto, partial.write, step=step, batch=_BATCH)
                idle.deadline = trio.current_time() + step
            await _fs(partial.commit, request)
            partial = None
            self.stats.received += 1
            await stream.send_all(proto.done())
        finally:
            self.stats.active -= 1
            if partial is not None:
                # Also when cancelled: the thread of an interrupted write has finished
                # (to_thread waits for it), so the temporary file can go now.
                with trio.CancelScope(shield=True):
                    await trio.to_thread.run_sync(partial.discard)

    @staticmethod
    async def _read_content(
        stream: trio.abc.Stream, proto: FileReceiving, idle: trio.CancelScope, step: float
    ) -> AsyncGenerator[list[memoryview] | End]:
        """Batches of received content (about ``_BATCH`` bytes each), then the End."""
        batch: list[memoryview] = []
        size = 0
        while True:
            event = await _next_event(stream, proto)
            if isinstance(event, End):
                if batch:
                    yield batch
                yield event
                return
            assert isinstance(event, Data)
            batch.append(event.data)
            size += len(event.data)
            if event.chunk_end:
                # The idle bound is per chunk: a whole chunk must arrive in time.
                idle.deadline = trio.current_time() + step
            if size >= _BATCH or len(batch) >= MAX_PIECES:
                # Counted in pieces too: a sender that dribbles a byte per segment
                # would make a batch of a million views, ~200 bytes each.
                yield batch
                batch = []
                size = 0

    async def _delete(
        self, stream: trio.abc.Stream, proto: FileReceiving, request: DeleteRequest
    ) -> None:
        parts, name = check_path(request.dir, request.name)
        await _fs(_delete_file, self._settings.dest_path, parts, name)
        self.stats.deleted += 1
        await stream.send_all(proto.done())


async def _next_event(stream: trio.abc.Stream, proto: FileReceiving) -> Event:
    while (event := proto.next_event()) is None:
        data = await stream.receive_some(_RECEIVE_SIZE)
        if not data:
            raise trio.BrokenResourceError("the sender closed the connection")
        proto.receive_data(data)
    return event


async def _pipeline(batches: AsyncGenerator[list[memoryview] | End], partial: _Partial) -> End:
    """Write batches in a worker thread while the next ones are received:
    the network and the disk work at the same time, with at most ``_WRITE_DEPTH``
    batches handed to the writer and not yet written."""

    async with thread_stage(partial.write, _WRITE_DEPTH) as writer, aclosing(batches):
        async for item in batches:
            if isinstance(item, End):
                while writer.pending:
                    await _written(writer)
                return item
            if writer.pending >= writer.depth:
                await _written(writer)
            writer.submit_nowait(item)
    raise AssertionError("the content ended without its End")  # pragma: no cover


async def _written(writer: ThreadStage[list[memoryview], None]) -> None:
    """Wait for the oldest batch handed to ``writer`` to be written."""
    with _as_refusal():
        await writer.get()


async def _fs(fn: Callable[[Unpack[Ts]], T], *args: *Ts) -> T:
    """Run blocking file-system work in a thread; its errors become refusals."""
    with _as_refusal():
        return await trio.to_thread.run_sync(fn, *args)


@contextlib.contextmanager
def _as_refusal() -> Iterator[None]:
    """File-system errors become refusals (the sender learns the reason, not our
    paths)."""
    try:
        yield
    except (OSError, ValueError, OverflowError) as exc:
        detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise FileRefused(f"file system error: {detail}") from exc


def _describe(what: str, name: str, dir: str | None) -> str:
    return f"{what} {describe(name)}" + (f" in {describe(dir)}" if dir else "")


# -- file-system work (runs in worker threads) ----------------------------------------


def _inside(root: str, path: str) -> None:
    """Refuse ``path`` unless its real path is ``root`` or under it.  ``commonpath``,
    not ``startswith``: a sibling such as ``/tmp/x-evil`` shares the prefix of
    ``/tmp/x`` but is not inside it."""
    real = os.path.realpath(path)
    try:
        common = os.path.commonpath([root, real])
    except ValueError:  # different drives
        common = ""
    if common != root:
        raise FileRefused("the path leads outside dest_path")


def _same_file(st: os.stat_result, request: SendRequest) -> bool:
    return (
        st.st_size == request.size
        and abs(st.st_mtime_ns - request.mtime_ns) < MTIME_SLACK_NS
        and masked_mode(st.st_mode) == masked_mode(request.mode)
    )


def _prepare(
    dest: str, parts: list[str], name: str, request: SendRequest
) -> _Partial | os.stat_result | None:
    """None: the same file is there; a stat_result: a different one is there and
    overwrite is off; else a new temporary file ready for the content."""
    os.makedirs(dest, exist_ok=True)
    root = os.path.realpath(dest)
    folder = os.path.join(root, *parts)
    # realpath resolves what exists of the path, so a symlinked folder on the way
    # (even one under which the rest is still to be made) is seen here.
    _inside(root, folder)
    target = os.path.join(folder, name)
    _inside(root, target)
    try:
        st: os.stat_result | None = os.stat(target)
    except FileNotFoundError:
        st = None
    if st is not None:
        if not stat.S_ISREG(st.st_mode):
            raise FileRefused("the target exists and is not a regular file")
        if _same_file(st, request):
            return None
        if not request.overwrite:
            return st
    # Remember the deepest folder that exists already: a failed transfer removes
    # only the (empty) folders it made itself.
    existing = folder
    while existing != root and not os.path.isdir(existing):
        existing = os.path.dirname(existing)
    os.makedirs(folder, exist_ok=True)
    partial = _Partial(root, folder, existing, target)
    try:
        _inside(root, folder)  # again, now that it exists
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
        flags |= getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0)
        flags |= getattr(os, "O_BINARY", 0)
        partial.fd = os.open(partial.path, flags, 0o600)
    except BaseException:
        partial.discard()
        raise
    return partial


class _Partial:
    """A transfer's temporary file, from creation to rename (or removal)."""

    def __init__(self, root: str, folder: str, existing: str, target: str) -> None:
        self.root = root
        self.folder = folder
        self.existing = existing
        self.target = target
        self.path = os.path.join(folder, f".triopycos-{secrets.token_hex(8)}.part")
        self.fd = -1

    def write(self, batch: list[memoryview]) -> None:
        fd = self.fd
        for piece in batch:
            while piece:
                piece = piece[os.write(fd, piece[:_WRITE_SIZE]) :]

    def commit(self, request: SendRequest) -> None:
        fd, self.fd = self.fd, -1
        os.close(fd)
        os.chmod(self.path, masked_mode(request.mode))
        os.utime(self.path, ns=(request.atime_ns, request.mtime_ns))
        _inside(self.root, self.folder)
        os.replace(self.path, self.target)

    def discard(self) -> None:
        if self.fd >= 0:
            fd, self.fd = self.fd, -1
            os.close(fd)
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        except OSError as exc:  # nothing more can be done; say so
            log.error("cannot remove the partial file %r: %s", self.path, exc)
        _remove_empty_folders(self.folder, self.existing)


def _remove_empty_folders(folder: str, stop: str) -> None:
    """Remove ``folder`` and its parents while they are empty, up to ``stop``
    (exclusive, and never ``stop`` or anything above it)."""
    while folder != stop and os.path.commonpath([stop, folder]) == stop:
        try:
            os.rmdir(folder)
        except OSError:
            return
        folder = os.path.dirname(folder)


def _delete_file(dest: str, parts: list[str], name: str) -> None:
    root = os.path.realpath(dest)
    folder = os.path.join(root, *parts)
    _inside(root, folder)
    target = os.path.join(folder, name)
    st = os.lstat(target)
    # A symlink inside dest_path is removed itself (never what it points to).
    if not (stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode)):
        raise FileRefused("not a regular file")
    os.remove(target)
    _remove_empty_folders(folder, root)


# -- the sender -----------------------------------------------------------------------


class FileChanged(OSError):
    """The file being sent shrank while it was read."""


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
            f, st = await trio.to_thread.run_sync(_open_regular, path)
        except OSError as exc:
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
        self, request: bytes, f: io.FileIO | None, size: int
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
                    except FileChanged:
                        raise
                    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                        # The receiver may have said why before closing.
                        reason = await _late_refusal(stream, decoder)
                        if reason is None:
                            raise
                        reply = Refused(reason)
                    else:
                        await stream.send_all(encode_end())
                        reply = await _reply(stream, decoder)
                return self._outcome(reply, f is not None)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
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
        f: io.FileIO,
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
        nowait = _HAVE_NOWAIT
        while offset < size:
            count = min(chunk, size - offset)
            frame = chunk_buffer(count)
            body = memoryview(frame)[HEADER_SIZE:]
            try:
                got = 0
                if nowait:
                    got = _pread_nowait(fd, body, offset)
                    if got < 0:  # this file system cannot say: threads from now on
                        nowait = False
                        got = 0
                if got < count:
                    await trio.to_thread.run_sync(
                        _read_fully, f, body[got:], offset + got, chunk * _READ_AHEAD
                    )
            finally:
                body.release()  # the frame is sent as a whole: no view of it may stay
            await stream.send_all(frame)
            offset += count
            idle.deadline = trio.current_time() + self.step
            if progress is not None:
                progress(offset, size)


def _open_regular(path: str) -> tuple[io.FileIO, os.stat_result]:
    """The file, open, and its stat (of what was opened, so they agree)."""
    # Checked before opening too: opening a FIFO would block this thread for good.
    if not stat.S_ISREG(os.stat(path).st_mode):
        raise OSError(f"{path!r} is not a regular file")
    f = io.FileIO(path, "rb")
    try:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise OSError(f"{path!r} is not a regular file")
    except BaseException:
        f.close()
        raise
    return f, st


def _pread_nowait(fd: int, view: memoryview, offset: int) -> int:
    """Bytes read into ``view`` from ``offset`` without waiting for the disk: what the
    page cache holds (0 if the first of them is not there), or -1 when the file
    system does not support the check.  Errors other than "would block" propagate
    (the worker thread's read would meet them too)."""
    try:
        return os.preadv(fd, [view], offset, _RWF_NOWAIT)
    except BlockingIOError:
        return 0
    except OSError as exc:
        if exc.errno in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
            return -1
        raise


def _read_fully(f: io.FileIO, view: memoryview, offset: int, ahead: int) -> None:
    """Fill ``view`` from ``offset`` (a worker thread: this may wait for the disk);
    then ask the kernel to read the next ``ahead`` bytes, so the following chunks are
    likely cached by the time they are read."""
    f.seek(offset)
    got = 0
    while got < len(view):
        n = f.readinto(view[got:])
        if not n:
            raise FileChanged(f"the file shrank while it was sent (at byte {offset + got})")
        got += n
    if _HAVE_FADVISE and ahead:
        with contextlib.suppress(OSError):
            os.posix_fadvise(f.fileno(), offset + got, ahead, os.POSIX_FADV_WILLNEED)


async def _reply(stream: trio.abc.Stream, decoder: FrameDecoder) -> Reply:
    while (frame := decoder.next_frame()) is None:
        data = await stream.receive_some(MAX_CONTROL_FRAME)
        if not data:
            raise trio.BrokenResourceError("the receiver closed the connection")
        decoder.receive_data(data)
    return parse_reply(frame)


async def _late_refusal(stream: trio.abc.Stream, decoder: FrameDecoder) -> str | None:
    """After a failed write: the refusal the receiver sent before closing, if any."""
    with trio.move_on_after(_REFUSAL_SEND_TIMEOUT):
        try:
            reply = await _reply(stream, decoder)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError, ProtocolError):
            return None
        return reply.reason if isinstance(reply, Refused) else None
    return None


# -- the API's entry points -----------------------------------------------------------


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
