"""File transfer (``send_file`` / ``del_file``) between real nodes on 127.0.0.1.

Real file I/O runs in worker threads, which the autojump clock would take for idle
time, so these run on the real clock, each bounded by ``trio.fail_after``.  Hostile
senders speak the protocol by hand over ``open_file_connection`` (or subclass
``FileSender``) to send what an honest sender never would.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import math
import os
import stat
from collections.abc import AsyncIterator, Generator
from pathlib import Path
from typing import Any

import pytest
import trio
import trustme
from nodes import loopback_node, wait_for

from triopycos import Limits, Location, Pycos, ServiceError, Task
from triopycos.protocol.codec import Codec
from triopycos.protocol.errors import ProtocolError
from triopycos.protocol.files import (
    Data,
    DeleteRequest,
    Done,
    End,
    Exists,
    FileReceiving,
    FileRefused,
    Go,
    Refused,
    Reply,
    Same,
    SendRequest,
    check_path,
    encode_end,
    encode_send_request,
    make_stat_result,
    parse_reply,
)
from triopycos.protocol.framing import FrameDecoder, encode_frame
from triopycos.services.files import MODE_MASK, FileChanged, FileReceiver, FileSender
from triopycos.services.files import disk as files_disk
from triopycos.services.files import receiver as files_receiver
from triopycos.services.files import sender as files_sender
from triopycos.services.files.disk import pread_nowait as _pread_nowait
from triopycos.services.files.disk import read_fully as _read_fully
from triopycos.testing import VirtualNetwork

LIMIT = 20  # seconds any one test may take
SECRET = "s"


def node(
    name: str, dest: Path | None, **kwargs: Any
) -> contextlib.AbstractAsyncContextManager[Pycos]:
    args: dict[str, Any] = {"secret": SECRET}
    if dest is not None:
        args["dest_path"] = dest
    return loopback_node(name, **(args | kwargs))


@contextlib.asynccontextmanager
async def two_nodes(tmp_path: Path, **receiver: Any) -> AsyncIterator[tuple[Pycos, Pycos]]:
    """(a, b): a receives into tmp_path/dest; b sends."""
    async with node("a", tmp_path / "dest", **receiver) as a, node("b", tmp_path / "b") as b:
        yield a, b


def make_file(
    path: Path, content: bytes = b"hello", *, mode: int = 0o644, mtime_ns: int | None = None
) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    os.chmod(path, mode)
    if mtime_ns is not None:
        os.utime(path, ns=(mtime_ns, mtime_ns))
    return path


def receiver_of(pycos: Pycos) -> FileReceiver:
    assert pycos._peers is not None
    handler = pycos._peers.file_handler
    assert isinstance(handler, FileReceiver)
    return handler


def tree(root: Path) -> list[str]:
    """Everything under root (files, folders, links), relative, sorted."""
    if not root.exists():
        return []
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


async def refused(receiver: Pycos, count: int = 1) -> None:
    """Wait until the receiver has counted ``count`` requests not carried out (the
    count comes after its clean-up, so the file system is final then)."""
    await wait_for(lambda: receiver.statistics().files_refused >= count)
    assert receiver.statistics().files_refused == count


# -- the return values --------------------------------------------------------------


async def test_send_file_returns_0_and_keeps_content_mtime_and_masked_mode(
    tmp_path: Path,
) -> None:
    content = os.urandom(3 * 1024 * 1024 + 17)  # several chunks and a partial one
    src = make_file(tmp_path / "src" / "data.bin", content, mode=0o7777, mtime_ns=1_500_000_123)
    with trio.fail_after(LIMIT):
        async with two_nodes(tmp_path) as (a, b):
            assert await b.send_file(a.location, src) == 0
            got = tmp_path / "dest" / "data.bin"
            assert got.read_bytes() == content
            st = got.stat()
            assert st.st_mtime_ns == 1_500_000_123
            # No setuid, setgid, sticky or world-write bits.
            assert stat.S_IMODE(st.st_mode) == 0o7777 & MODE_MASK == 0o775
            assert tree(tmp_path / "dest") == ["data.bin"]  # no temporary file left
            assert a.statistics().files_received == 1
            assert a.statistics().files_refused == 0


async def test_ordinary_modes_are_kept_as_they_are(tmp_path: Path) -> None:
    with trio.fail_after(LIMIT):
        async with two_nodes(tmp_path) as (a, b):
            for mode in (0o600, 0o640, 0o755, 0o444):
                src = make_file(tmp_path / "src" / f"m{mode:o}", mode=mode)
                assert await b.send_file(a.location, src) == 0
                got = tmp_path / "dest" / f"m{mode:o}"
                assert stat.S_IMODE(got.stat().st_mode) == mode


async def test_same_file_returns_1_without_sending(tmp_path: Path) -> None:
    src = make_file(tmp_path / "src" / "f.txt", b"x" * 1000, mtime_ns=2_000_000_000_000_000_001)
    with trio.fail_after(LIMIT):
        async with two_nodes(tmp_path) as (a, b):
            assert await b.send_file(a.location, src) == 0
            assert await b.send_file(a.location, src) == 1
            assert await b.send_file(a.location, src, overwrite=True) == 1
            assert a.statistics().files_received == 1


async def test_different_file_returns_its_stat_result_and_is_left_alone(
    tmp_path: Path,
) -> None:
    src = make_file(tmp_path / "src" / "f.txt", b"first", mtime_ns=1_000_000_000_000)
    with trio.fail_after(LIMIT):
        async with two_nodes(tmp_path) as (a, b):
            assert await b.send_file(a.location, src) == 0
            there = (tmp_path / "dest" / "f.txt").stat()
            make_file(src, b"other content", mtime_ns=2_000_000_000_000)
            result = await b.send_file(a.location, src)
            assert isinstance(result, os.stat_result)
            assert result.st_size == there.st_size == 5
            assert result.st_mtime_ns == there.st_mtime_ns == 1_000_000_000_000
            assert result.st_mtime == 1000.0
            assert result[stat.ST_MTIME] == 1000
            assert result.st_mode == there.st_mode
            assert result.st_ino == there.st_ino
            assert (tmp_path / "dest" / "f.txt").read_bytes() == b"first"

            # Same size and mtime but other permission bits: different too.
            make_file(src, b"first", mode=0o600, mtime_ns=1_000_000_000_000)
            result = await b.send_file(a.location, src)
            assert isinstance(result, os.stat_result)
            assert stat.S_IMODE(result.st_mode) == 0o644


async def test_overwrite_replaces_a_different_file(tmp_path: Path) -> None:
    src = make_file(tmp_path / "src" / "f.txt", b"first")
    with trio.fail_after(LIMIT):
        async with two_nodes(tmp_path) as (a, b):
            assert await b.send_file(a.location, src) == 0
            make_file(src, b"second, longer", mode=0o600, mtime_ns=3_000_000_000)
            assert await b.send_file(a.location, src, overwrite=True) == 0
            got = tmp_path / "dest" / "f.txt"
            assert got.read_bytes() == b"second, longer"
            assert got.stat().st_mtime_ns == 3_000_000_000
            assert stat.S_IMODE(got.stat().st_mode) == 0o600
            assert tree(tmp_path / "dest") == ["f.txt"]


async def test_dir_is_a_folder_under_dest_path_and_only_the_base_name_travels(
    tmp_path: Path,
) -> None:
    src = make_file(tmp_path / "deep" / "down" / "on" / "sender" / "f.txt", b"data")
    with trio.fail_after(LIMIT):
        async with two_nodes(tmp_path) as (a, b):
            assert await b.send_file(a.location, str(src), dir="sub/deeper") == 0
            assert (tmp_path / "dest" / "sub" / "deeper" / "f.txt").read_bytes() == b"data"
            assert await b.send_file(a.location, src, dir="./sub//other/") == 0
            assert (tmp_path / "dest" / "sub" / "other" / "f.txt").exists()
            # A name with ".." inside it (not a ".." part) is an ordinary name.
            odd = make_file(tmp_path / "src" / "v1..2.txt")
            assert await b.send_file(a.location, odd, dir="a..b") == 0
            assert (tmp_path / "dest" / "a..b" / "v1..2.txt").exists()


async def test_dest_path_is_created_when_needed(tmp_path: Path) -> None:
    src = make_file(tmp_path / "f.txt")
    with trio.fail_after(LIMIT):
        async with node("a", tmp_path / "not" / "yet") as a, node("b", None) as b:
            assert not (tmp_path / "not").exists()
            assert await b.send_file(a.location, src) == 0
            assert (tmp_path / "not" / "yet" / "f.txt").exists()


async def test_empty_file(tmp_path: Path) -> None:
    src = make_file(tmp_path / "src" / "empty", b"")
    with trio.fail_after(LIMIT):
        async with two_nodes(tmp_path) as (a, b):
            assert await b.send_file(a.location, src) == 0
            assert (tmp_path / "dest" / "empty").read_bytes() == b""
            assert await b.send_file(a.location, src) == 1


async def test_del_file_removes_the_file_and_the_folders_it_emptied(tmp_path: Path) -> None:
    one = make_file(tmp_path / "src" / "one")
    two = make_file(tmp_path / "src" / "two")
    dest = tmp_path / "dest"
    with trio.fail_after(LIMIT):
        async with two_nodes(tmp_path) as (a, b):
            assert await b.send_file(a.location, one, dir="x/y/z") == 0
            assert await b.send_file(a.location, two, dir="x") == 0
            assert await b.del_file(a.location, one, dir="x/y/z") == 0
            # z and y are empty now and go; x still holds "two".
            assert tree(dest) == ["x", "x/two"]
            assert await b.del_file(a.location, "two", dir="x") == 0
            assert tree(dest) == []
            assert dest.is_dir()  # never dest_path itself
            # Nothing there to delete (twice), a folder, a path that climbs.
            assert await b.del_file(a.location, one, dir="x/y/z") == -1
            (dest / "folder").mkdir()
            assert await b.del_file(a.location, "folder") == -1
            assert await b.del_file(a.location, "f", dir="../outside") == -1
            assert a.statistics().files_refused == 3
            assert (dest / "folder").is_dir()


# -- progress -------------------------------------------------------------------------


async def test_progress_reports_every_chunk_up_to_the_whole_file(tmp_path: Path) -> None:
    content = os.urandom(5 * 1000 + 7)
    src = make_file(tmp_path / "src" / "p.bin", content)
    calls: list[tuple[int, int]] = []
    with trio.fail_after(LIMIT):
        async with (
            node("a", tmp_path / "dest") as a,
            node("b", None, limits=Limits(file_chunk_size=1000)) as b,
        ):
            result = await b.send_file(a.location, src, progress=lambda *c: calls.append(c))
            assert result == 0
            assert (tmp_path / "dest" / "p.bin").read_bytes() == content
            # Accepted, then after each of the six chunks (five full, one of 7 bytes).
            size = len(content)
            assert calls == [(0, size)] + [(min(n * 1000, size), size) for n in range(1, 7)]
            # Nothing is sent for the same file again, or a different one without
            # overwrite: no progress either.
            calls.clear()
            assert await b.send_file(a.location, src, progress=lambda *c: calls.append(c)) == 1
            make_file(tmp_path / "src2" / "p.bin", b"other")
            other = await b.send_file(
                a.location, tmp_path / "src2" / "p.bin", progress=lambda *c: calls.append(c)
            )
            assert isinstance(other, os.stat_result)
            assert calls == []
            # An empty file: accepted, nothing more to report.
            empty = make_file(tmp_path / "src" / "empty", b"")
            assert await b.send_file(a.location, empty, progress=lambda *c: calls.append(c)) == 0
            assert calls == [(0, 0)]


async def test_an_exception_in_progress_ends_the_transfer_and_leaves_nothing(
    tmp_path: Path,
) -> None:
    src = make_file(tmp_path / "src" / "p.bin", os.urandom(10_000))

    def fail_half_way(sent: int, total: int) -> None:
        if sent >= total // 2:
            raise KeyError("stop here")

    with trio.fail_after(LIMIT):
        async with (
            node("a", tmp_path / "dest") as a,
            node("b", None, limits=Limits(file_chunk_size=1000)) as b,
        ):
            with pytest.raises(KeyError, match="stop here"):
                await b.send_file(a.location, src, progress=fail_half_way)
            await refused(a)
            assert tree(tmp_path / "dest") == []
            with pytest.raises(TypeError, match="progress"):
                await b.send_file(a.location, src, progress=42)  # type: ignore[arg-type]


# -- errors and refusals -------------------------------------------------------------


async def test_sender_side_errors_return_minus_1(tmp_path: Path) -> None:
    with trio.fail_after(LIMIT):
        async with two_nodes(tmp_path) as (a, b):
            assert await b.send_file(a.location, tmp_path / "missing") == -1
            assert await b.send_file(a.location, tmp_path) == -1  # a folder
            # Nobody listening there.
            with trio.socket.socket() as sock:
                await sock.bind(("127.0.0.1", 0))
                port = sock.getsockname()[1]
            src = make_file(tmp_path / "f")
            assert await b.send_file(Location("127.0.0.1", port), src) == -1
            assert await b.del_file(Location("127.0.0.1", port), src) == -1
            with pytest.raises(TypeError):
                await b.send_file("127.0.0.1", src)  # type: ignore[arg-type]
            with pytest.raises(TypeError):
                await b.send_file(a.location, 42)  # type: ignore[arg-type]
            with pytest.raises(ValueError):
                await b.send_file(a.location, src, timeout=-1)


async def test_a_node_with_another_secret_cannot_send(tmp_path: Path) -> None:
    src = make_file(tmp_path / "f")
    with trio.fail_after(LIMIT):
        async with node("a", tmp_path / "dest") as a, node("b", None, secret="other") as b:
            assert await b.send_file(a.location, src) == -1
            assert tree(tmp_path / "dest") == []


@pytest.mark.parametrize(
    "dir",
    ["/etc", "/", "\\x", "C:/x", "c:x", "..", "../x", "a/../../x", "a/..", "a\\..\\b"],
)
async def test_refused_dirs(tmp_path: Path, dir: str, caplog: pytest.LogCaptureFixture) -> None:
    src = make_file(tmp_path / "src" / "f.txt")
    with trio.fail_after(LIMIT):
        async with two_nodes(tmp_path) as (a, b):
            with caplog.at_level(logging.WARNING, logger="triopycos.files"):
                assert await b.send_file(a.location, src, dir=dir) == -1
                await refused(a)
            lines = [r for r in caplog.records if "not carried out" in r.getMessage()]
            assert len(lines) == 1  # the receiver logs each refusal once
            assert tree(tmp_path / "dest") == []
            assert not (tmp_path / "f.txt").exists()
            # The node goes on serving.
            assert await b.send_file(a.location, src) == 0


async def test_a_symlink_out_of_dest_path_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "link").symlink_to(outside, target_is_directory=True)
    (dest / "file-link").symlink_to(outside / "target.txt")
    src = make_file(tmp_path / "src" / "f.txt")
    named = make_file(tmp_path / "src" / "file-link")
    with trio.fail_after(LIMIT):
        async with two_nodes(tmp_path) as (a, b):
            assert await b.send_file(a.location, src, dir="link") == -1
            assert await b.send_file(a.location, src, dir="link/below") == -1
            assert await b.send_file(a.location, named) == -1  # the target is a link out
            await refused(a, 3)
            assert tree(outside) == []
            # A symlink that stays inside dest_path is fine.
            (dest / "inner").mkdir()
            (dest / "alias").symlink_to(dest / "inner", target_is_directory=True)
            assert await b.send_file(a.location, src, dir="alias") == 0
            assert (dest / "inner" / "f.txt").exists()


async def test_a_sibling_folder_that_merely_starts_with_dest_path_is_outside(
    tmp_path: Path,
) -> None:
    dest = tmp_path / "x"
    evil = tmp_path / "x-evil"
    dest.mkdir()
    evil.mkdir()
    (dest / "link").symlink_to(evil, target_is_directory=True)
    src = make_file(tmp_path / "src" / "f.txt")
    with trio.fail_after(LIMIT):
        async with node("a", dest) as a, node("b", None) as b:
            assert str(evil).startswith(str(dest))  # a prefix test would let it through
            assert await b.send_file(a.location, src, dir="link") == -1
            await refused(a)
            assert tree(evil) == []
            assert await b.del_file(a.location, "f.txt", dir="link") == -1


async def test_max_file_size_by_the_announced_size(tmp_path: Path) -> None:
    big = make_file(tmp_path / "src" / "big", b"x" * 1001)
    fits = make_file(tmp_path / "src" / "fits", b"x" * 1000)
    with trio.fail_after(LIMIT):
        async with two_nodes(tmp_path, max_file_size=1000) as (a, b):
            assert a.max_file_size == 1000
            assert await b.send_file(a.location, big) == -1
            await refused(a)
            assert await b.send_file(a.location, fits) == 0
            assert tree(tmp_path / "dest") == ["fits"]


async def test_more_transfers_than_the_limit_are_refused(tmp_path: Path) -> None:
    src = make_file(tmp_path / "src" / "f.txt", b"x" * 100)
    release = trio.Event()

    class Holding(FileSender):
        """Sends one chunk, then holds its transfer slot until released."""

        async def send_chunks(self, stream: trio.abc.Stream, *args: Any) -> None:
            await stream.send_all(encode_frame(b"x"))
            await release.wait()
            raise trio.BrokenResourceError("released")

    limits = Limits(max_file_transfers=1)
    with trio.fail_after(LIMIT):
        async with two_nodes(tmp_path, limits=limits) as (a, b):
            assert b._peers is not None
            async with trio.open_nursery() as nursery:
                held = Holding(b._peers, a.location, None)
                nursery.start_soon(held.send, src, "held", False)
                await wait_for(lambda: receiver_of(a).stats.active == 1)
                assert await b.send_file(a.location, src) == -1
                assert a.statistics().files_refused == 1
                release.set()
            await refused(a, 2)  # the held one, broken off
            assert await b.send_file(a.location, src) == 0
            assert tree(tmp_path / "dest") == ["f.txt"]


# -- hostile senders, by hand ---------------------------------------------------------


class Raw:
    """A file connection on which the test says exactly what it wants."""

    def __init__(self, stream: trio.abc.Stream, leftover: bytes) -> None:
        self.stream = stream
        self.decoder = FrameDecoder(1 << 20)
        self.decoder.receive_data(leftover)

    async def send(self, data: bytes) -> bool:
        """False if the receiver has closed the connection."""
        try:
            await self.stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            return False
        return True

    async def reply(self) -> Reply | None:
        """The next reply, or None if the connection closed first."""
        try:
            while (frame := self.decoder.next_frame()) is None:
                data = await self.stream.receive_some()
                if not data:
                    return None
                self.decoder.receive_data(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            return None
        return parse_reply(frame)


@contextlib.asynccontextmanager
async def raw_connection(sender: Pycos, location: Location) -> AsyncIterator[Raw]:
    assert sender._peers is not None
    opened = await sender._peers.open_file_connection(location)
    assert opened is not None
    stream, authenticated = opened
    try:
        yield Raw(stream, authenticated.leftover)
    finally:
        await trio.aclose_forcefully(stream)


def request(name: str = "f.bin", size: int = 10, **fields: Any) -> bytes:
    values: dict[str, Any] = {
        "name": name,
        "dir": None,
        "size": size,
        "mode": 0o644,
        "atime_ns": 0,
        "mtime_ns": 0,
        "overwrite": False,
        "timeout": None,
    } | fields
    return encode_send_request(SendRequest(**values))


@pytest.mark.parametrize("name", ["a/b", "..", ".", "", "a\\b", "C:x", "x\0y"])
async def test_a_file_name_that_is_not_a_plain_base_name_is_refused(
    tmp_path: Path, name: str
) -> None:
    with trio.fail_after(LIMIT):
        async with two_nodes(tmp_path) as (a, b), raw_connection(b, a.location) as raw:
            await raw.send(request(name))
            reply = await raw.reply()
            assert isinstance(reply, Refused)
            assert "plain base name" in reply.reason
            await refused(a)
            assert tree(tmp_path / "dest") == []


async def test_malformed_requests_are_refused(tmp_path: Path) -> None:
    codec = Codec()
    bad = [
        ["send", {"name": "f"}],  # fields missing
        ["send", "not a dict"],
        ["format", {"name": "f", "dir": None}],
        [1, 2, 3],
        "text",
    ]
    with trio.fail_after(LIMIT):
        async with two_nodes(tmp_path) as (a, b):
            for i, message in enumerate(bad, 1):
                async with raw_connection(b, a.location) as raw:
                    await raw.send(encode_frame(codec.encode(message)))
                    assert isinstance(await raw.reply(), Refused | None)
                await refused(a, i)
            for i, fields in enumerate(
                [{"size": -1}, {"mode": 0o10000}, {"overwrite": 1}, {"timeout": 0}], len(bad) + 1
            ):
                message = ["send", codec.decode(request()[4:])[1] | fields]  # type: ignore[index]
                async with raw_connection(b, a.location) as raw:
                    await raw.send(encode_frame(codec.encode(message)))
                    assert isinstance(await raw.reply(), Refused | None)
                await refused(a, i)
            assert tree(tmp_path / "dest") == []


async def test_a_sender_sending_more_than_it_announced_is_cut_off(tmp_path: Path) -> None:
    with trio.fail_after(LIMIT):
        async with two_nodes(tmp_path) as (a, b), raw_connection(b, a.location) as raw:
            await raw.send(request(size=10))
            assert isinstance(await raw.reply(), Go)
            await raw.send(encode_frame(b"0123456789abcdefghij"))
            reply = await raw.reply()
            assert isinstance(reply, Refused)
            assert "more than" in reply.reason
            await refused(a)
            assert tree(tmp_path / "dest") == []


async def test_max_file_size_by_the_bytes_that_arrive(tmp_path: Path) -> None:
    # Announces exactly the limit, then keeps sending: the chunk header that would
    # pass the limit cuts it off before its body is taken.
    with trio.fail_after(LIMIT):
        async with (
            two_nodes(tmp_path, max_file_size=100) as (a, b),
            raw_connection(b, a.location) as raw,
        ):
            await raw.send(request(size=100))
            assert isinstance(await raw.reply(), Go)
            for _ in range(2):
                assert await raw.send(encode_frame(b"x" * 50))
            await raw.send(encode_frame(b"x" * 50))
            reply = await raw.reply()
            assert isinstance(reply, Refused)
            await refused(a)
            assert receiver_of(a).stats.active == 0
            assert tree(tmp_path / "dest") == []


async def test_a_bad_end_frame_is_refused_and_leaves_nothing(tmp_path: Path) -> None:
    # ["end", digest] was the end frame of versions that checked a sha256.
    with trio.fail_after(LIMIT):
        async with two_nodes(tmp_path) as (a, b), raw_connection(b, a.location) as raw:
            await raw.send(request(size=4))
            assert isinstance(await raw.reply(), Go)
            await raw.send(encode_frame(b"abcd") + encode_frame(Codec().encode(["end", b"x"])))
            reply = await raw.reply()
            assert isinstance(reply, Refused)
            assert reply.reason == "protocol error"
            await refused(a)
            assert tree(tmp_path / "dest") == []


async def test_the_protocol_by_hand_is_accepted(tmp_path: Path) -> None:
    # The hand-made protocol above is the real one: the same bytes, honest, succeed.
    with trio.fail_after(LIMIT):
        async with two_nodes(tmp_path) as (a, b), raw_connection(b, a.location) as raw:
            await raw.send(request(size=4, mtime_ns=5_000_000_000))
            assert isinstance(await raw.reply(), Go)
            await raw.send(encode_frame(b"ab") + encode_frame(b"cd"))
            await raw.send(encode_end())
            assert isinstance(await raw.reply(), Done)
            assert (tmp_path / "dest" / "f.bin").read_bytes() == b"abcd"
            assert (tmp_path / "dest" / "f.bin").stat().st_mtime_ns == 5_000_000_000


async def test_a_stalling_sender_is_cut_off_after_its_own_timeout(tmp_path: Path) -> None:
    with trio.fail_after(LIMIT):
        async with two_nodes(tmp_path) as (a, b), raw_connection(b, a.location) as raw:
            await raw.send(request(size=10, timeout=0.3, dir="made/here"))
            assert isinstance(await raw.reply(), Go)
            await raw.send(encode_frame(b"01234"))
            start = trio.current_time()
            reply = await raw.reply()  # nothing more sent: the receiver gives up
            assert 0.2 < trio.current_time() - start < 3
            assert isinstance(reply, Refused)
            assert "timed out" in reply.reason
            await refused(a)
            assert tree(tmp_path / "dest") == []  # also the folders it made


async def test_each_chunk_has_its_own_deadline_even_below_the_wake_up_mark(
    tmp_path: Path,
) -> None:
    # The receiver waits for about a MiB at a time (SO_RCVLOWAT).  The end of chunk 1
    # arrives in time but is less than that: chunk 2, later than the first deadline
    # and within its own, must still be taken.
    half = 300_000
    chunk1 = os.urandom(2 * half)
    chunk2 = os.urandom(1000)
    with trio.fail_after(LIMIT):
        async with two_nodes(tmp_path) as (a, b), raw_connection(b, a.location) as raw:
            await raw.send(request(size=len(chunk1) + len(chunk2), timeout=4.0))
            assert isinstance(await raw.reply(), Go)
            start = trio.current_time()
            await raw.send(encode_frame(chunk1)[: 4 + half])
            await trio.sleep(2.0)
            await raw.send(chunk1[half:])  # chunk 1 ends: its deadline was start + 4
            # Past the first deadline, within the second (start + 6), by 1 s each.
            await trio.sleep_until(start + 5.0)
            await raw.send(encode_frame(chunk2) + encode_end())
            assert isinstance(await raw.reply(), Done)
    assert (tmp_path / "dest" / "f.bin").read_bytes() == chunk1 + chunk2


@pytest.mark.parametrize("idle", [math.inf, 1e10])
@pytest.mark.parametrize("path", ["plain socket", "general"])
async def test_no_idle_bound_at_all_is_allowed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, idle: float, path: str
) -> None:
    if path == "general":
        monkeypatch.setattr(files_receiver, "thread_socket", lambda stream: None)
    src = make_file(tmp_path / "src" / "f", b"hello")
    with trio.fail_after(LIMIT):
        async with two_nodes(tmp_path, limits=Limits(file_idle_timeout=idle)) as (a, b):
            assert await b.send_file(a.location, src) == 0
    assert tree(tmp_path / "dest") == ["f"]


async def test_a_silent_connection_is_cut_off_after_file_idle_timeout(tmp_path: Path) -> None:
    limits = Limits(file_idle_timeout=0.3)
    with trio.fail_after(LIMIT):
        async with (
            two_nodes(tmp_path, limits=limits) as (a, b),
            raw_connection(b, a.location) as raw,
        ):
            start = trio.current_time()
            assert isinstance(await raw.reply(), Refused)  # no request ever came
            assert trio.current_time() - start < 3
            await refused(a)
            # A sender's timeout cannot stretch the receiver's own bound.
            async with raw_connection(b, a.location) as slow:
                await slow.send(request(size=10, timeout=1000))
                assert isinstance(await slow.reply(), Go)
                start = trio.current_time()
                assert isinstance(await slow.reply(), Refused)
                assert trio.current_time() - start < 3
            await refused(a, 2)


# -- interrupted transfers leave nothing behind ----------------------------------------


async def test_a_connection_lost_mid_transfer_leaves_nothing(tmp_path: Path) -> None:
    with trio.fail_after(LIMIT):
        async with two_nodes(tmp_path) as (a, b):
            async with raw_connection(b, a.location) as raw:
                await raw.send(request(size=1000, dir="new/folders"))
                assert isinstance(await raw.reply(), Go)
                await raw.send(encode_frame(b"x" * 500))
                await wait_for(lambda: bool(list((tmp_path / "dest").rglob("*.part"))))
            await refused(a)
            assert tree(tmp_path / "dest") == []


async def test_cancelling_the_sender_mid_transfer_leaves_nothing(tmp_path: Path) -> None:
    src = make_file(tmp_path / "src" / "big.bin", os.urandom(32 * 1024 * 1024))
    dest = tmp_path / "dest"
    small_chunks = Limits(file_chunk_size=64 * 1024)
    with trio.fail_after(LIMIT):
        async with node("a", dest) as a, node("b", None, limits=small_chunks) as b:
            results: list[object] = []

            async def send() -> None:
                results.append(await b.send_file(a.location, src, dir="sub"))

            def partial_grew() -> bool:
                parts = list(dest.rglob("*.part"))
                return bool(parts) and parts[0].stat().st_size > 0

            async with trio.open_nursery() as nursery:
                nursery.start_soon(send)
                await wait_for(partial_grew)
                nursery.cancel_scope.cancel()
            assert results == []  # cancelled mid-transfer, not finished
            await refused(a)
            assert tree(dest) == []
            assert receiver_of(a).stats.active == 0


async def test_a_receiver_that_leaves_mid_transfer_leaves_nothing(tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    with trio.fail_after(LIMIT):
        async with node("b", None) as b:
            async with node("a", dest) as a:
                raw_cm = raw_connection(b, a.location)
                raw = await raw_cm.__aenter__()
                try:
                    await raw.send(request(size=1000, dir="x"))
                    assert isinstance(await raw.reply(), Go)
                    await raw.send(encode_frame(b"x" * 10))
                    await wait_for(lambda: bool(list(dest.rglob("*.part"))))
                    a.terminate()  # the node goes away, its transfer is cancelled
                finally:
                    await raw_cm.__aexit__(None, None, None)
            assert tree(dest) == []


# -- the node keeps serving ----------------------------------------------------------------


async def echo(task: Task) -> None:
    task.register("echo")
    while True:
        await task.receive()


async def test_messages_keep_flowing_during_a_large_transfer(tmp_path: Path) -> None:
    src = make_file(tmp_path / "src" / "big.bin", os.urandom(64 * 1024 * 1024))
    small_chunks = Limits(file_chunk_size=256 * 1024)
    with trio.fail_after(LIMIT):
        async with (
            node("a", tmp_path / "dest") as a,
            node("b", None, limits=small_chunks) as b,
        ):
            a.spawn(echo).set_daemon()
            assert await b.peer(a.location) == 0
            rtask = await Task.locate("echo", a.location, timeout=5)
            assert rtask is not None
            results: list[object] = []
            during: list[float] = []
            files = receiver_of(a)

            async def send() -> None:
                results.append(await b.send_file(a.location, src))

            async with trio.open_nursery() as nursery:
                nursery.start_soon(send)
                await wait_for(lambda: files.stats.active == 1)
                while not results:
                    start = trio.current_time()
                    assert await rtask.deliver("ping", timeout=5) == 1
                    if files.stats.active == 1 and not results:
                        during.append(trio.current_time() - start)
                    await trio.sleep(0.001)
            assert results == [0]
            assert during, "no deliver round trip completed while the file was in flight"
            assert max(during) < 2.0
            assert (tmp_path / "dest" / "big.bin").stat().st_size == 64 * 1024 * 1024


async def test_over_tls(tmp_path: Path) -> None:
    ca = trustme.CA()
    cafile = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(cafile))
    certs = {}
    for name in ("a", "b"):
        cert = ca.issue_cert("127.0.0.1")
        certfile, keyfile = tmp_path / f"{name}-cert.pem", tmp_path / f"{name}-key.pem"
        cert.cert_chain_pems[0].write_to_path(str(certfile))
        cert.private_key_pem.write_to_path(str(keyfile))
        certs[name] = {"certfile": str(certfile), "keyfile": str(keyfile), "cafile": str(cafile)}
    content = os.urandom(2 * 1024 * 1024 + 5)
    src = make_file(tmp_path / "src" / "secret.bin", content)
    with trio.fail_after(LIMIT):
        async with (
            node("a", tmp_path / "dest", **certs["a"]) as a,
            node("b", None, **certs["b"]) as b,
        ):
            assert await b.send_file(a.location, src, dir="tls") == 0
            assert (tmp_path / "dest" / "tls" / "secret.bin").read_bytes() == content
            assert await b.del_file(a.location, src, dir="tls") == 0
            assert tree(tmp_path / "dest") == []
        # A node without the certificates cannot send to a TLS node.
        async with node("a", tmp_path / "dest", **certs["a"]) as a, node("c", None) as c:
            assert await c.send_file(a.location, src) == -1
            assert tree(tmp_path / "dest") == []


async def test_an_infinite_timeout(tmp_path: Path) -> None:
    src = make_file(tmp_path / "f")
    with trio.fail_after(LIMIT):
        async with two_nodes(tmp_path) as (a, b):
            assert await b.send_file(a.location, src, timeout=float("inf")) == 0
            assert await b.del_file(a.location, src, timeout=5) == 0


# A node that fails to start closes the listening sockets it had opened (warnings are
# errors here, so a socket left to the garbage collector would fail the test).
@pytest.mark.parametrize(
    "bad",
    [Limits(file_chunk_size=0), Limits(max_file_transfers=-1), Limits(file_idle_timeout=0)],
)
async def test_bad_file_limits_fail_at_start(tmp_path: Path, bad: Limits) -> None:
    with pytest.raises(ServiceError, match="ValueError"):
        async with node("c", tmp_path, limits=bad):
            pass  # pragma: no cover


async def test_a_bug_in_the_receiver_ends_the_transfer_not_the_node(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    src = make_file(tmp_path / "f")

    def broken(*args: object) -> None:
        raise RuntimeError("a bug")

    with trio.fail_after(LIMIT):
        async with two_nodes(tmp_path) as (a, b):
            with monkeypatch.context() as patch:
                patch.setattr("triopycos.services.files.receiver.prepare", broken)
                assert await b.send_file(a.location, src) == -1
            assert a.statistics().files_refused == 1
            assert "a bug" in caplog.text
            assert await b.send_file(a.location, src) == 0


def test_a_file_that_shrinks_while_it_is_read(tmp_path: Path) -> None:
    src = make_file(tmp_path / "f", b"12345")
    with open(src, "rb", buffering=0) as f:
        buf = bytearray(5)
        _read_fully(f, memoryview(buf), 0, 0)
        assert buf == b"12345"
        _read_fully(f, memoryview(buf)[:2], 3, 1 << 20)  # at an offset, read-ahead asked
        assert buf == b"45345"
        with pytest.raises(FileChanged):
            _read_fully(f, memoryview(bytearray(1)), 5, 0)


def test_content_is_written_in_bounded_and_possibly_partial_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sizes: list[int] = []
    real_write = os.write

    def short_write(fd: int, data: Any) -> int:
        sizes.append(len(data))
        return real_write(fd, data[:100_000])  # the kernel may take less

    pieces = [os.urandom(n) for n in (300_000, 5, 131_072)]
    partial = files_disk.Partial(str(tmp_path), str(tmp_path), str(tmp_path), "t")
    partial.fd = os.open(partial.path, os.O_WRONLY | os.O_CREAT, 0o600)
    monkeypatch.setattr(os, "write", short_write)
    try:
        partial.write([memoryview(p) for p in pieces])
    finally:
        monkeypatch.undo()
        os.close(partial.fd)
    assert Path(partial.path).read_bytes() == b"".join(pieces)
    assert max(sizes) == files_disk.WRITE_SIZE


def test_reading_without_waiting_takes_what_is_cached(tmp_path: Path) -> None:
    content = os.urandom(100_000)
    src = make_file(tmp_path / "f", content)
    fd = os.open(src, os.O_RDONLY)
    try:
        buf = bytearray(50_000)
        got = _pread_nowait(fd, memoryview(buf), 1000)
        if got < 0:  # then the sender reads in a worker thread (tested below)
            pytest.skip("this file system cannot read without waiting")
        # Just written, so in the page cache.
        assert got > 0
        assert buf[:got] == content[1000 : 1000 + got]
    finally:
        os.close(fd)


class _Reads:
    """Counts the sender's reads by kind, and makes the non-waiting ones answer as
    ``mode`` says: "cold" (nothing cached), "unsupported", "half" (part cached)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, mode: str) -> None:
        self.nowait = 0
        self.thread = 0
        real_fully = files_disk.read_fully
        real_nowait = files_disk.pread_nowait

        def nowait(fd: int, view: memoryview, offset: int) -> int:
            self.nowait += 1
            if mode == "cold":
                return 0
            if mode == "unsupported":
                return -1
            half = memoryview(view)[: len(view) // 2]
            return max(real_nowait(fd, half, offset), 0)

        def fully(f: Any, view: memoryview, offset: int, ahead: int) -> None:
            self.thread += 1
            real_fully(f, view, offset, ahead)

        monkeypatch.setattr(files_sender, "HAVE_NOWAIT", True)
        monkeypatch.setattr(files_sender, "pread_nowait", nowait)
        monkeypatch.setattr(files_sender, "read_fully", fully)


@pytest.mark.parametrize("mode", ["cold", "unsupported", "half"])
async def test_reads_that_would_wait_go_to_a_worker_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    content = os.urandom(5 * 64 * 1024 + 3)  # 6 chunks of 64 KiB
    src = make_file(tmp_path / "src" / "r.bin", content)
    reads = _Reads(monkeypatch, mode)
    with trio.fail_after(LIMIT):
        async with (
            node("a", tmp_path / "dest") as a,
            node("b", tmp_path / "b", limits=Limits(file_chunk_size=64 * 1024)) as b,
        ):
            assert await b.send_file(a.location, src) == 0
    assert (tmp_path / "dest" / "r.bin").read_bytes() == content
    assert reads.thread == 6
    # A file system that cannot say is not asked again for this transfer.
    assert reads.nowait == (1 if mode == "unsupported" else 6)


async def test_a_file_that_shrinks_while_it_is_sent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    content = os.urandom(4 * 64 * 1024)
    src = make_file(tmp_path / "src" / "s.bin", content)
    real_fully = files_disk.read_fully

    def shrinking(f: Any, view: memoryview, offset: int, ahead: int) -> None:
        if offset > 0:
            os.truncate(src, offset + 10)
        real_fully(f, view, offset, ahead)

    monkeypatch.setattr(files_sender, "pread_nowait", lambda fd, view, offset: 0)
    monkeypatch.setattr(files_sender, "read_fully", shrinking)
    with trio.fail_after(LIMIT):
        async with (
            node("a", tmp_path / "dest") as a,
            node("b", tmp_path / "b", limits=Limits(file_chunk_size=64 * 1024)) as b,
        ):
            assert await b.send_file(a.location, src) == -1
            assert "shrank while it was sent" in caplog.text
            await refused(a)
            assert tree(tmp_path / "dest") == []


@pytest.mark.parametrize("path", ["plain socket", "virtual network"])
async def test_a_write_error_in_the_middle_is_refused_and_cleaned_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, path: str
) -> None:
    # Both receiving paths: the worker thread that reads and writes (a plain socket)
    # and the trio reader with a writer thread (any other stream).
    content = os.urandom(3 * 1024 * 1024)
    src = make_file(tmp_path / "src" / "w.bin", content)
    real_write = files_disk.Partial.write
    writes = 0

    def failing(self: Any, batch: list[memoryview]) -> None:
        nonlocal writes
        writes += 1
        if writes == 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_write(self, batch)

    monkeypatch.setattr(files_disk.Partial, "write", failing)
    with trio.fail_after(LIMIT):
        if path == "plain socket":
            async with two_nodes(tmp_path) as (a, b):
                assert await b.send_file(a.location, src) == -1
                await refused(a)
                assert await b.send_file(a.location, src) == 0  # and it goes on
        else:
            async with (
                VirtualNetwork(seed=5) as net,
                net.open_pycos(name="a", dest_path=tmp_path / "dest") as a,
                net.open_pycos(name="b") as b,
            ):
                assert await b.peer(a.location) == 0
                assert await b.send_file(a.location, src) == -1
                await refused(a)
                assert await b.send_file(a.location, src) == 0
    assert writes > 2
    assert (tmp_path / "dest" / "w.bin").read_bytes() == content
    assert tree(tmp_path / "dest") == ["w.bin"]


