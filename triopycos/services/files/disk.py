"""File-system work of the file service, and the mapping of its errors.

Everything here blocks, so it runs in worker threads (``run_fs``, the writer stage),
except ``pread_nowait``, which by construction cannot wait.

The receiving side's rules:

* content goes to a hidden temporary file in the destination folder
  (``.triopycos-<random>.part``, mode 0600, ``Partial``) and is renamed over the
  target with ``os.replace`` only at ``commit``; ``discard`` removes it and any
  folder the transfer created;
* the target must stay inside ``dest_path``: the real path (symlinks resolved) of
  the folder and of the target must have ``realpath(dest_path)`` as their common path
  (``os.path.commonpath``, not a string prefix: ``/tmp/x-evil`` is not inside
  ``/tmp/x``), checked before and after the folders are made and again at the rename;
* the modification time is kept (nanoseconds); the permission bits are kept after
  masking with ``MODE_MASK`` (no setuid, setgid, sticky or world-write bits);
* a file-system error is a refusal (``as_refusal``): the sender learns the reason,
  never our paths.

The sending side reads a chunk in the trio thread only when the kernel says it can do
so without waiting (``RWF_NOWAIT``: the bytes are in the page cache, a memory copy);
anything else is read in a worker thread (``read_fully``), which also asks the
kernel to read ahead.
"""

from __future__ import annotations

import contextlib
import errno
import io
import logging
import os
import secrets
import stat
from collections.abc import Callable, Iterator
from typing import TypeVar, TypeVarTuple, Unpack

import trio

from ...protocol.files import FileRefused, SendRequest

__all__ = [
    "HAVE_NOWAIT",
    "MODE_MASK",
    "MTIME_SLACK_NS",
    "WRITE_SIZE",
    "FileChanged",
    "Partial",
    "SourceFailed",
    "as_refusal",
    "delete_file",
    "masked_mode",
    "open_regular",
    "pread_nowait",
    "prepare",
    "read_fully",
    "reading_source",
    "run_fs",
]

log = logging.getLogger("triopycos.files")

#: Permission bits a received file keeps: read/write/execute for owner, group and
#: others, minus world-write; never setuid, setgid or sticky (a peer must not be able
#: to plant a set-id program or a file anyone may rewrite).
MODE_MASK = 0o777 & ~0o002
#: Modification times within this many nanoseconds count as the same (file systems
#: that keep 100 ns, like NTFS, still match a sender's nanoseconds).
MTIME_SLACK_NS = 1_000
#: Reads that only take what the page cache holds (Linux 4.14+).
_RWF_NOWAIT: int = getattr(os, "RWF_NOWAIT", 0)
HAVE_NOWAIT = bool(_RWF_NOWAIT) and hasattr(os, "preadv")
_HAVE_FADVISE = hasattr(os, "posix_fadvise")
#: Bytes per write system call.  Linux sizes the page cache's folios by the length
#: of the write; a 1 MiB write asks for high-order pages, which on a VM whose memory
#: the host backs on first touch come from memory never touched before: measured on
#: this project's 2-core VM, writing 256 MiB then took 0.3-0.75 s of system time
#: instead of 0.07 s, in about half the runs.  128 KiB writes never did, and cost 8
#: system calls per MiB.
WRITE_SIZE = 128 * 1024

T = TypeVar("T")
Ts = TypeVarTuple("Ts")


def masked_mode(mode: int) -> int:
    """The permission bits a received file gets (see ``MODE_MASK``)."""
    return mode & MODE_MASK


def inside(root: str, path: str) -> None:
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


def same_file(st: os.stat_result, request: SendRequest) -> bool:
    return (
        st.st_size == request.size
        and abs(st.st_mtime_ns - request.mtime_ns) < MTIME_SLACK_NS
        and masked_mode(st.st_mode) == masked_mode(request.mode)
    )


