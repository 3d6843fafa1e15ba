"""pycos's ``asyncfile`` on trio: ``AsyncFile`` and ``AsyncPipe``
(``import pycos.asyncfile`` under ``python -m triopycos.compat``).

``AsyncFile(fd)`` makes a file object or descriptor (a pipe, a socket, a terminal)
non-blocking; in a task, ``data = yield f.read(size)``, ``n = yield f.write(data)``
and ``line = yield f.readline()`` wait for it with trio's readiness waits.  A regular
file is always ready, so its reads and writes simply happen.

``AsyncPipe(first, last=None)`` wraps ``subprocess.Popen`` objects, ``first``'s input
piped (by the program) through to ``last``'s output: writes go to ``first.stdin``,
reads come from ``last.stdout`` (``read_stderr``/``readline_stderr``: ``last.stderr``);
``stdout, stderr = yield pipe.communicate(input)`` feeds ``input`` (bytes, text, or a
file) and collects both outputs, as ``Popen.communicate`` does; other attributes are
``last``'s (``pipe.returncode``, ``pipe.terminate()``...).

pycos's semantics: ``read(size)`` gives what one read returns (at most ``size``
bytes), ``read(size, full=True)`` exactly ``size`` unless the file ends first, and
``read()`` everything up to the end; ``b''`` at the end.  ``timeout`` (seconds, for
the whole call): a read that got nothing raises ``IOError('timedout')``, one that got
something gives it; a write gives the number of bytes written by then.
"""

from __future__ import annotations

import contextlib
import math
import os
import subprocess
from collections.abc import Awaitable
from types import TracebackType
from typing import IO, Any

import trio

from ._fdwait import HasFileno, Watched, wait_fd

__all__ = ["AsyncFile", "AsyncPipe", "Popen"]

# On Windows pycos needs its own Popen for asynchronous pipes; here it is the usual
# one (so programs written for both run unchanged).
Popen = subprocess.Popen

_CHUNK = 16384
_Bytes = bytes | bytearray | memoryview


