"""The attack suite: hostile input of every kind, and after each the node still serves.

Wrong secret: tests/test_remote.py and tests/test_handshake.py; wrong certificate:
tests/test_tls.py; path traversal, symlink escapes and a file one byte over the
limit: tests/test_files.py.  Discovery (UDP) has not landed, so there is no UDP
listener to attack yet.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import tracemalloc
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import trio
from nodes import loopback_node, zombie

from triopycos import Limits, Pycos, Task
from triopycos.protocol.framing import encode_frame


class _Pwn:
    """Unpickling this creates a file: proof that something unpickled our bytes."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (self.path, "w"))


@contextlib.asynccontextmanager
async def serving_pair(**kwargs: Any) -> AsyncIterator[tuple[Pycos, Pycos]]:
    with trio.fail_after(30):
        async with loopback_node("a", **kwargs) as a, loopback_node("b", **kwargs) as b:
            assert await b.peer(a.location) == 0

            async def echo(task: Task) -> None:
                task.set_daemon()
                task.register("echo")
                while True:
                    await task.receive()

            a.spawn(echo)
            yield a, b


async def still_serves(a: Pycos, b: Pycos, rounds: int = 3) -> None:
    async def client() -> list[int]:
        target = await Task.locate("echo", a.location, timeout=5)
        assert target is not None
        return [await target.deliver(i, timeout=5) for i in range(rounds)]

    assert await b.spawn(client).finish() == [1] * rounds


async def drain(stream: trio.abc.Stream) -> None:
    with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
        while await stream.receive_some(65536):
            pass
    await stream.aclose()


async def test_pickle_payloads_never_run(tmp_path: Path) -> None:
    target = tmp_path / "pwned"
    payload = pickle.dumps(_Pwn(str(target)))
    async with serving_pair() as (a, b):
        host, port = a.location.addr, a.location.port
        for data in (payload, encode_frame(payload)):  # before any handshake
            stream: trio.abc.Stream = await trio.open_tcp_stream(host, port)
            await stream.send_all(data)
            await drain(stream)
        stream = await zombie(a.location)  # and as a frame of an authenticated peer
        await stream.send_all(encode_frame(payload) * 3)
        await still_serves(a, b)
        await stream.aclose()
        assert not target.exists()
        await still_serves(a, b)


async def test_garbage_and_truncated_frames(tmp_path: Path) -> None:
    async with serving_pair() as (a, b):
        host, port = a.location.addr, a.location.port
        for data in (os.urandom(4096), b"\x00\x00\x01\x00" + b"short"):
            raw = await trio.open_tcp_stream(host, port)
            await raw.send_all(data)
            await raw.send_eof()
            await drain(raw)
        stream = await zombie(a.location)
        await stream.send_all(b"\x00\x00\x00\x64" + b"ten bytes!")  # 100 announced
        await stream.aclose()  # truncated: the peer goes, the node does not
        stream = await zombie(a.location)
        await stream.send_all(encode_frame(os.urandom(64)))  # not CBOR: dropped, logged
        await still_serves(a, b)
        await stream.aclose()
        await still_serves(a, b)


async def test_a_4_gib_length_prefix_allocates_nothing() -> None:
    async with serving_pair() as (a, b):
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            stream: trio.abc.Stream = await trio.open_tcp_stream(a.location.addr, a.location.port)
            await stream.send_all(b"\xff\xff\xff\xff" + b"x" * 1024)  # before the handshake
            await drain(stream)
            stream = await zombie(a.location)
            await stream.send_all(b"\xff\xff\xff\xff" + b"x" * 1024)  # inside a session
            await drain(stream)
            await still_serves(a, b)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert peak - before < 2 * 1024 * 1024  # a 4 GiB frame would show here


async def test_500_idle_connections_while_two_peers_talk() -> None:
    limits = Limits(handshake_timeout=3, max_handshakes=64)
    async with serving_pair(limits=limits) as (a, b):
        host, port = a.location.addr, a.location.port
        idle = [await trio.open_tcp_stream(host, port) for _ in range(500)]
        await still_serves(a, b, rounds=50)
        stats = a.statistics()
        assert stats.handshakes_refused_busy >= 500 - 64
        for stream in idle:
            await stream.aclose()
        await still_serves(a, b)
