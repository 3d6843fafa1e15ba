"""The fast paths of the message path keep the semantics of the slow ones.

* The reader of a plain socket reads it with ``os.read`` and ``wait_readable``
  (``transport.receiver``): same contract as ``SocketStream.receive_some``.
* A connection whose writer is idle writes a frame from the sender's own task with
  one attempt that cannot wait (``transport.nowait_sender``); what does not fit goes
  to the writer.  So: the attempt never waits, a full stream leaves the rest to the
  writer (order kept), and a burst is still batched into few writes.
"""

from __future__ import annotations

import socket
import ssl
import struct
from typing import Any

import pytest
import trio
import trio.testing
import trustme

from triopycos import Pycos, Task
from triopycos.testing import VirtualNetwork
from triopycos.transport import nowait_sender, receiver


def socket_streams() -> tuple[trio.SocketStream, trio.SocketStream]:
    a, b = socket.socketpair()
    return trio.SocketStream(trio.socket.from_stdlib_socket(a)), trio.SocketStream(
        trio.socket.from_stdlib_socket(b)
    )


async def test_socket_nowait_sender_never_waits_and_keeps_the_bytes_in_order() -> None:
    left, right = socket_streams()
    send = nowait_sender(left)
    assert send is not None
    sent = bytearray()
    block = bytes(range(256)) * 64
    # Fill the socket buffers: the attempt takes less, then nothing, without waiting.
    for _ in range(10_000):
        n = send(block)
        sent += block[:n]
        if n == 0:
            break
    else:
        pytest.fail("a socket took 160 MB without filling up")
    assert send(b"more") == 0
    got = bytearray()
    with trio.fail_after(10):
        while len(got) < len(sent):
            got += await right.receive_some(1 << 20)
    assert got == sent
    await left.aclose()
    with pytest.raises(trio.ClosedResourceError):
        send(b"after close")
    await right.aclose()


async def test_socket_nowait_sender_reports_a_broken_connection() -> None:
    left, right = socket_streams()
    send = nowait_sender(left)
    assert send is not None
    await right.aclose()
    with pytest.raises(trio.BrokenResourceError):
        for _ in range(100):  # the first write after the peer's close may still succeed
            send(b"x" * 1024)
    await left.aclose()


async def test_socket_receiver_keeps_receive_somes_contract() -> None:
    left, right = socket_streams()
    receive = receiver(right)
    assert receive != right.receive_some  # the fast path is in use
    with trio.fail_after(5):
        # Waits for data, then hands it over.
        async with trio.open_nursery() as nursery:
            nursery.start_soon(left.send_all, b"hello")
            assert await receive(100) == b"hello"
        # A cancelled call reads nothing: the data is still there afterwards.
        await left.send_all(b"kept")
        with trio.CancelScope() as scope:
            scope.cancel()
            await receive(100)
        assert scope.cancelled_caught
        assert await receive(2) == b"ke"
        assert await receive(100) == b"pt"
        # A wait can be cancelled.
        with trio.move_on_after(0.05) as waited:
            await receive(100)
        assert waited.cancelled_caught
        await left.send_eof()
        assert await receive(100) == b""
    await right.aclose()
    with pytest.raises(trio.ClosedResourceError):
        await receive(100)
    await left.aclose()


async def test_socket_receiver_maps_read_errors() -> None:
    with trio.socket.socket() as listener:
        await listener.bind(("127.0.0.1", 0))
        listener.listen()
        client = trio.socket.socket()
        await client.connect(listener.getsockname())
        server, _ = await listener.accept()
        # SO_LINGER 0: close() sends a reset, the other side's read fails.
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        client.close()
        stream = trio.SocketStream(server)
        receive = receiver(stream)
        with trio.fail_after(5), pytest.raises(trio.BrokenResourceError):
            await receive(100)
        await stream.aclose()


async def test_no_nowait_sender_for_tls_or_unknown_streams() -> None:
    left, right = socket_streams()
    ca = trustme.CA()
    context = ssl.create_default_context()
    ca.configure_trust(context)
    assert nowait_sender(trio.SSLStream(left, context, server_hostname="x")) is None
    stream, _ = trio.testing.memory_stream_pair()
    assert nowait_sender(stream) is None
    await left.aclose()
    await right.aclose()


async def test_virtual_stream_send_nowait_takes_only_the_room_there_is(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with VirtualNetwork(seed=1, stream_buffer=1000) as net:
        server_host, client_host = net.add_host(), net.add_host()
        transport = server_host.transport()
        (listener,) = await transport.open_listeners(server_host.address(socket.AF_INET), 0)
        host, port = transport.listener_address(listener)
        client = await client_host.transport().open_stream(host, port)
        server = await listener.accept()
        send = nowait_sender(client)
        assert send is not None
        assert send(b"a" * 600) == 600
        assert send(b"b" * 600) == 400  # the pipe holds 1000 bytes in all
        assert send(b"c") == 0
        assert await server.receive_some(10_000) == b"a" * 600 + b"b" * 400
        assert send(b"c") == 1
        await client.aclose()
        with pytest.raises(trio.ClosedResourceError):
            send(b"d")
        await server.aclose()
        await listener.aclose()


async def sink_collecting(task: Task, got: list[Any]) -> None:
    task.register("collector")
    while (msg := await task.receive()) is not None:
        got.append(msg)


async def test_a_burst_is_batched_and_a_full_stream_is_left_to_the_writer(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with (
        VirtualNetwork(seed=1, stream_buffer=64 * 1024) as net,
        net.open_pycos(name="a") as a,
        net.open_pycos(name="b") as b,
    ):
        got: list[Any] = []
        big = bytes(range(256)) * 400  # more than the stream's 64 KiB
        collector = b.spawn(sink_collecting, got)
        assert await a.peer(b.location) == 0

        async def sender(task: Task) -> list[int]:
            target = await Task.locate("collector", b.location, timeout=5)
            assert target is not None
            await trio.testing.wait_all_tasks_blocked()
            before = data_events(net, a, b)
            # 500 messages in one step: a few written at once, the rest batched.
            codes = [target.send(i) for i in range(500)]
            await trio.testing.wait_all_tasks_blocked()
            writes = data_events(net, a, b) - before
            # (a handful written at once, then one batch; not one write per message)
            assert 1 <= writes <= 10, f"a burst of 500 took {writes} writes"
            # Cut, then more than the stream holds: every send returns at once; the
            # first is written in part at once, its rest and the others by the writer.
            net.partition(a, b)
            codes += [target.send((i, big)) for i in range(500, 520)]
            await trio.sleep(1)
            net.heal()
            codes.append(target.send(None))
            return codes

        codes = await a.spawn(sender).finish()
        assert codes == [0] * len(codes)
        with trio.fail_after(30):
            await collector.finish()
        assert got[:500] == list(range(500))
        assert got[500:] == [(i, big) for i in range(500, 520)]


def data_events(net: VirtualNetwork, a: Pycos, b: Pycos) -> int:
    """Segments that arrived from ``a`` to ``b`` so far (either way of labelling)."""
    a_host = str(a.location.addr)
    b_host = str(b.location.addr)
    return sum(
        1
        for e in net.events
        if e.kind == "data" and e.src.startswith(a_host) and e.dst.startswith(b_host)
    )