async def test_a_receiver_stopped_in_the_middle_removes_the_partial_file(
    tmp_path: Path,
) -> None:
    # The worker thread reading the socket is waiting for content that will not
    # come when the node stops: it must be stopped, and the partial file removed.
    with trio.fail_after(LIMIT):
        async with node("b", tmp_path / "b") as b:
            receiving = node("a", tmp_path / "dest")
            a = await receiving.__aenter__()
            exited = False
            try:
                async with raw_connection(b, a.location) as raw:
                    await raw.send(request(size=100))
                    assert isinstance(await raw.reply(), Go)
                    await raw.send(encode_frame(b"x" * 40))
                    await wait_for(lambda: receiver_of(a).stats.active == 1)
                    await wait_for(lambda: len(tree(tmp_path / "dest")) == 1)
                    # The sender's side stays open: only stopping ends the wait.
                    a.terminate()
                    exited = True
                    await receiving.__aexit__(None, None, None)
                    assert tree(tmp_path / "dest") == []
            finally:
                if not exited:
                    await receiving.__aexit__(None, None, None)
            assert tree(tmp_path / "dest") == []


async def test_from_a_generator_task(tmp_path: Path) -> None:
    src = make_file(tmp_path / "src" / "g.txt", b"from a generator")

    def sender(node: Pycos, location: Location) -> Generator[Any, Any, tuple[Any, ...]]:
        sent = yield node.send_file(location, src, dir="gen")
        again = yield node.send_file(location, src, dir="gen")
        deleted = yield node.del_file(location, src, dir="gen")
        return sent, again, deleted

    with trio.fail_after(LIMIT):
        async with two_nodes(tmp_path) as (a, b):
            assert await b.spawn(sender, b, a.location).finish() == (0, 1, 0)