class AsyncFile:
    def __init__(self, fd: HasFileno | int) -> None:
        """``fd``: a file object (``open(...)``, ``Popen.stdout``, a socket or an
        ``AsyncSocket``) or a file descriptor number."""
        if isinstance(fd, int) and not isinstance(fd, bool):
            self._fd: HasFileno | None = None
            self._fileno = fd
        elif hasattr(fd, "fileno"):
            self._fd = fd
            self._fileno = fd.fileno()
        else:
            raise ValueError("invalid file descriptor")
        self._buflist: list[bytes] = []
        self._watched = Watched()
        os.set_blocking(self._fileno, False)

    def fileno(self) -> int:
        return self._fileno

    def __enter__(self) -> AsyncFile:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the file object (or the descriptor given)."""
        fileno, self._fileno = self._fileno, -1
        if fileno < 0:
            return
        fd, self._fd = self._fd, None
        self._buflist = []
        close = getattr(fd, "close", None) if fd is not None else None
        self._watched.close(fileno, close if close is not None else lambda: os.close(fileno))

    # -- reading --------------------------------------------------------------------

    async def read(self, size: int = 0, full: bool = False, timeout: float | None = None) -> bytes:
        if not size or size < 0:
            size, full = 0, True
        elif self._buflist:  # left over by readline
            buf = b"".join(self._buflist)
            self._buflist = [buf[size:]] if len(buf) > size else []
            buf = buf[:size]
            if not full or len(buf) == size:
                await trio.lowlevel.checkpoint()
                return buf
            self._buflist = [buf]
            size -= len(buf)
        deadline = _deadline(timeout)
        while True:
            try:
                data = os.read(self._fileno, size if size > 0 else _CHUNK)
            except BlockingIOError:
                if not await self._ready(True, deadline):
                    if self._buflist:
                        return self._take()
                    raise OSError("timedout") from None
                continue
            if data:
                self._buflist.append(data)
                if size > 0:
                    size -= len(data)
                    if size == 0:
                        full = False
                if full:
                    await trio.lowlevel.checkpoint_if_cancelled()
                    continue
            await trio.lowlevel.checkpoint()
            return self._take()

    async def readline(
        self, size: int = 0, sizehint: int = 100, timeout: float | None = None
    ) -> bytes:
        """A line (with its ``\\n``), at most ``size`` bytes if ``size`` > 0; what is
        left before the end of the file; ``b''`` at the end."""
        if not size or size < 0:
            size = 0
        if self._buflist:
            got = self._take()
        else:
            got = await self.read(size=sizehint, timeout=timeout)
            if not got:
                return got
        while True:
            limit = min(size, len(got)) if size else len(got)
            newline = got.find(b"\n", 0, limit)
            end = newline + 1 if newline >= 0 else (size if size and len(got) >= size else -1)
            if end >= 0:
                if len(got) > end:
                    self._buflist = [got[end:]]
                return got[:end]
            more = await self.read(size=sizehint, timeout=timeout)
            if not more:
                return got
            got += more

    def _take(self) -> bytes:
        buf, self._buflist = b"".join(self._buflist), []
        return buf

    # -- writing --------------------------------------------------------------------

    async def write(self, buf: _Bytes, full: bool = False, timeout: float | None = None) -> int:
        """Write (some of) ``buf``: one write, or all of it with ``full=True``; the
        number of bytes written."""
        deadline = _deadline(timeout)
        written = 0
        with memoryview(buf) as view:
            while True:
                try:
                    written += os.write(self._fileno, view[written:])
                except (BlockingIOError, InterruptedError):
                    if not await self._ready(False, deadline):
                        return written
                    continue
                if written == len(view) or not full:
                    await trio.lowlevel.checkpoint()
                    return written
                await trio.lowlevel.checkpoint_if_cancelled()

    async def _ready(self, readable: bool, deadline: float) -> bool:
        """Wait until the file is ready; False if ``deadline`` passed first."""
        self._watched.note()
        with trio.move_on_at(deadline):
            await wait_fd(self._fileno, readable=readable)
            return True
        return False


class AsyncPipe:
    def __init__(self, first: subprocess.Popen[Any], last: subprocess.Popen[Any] | None = None):
        last = last or first
        if not isinstance(first, subprocess.Popen) or not isinstance(last, subprocess.Popen):
            raise ValueError("argument must be subprocess.Popen object")
        self.first: subprocess.Popen[Any] | None = first
        self.last: subprocess.Popen[Any] | None = last
        self.stdin = AsyncFile(first.stdin) if first.stdin else None
        self.stdout = AsyncFile(last.stdout) if last.stdout else None
        self.stderr = AsyncFile(last.stderr) if last.stderr else None

    def __getattr__(self, name: str) -> Any:
        process = self.__dict__.get("last") or self.__dict__.get("first")
        if process is None:
            raise RuntimeError("AsyncPipe is invalid")
        return getattr(process, name)

    def __enter__(self) -> AsyncPipe:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def write(
        self, buf: _Bytes, full: bool = False, timeout: float | None = None
    ) -> Awaitable[int]:
        return _end(self.stdin, "stdin").write(buf, full=full, timeout=timeout)

    def read(self, size: int = 0, timeout: float | None = None) -> Awaitable[bytes]:
        return _end(self.stdout, "stdout").read(size=size, timeout=timeout)

    def readline(
        self, size: int = 0, sizehint: int = 100, timeout: float | None = None
    ) -> Awaitable[bytes]:
        return _end(self.stdout, "stdout").readline(size, sizehint, timeout)

    def read_stderr(self, size: int = 0, timeout: float | None = None) -> Awaitable[bytes]:
        return _end(self.stderr, "stderr").read(size=size, timeout=timeout)

    def readline_stderr(
        self, size: int = 0, sizehint: int = 100, timeout: float | None = None
    ) -> Awaitable[bytes]:
        return _end(self.stderr, "stderr").readline(size, sizehint, timeout)

    async def communicate(self, input: Any = None) -> tuple[bytes | None, bytes | None]:
        """Feed ``input`` (if any: bytes, text, a file object, or anything with a
        ``read(size)``, an AsyncFile's included) to the first process and close its
        input; read the last one's output and errors to their ends; wait for it to
        exit.  ``(stdout, stderr)``, None for one not piped."""
        outputs: dict[str, bytes] = {}
        async with trio.open_nursery() as nursery:
            if self.stdout is not None:
                nursery.start_soon(_drain, self.stdout, "stdout", outputs)
            if self.stderr is not None:
                nursery.start_soon(_drain, self.stderr, "stderr", outputs)
            if input and self.stdin is not None:
                await _feed(self.stdin, input)
        last = self.last
        if last is not None:
            await trio.to_thread.run_sync(last.wait, abandon_on_cancel=True)
        return outputs.get("stdout"), outputs.get("stderr")

    def poll(self) -> int | None:
        process = self.last or self.first
        return process.poll() if process is not None else None

    def close(self) -> None:
        """Forget the processes (their pipes stay as they are)."""
        self.first = self.last = None


def _end(end: AsyncFile | None, name: str) -> AsyncFile:
    if end is None:
        raise ValueError(f"the pipe's {name} is not a pipe (Popen without {name}=PIPE)")
    return end


def _deadline(timeout: float | None) -> float:
    return math.inf if timeout is None else trio.current_time() + timeout


async def _drain(end: AsyncFile, name: str, outputs: dict[str, bytes]) -> None:
    chunks = []
    while data := await end.read(_CHUNK):
        chunks.append(data)
    end.close()
    outputs[name] = b"".join(chunks)


async def _feed(stdin: AsyncFile, source: Any) -> None:
    # A process that exits before reading all its input is not an error (as with
    # Popen.communicate): what it did read, and its output, still count.
    with contextlib.suppress(BrokenPipeError):
        await _write_all(stdin, source)
    stdin.close()


async def _write_all(stdin: AsyncFile, source: Any) -> None:
    if isinstance(source, str):
        source = source.encode()
    if isinstance(source, (bytes, bytearray, memoryview)):
        if await stdin.write(source, full=True) != len(source):
            raise OSError("write failed")
    else:
        file: IO[Any] = source
        while True:
            if hasattr(file, "seek") and hasattr(file, "fileno"):
                data = os.read(file.fileno(), _CHUNK)  # a file on disk: always ready
            else:
                data = file.read(_CHUNK)
                if isinstance(data, Awaitable):
                    data = await data
            if not data:
                break
            if isinstance(data, str):
                data = data.encode()
            if await stdin.write(data, full=True) != len(data):
                raise OSError("write failed")
        with contextlib.suppress(OSError):
            file.close()