def prepare(
    dest: str, parts: list[str], name: str, request: SendRequest
) -> Partial | os.stat_result | None:
    """None: the same file is there; a stat_result: a different one is there and
    overwrite is off; else a new temporary file ready for the content."""
    os.makedirs(dest, exist_ok=True)
    root = os.path.realpath(dest)
    folder = os.path.join(root, *parts)
    # realpath resolves what exists of the path, so a symlinked folder on the way
    # (even one under which the rest is still to be made) is seen here.
    inside(root, folder)
    target = os.path.join(folder, name)
    inside(root, target)
    try:
        st: os.stat_result | None = os.stat(target)
    except FileNotFoundError:
        st = None
    if st is not None:
        if not stat.S_ISREG(st.st_mode):
            raise FileRefused("the target exists and is not a regular file")
        if same_file(st, request):
            return None
        if not request.overwrite:
            return st
    # Remember the deepest folder that exists already: a failed transfer removes
    # only the (empty) folders it made itself.
    existing = folder
    while existing != root and not os.path.isdir(existing):
        existing = os.path.dirname(existing)
    os.makedirs(folder, exist_ok=True)
    partial = Partial(root, folder, existing, target)
    try:
        inside(root, folder)  # again, now that it exists
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
        flags |= getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0)
        flags |= getattr(os, "O_BINARY", 0)
        partial.fd = os.open(partial.path, flags, 0o600)
    except BaseException:
        partial.discard()
        raise
    return partial


class Partial:
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
                piece = piece[os.write(fd, piece[:WRITE_SIZE]) :]

    def commit(self, request: SendRequest) -> None:
        fd, self.fd = self.fd, -1
        os.close(fd)
        os.chmod(self.path, masked_mode(request.mode))
        os.utime(self.path, ns=(request.atime_ns, request.mtime_ns))
        inside(self.root, self.folder)
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
        remove_empty_folders(self.folder, self.existing)


def remove_empty_folders(folder: str, stop: str) -> None:
    """Remove ``folder`` and its parents while they are empty, up to ``stop``
    (exclusive, and never ``stop`` or anything above it)."""
    while folder != stop and os.path.commonpath([stop, folder]) == stop:
        try:
            os.rmdir(folder)
        except OSError:
            return
        folder = os.path.dirname(folder)


def delete_file(dest: str, parts: list[str], name: str) -> None:
    root = os.path.realpath(dest)
    folder = os.path.join(root, *parts)
    inside(root, folder)
    target = os.path.join(folder, name)
    st = os.lstat(target)
    # A symlink inside dest_path is removed itself (never what it points to).
    if not (stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode)):
        raise FileRefused("not a regular file")
    os.remove(target)
    remove_empty_folders(folder, root)


async def run_fs(fn: Callable[[Unpack[Ts]], T], *args: *Ts) -> T:
    """Run blocking file-system work in a thread; its errors become refusals."""
    with as_refusal():
        return await trio.to_thread.run_sync(fn, *args)


@contextlib.contextmanager
def as_refusal() -> Iterator[None]:
    """File-system errors become refusals (the sender learns the reason, not our
    paths)."""
    try:
        yield
    except (OSError, ValueError, OverflowError) as exc:
        detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise FileRefused(f"file system error: {detail}") from exc


class FileChanged(OSError):
    """The file being sent shrank while it was read."""


class SourceFailed(Exception):
    """The file being sent could not be opened or read (an ``OSError``, its text
    kept): the sender's own file-system error, not the connection's."""


@contextlib.contextmanager
def reading_source() -> Iterator[None]:
    """Errors of opening or reading the file being sent become ``SourceFailed``."""
    try:
        yield
    except OSError as exc:
        raise SourceFailed(str(exc)) from exc


def open_regular(path: str) -> tuple[io.FileIO, os.stat_result]:
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


def pread_nowait(fd: int, view: memoryview, offset: int) -> int:
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


def read_fully(f: io.FileIO, view: memoryview, offset: int, ahead: int) -> None:
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