async def test_on_the_virtual_network(tmp_path: Path) -> None:
    # The same service over the in-memory transport (on the real clock: see
    # docs/files.md about the autojump clock and worker threads).
    content = os.urandom(2 * 1024 * 1024 + 3)
    src = make_file(tmp_path / "src" / "f.bin", content)
    with trio.fail_after(LIMIT):
        async with (
            VirtualNetwork(seed=3) as net,
            net.open_pycos(name="a", dest_path=str(tmp_path / "dest")) as a,
            net.open_pycos(name="b") as b,
        ):
            assert await b.send_file(a.location, src, dir="v") == 0
            assert (tmp_path / "dest" / "v" / "f.bin").read_bytes() == content
            assert await b.send_file(a.location, src, dir="v") == 1
            assert await b.del_file(a.location, src, dir="v") == 0
            assert tree(tmp_path / "dest") == []


# -- the sans-IO protocol -----------------------------------------------------------------


def test_check_path() -> None:
    assert check_path(None, "f") == ([], "f")
    assert check_path("a/./b//c/", "f") == (["a", "b", "c"], "f")
    assert check_path("", "f") == ([], "f")
    assert check_path("a..b", "v1..2") == (["a..b"], "v1..2")
    for dir in ("/a", "\\a", "C:/", "d:", "..", "a/../b", "a\\b", "a\0b"):
        with pytest.raises(FileRefused):
            check_path(dir, "f")
    for name in ("", ".", "..", "a/b", "a\\b", "C:f", "a\0"):
        with pytest.raises(FileRefused):
            check_path(None, name)


def _machine(size: int, *, max_chunk: int = 8, max_size: int | None = None) -> FileReceiving:
    machine = FileReceiving(max_chunk)
    machine.receive_data(request(size=size))
    assert isinstance(machine.next_event(), SendRequest)
    machine.go(size, max_size)
    return machine


def _content(machine: FileReceiving) -> tuple[bytes, list[bool], End | None]:
    data = b""
    ends: list[bool] = []
    while (event := machine.next_event()) is not None:
        if isinstance(event, End):
            return data, ends, event
        assert isinstance(event, Data)
        data += event.data.tobytes()
        ends.append(event.chunk_end)
    return data, ends, None


def test_receiving_hands_out_content_byte_by_byte() -> None:
    machine = _machine(11)
    wire = encode_frame(b"hello ") + encode_frame(b"world") + encode_end()
    data = b""
    end = None
    for i in range(len(wire)):  # every split point, headers straddling pieces too
        machine.receive_data(wire[i : i + 1])
        got, _, end = _content(machine)
        data += got
        if end is not None:
            break
    assert data == b"hello world"
    assert end == End()
    assert machine.done()[4:] == Codec().encode(["done"])


def test_receiving_marks_chunk_ends_and_takes_early_bytes() -> None:
    machine = FileReceiving(8)
    # A sender that does not wait for "go" (its content is taken, not lost).
    machine.receive_data(request(size=6) + encode_frame(b"abc") + encode_frame(b"def"))
    assert isinstance(machine.next_event(), SendRequest)
    machine.go(6, None)
    data, ends, end = _content(machine)
    assert (data, ends, end) == (b"abcdef", [True, True], None)
    machine.receive_data(encode_end())
    assert machine.next_event() == End()


@pytest.mark.parametrize(
    ("size", "max_size", "frames", "reason"),
    [
        (10, None, [b""], "empty chunk"),
        (100, None, [b"x" * 9], "over the 8"),
        (10, None, [b"x" * 8, b"x" * 3], "more than the 10"),
        (10, 9, [b"x" * 8, b"x" * 2], "max_file_size"),
    ],
)
def test_receiving_checks_each_chunk_header_before_its_body(
    size: int, max_size: int | None, frames: list[bytes], reason: str
) -> None:
    machine = _machine(size, max_size=max_size)
    *good, bad = frames
    for frame in good:
        machine.receive_data(encode_frame(frame))
        _content(machine)
    machine.receive_data(encode_frame(bad)[:4])  # the header alone is enough
    with pytest.raises(FileRefused, match=reason):
        machine.next_event()


def test_receiving_refuses_what_is_not_a_request() -> None:
    machine = FileReceiving(8)
    machine.receive_data(encode_frame(b"\xff\xff"))
    with pytest.raises(ProtocolError):
        machine.next_event()
    machine = FileReceiving(8)
    machine.receive_data(b"\0\x10\0\x00")  # a control frame of 1 MiB
    with pytest.raises(ProtocolError):
        machine.next_event()
    machine = _machine(2)
    machine.receive_data(encode_frame(b"ab") + encode_frame(Codec().encode(["end", b"extra"])))
    with pytest.raises(ProtocolError, match="expected \\['end'\\]"):
        _content(machine)
    with pytest.raises(ProtocolError):
        FileReceiving(8).eof()


def test_replies_round_trip() -> None:
    st = os.stat(__file__)
    machine = FileReceiving(8)
    machine.receive_data(request())
    machine.next_event()
    exists = parse_reply(machine.exists(st)[4:])
    assert isinstance(exists, Exists)
    assert exists.stat.st_size == st.st_size
    assert exists.stat.st_mtime_ns == st.st_mtime_ns
    assert exists.stat.st_mtime == st.st_mtime_ns / 1e9
    assert exists.stat.st_ino == st.st_ino
    assert parse_reply(encode_frame(Codec().encode(["same"]))[4:]) == Same()
    assert parse_reply(encode_frame(Codec().encode(["go", 5]))[4:]) == Go(5)
    with pytest.raises(ProtocolError):
        parse_reply(Codec().encode(["go", 0]))
    with pytest.raises(ProtocolError):
        parse_reply(Codec().encode(["exists", {"mode": 1}]))
    assert (
        make_stat_result(
            dict.fromkeys(
                ["mode", "ino", "dev", "nlink", "uid", "gid", "size", "atime_ns", "ctime_ns"], 0
            )
            | {"mtime_ns": 1_500_000_000}
        ).st_mtime
        == 1.5
    )
    assert DeleteRequest("f", None) == DeleteRequest("f", None)
